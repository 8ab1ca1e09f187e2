"""Benchmark: ITS save and restore with 64k devices and 1M ITEs (target < 5 s each).

The state is built through model internals (Device/ITE objects and vm.add_lpi directly),
not through 1M MAPTI commands, which would measure the command path instead; tables,
redistributors and the ITS are set up by the Guest helper as a guest would. Reports
seconds for each step and the peak RSS (resource.getrusage, ru_maxrss).

    PYTHONPATH=. python bench/saverestore.py [--devices N] [--events N]
    PYTHONPATH=. python bench/saverestore.py --image-mib 512 [--dir DIR]

The second form measures an image file instead: a VM with that much touched guest RAM
saved with save_image and restored with load_image (both stream the body), with the
seconds of each and the peak RSS (the restored VM's pages are the floor).
"""

import argparse
import gc
import os
import resource
import tempfile
import time

from gictools import VM
from gictools.guest import Guest
from gictools.model.its import ITE, Collection, Device


def image_bench(mib: int, directory):
    from gictools.image import load_image, save_image

    chunk = os.urandom(16 << 20)
    vm = VM(4, memory=((0x4000_0000, 0x2_0000_0000),))
    its = vm.add_its()
    Guest(vm, its).enable_lpis()
    n = max(1, mib // 16)
    for i in range(n):
        vm.memory.write(0x8000_0000 + i * len(chunk), chunk)
    fd, path = tempfile.mkstemp(suffix=".img", dir=directory)
    os.close(fd)
    try:
        t = time.perf_counter()
        size = save_image(vm, path)
        t_save = time.perf_counter() - t
        del vm, its
        gc.collect()  # the VM and its ITSes reference each other
        t = time.perf_counter()
        vm2 = load_image(path)
        t_load = time.perf_counter() - t
        assert vm2.memory.read(0x8000_0000, 64) == chunk[:64]
    finally:
        os.unlink(path)
    print(f"image {size / (1 << 20):.0f} MiB ({n * 16} MiB of guest RAM)")
    print(f"save_image:     {t_save:.2f} s")
    print(f"load_image:     {t_load:.2f} s")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {rss:.0f} MiB")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=65536)
    ap.add_argument("--events", type=int, default=16)
    ap.add_argument("--image-mib", type=int, default=0)
    ap.add_argument("--dir", default=None)
    a = ap.parse_args()
    if a.image_mib:
        image_bench(a.image_mib, a.dir)
        return
    t0 = time.perf_counter()
    vm = VM(4, memory=((0x4000_0000, 0x2_0000_0000),))
    its = vm.add_its()
    g = Guest(vm, its, device_table_pages=8)  # flat: 8 x 64 KiB = 65536 DTEs
    g.enable_lpis()
    for c in range(4):
        its.collections[c] = Collection(c, vm.rdbase_of(c))
    bits = max(1, (a.events - 1).bit_length())
    itt_size = max(256, (1 << bits) * 8)
    itt_base = g.alloc(a.devices * itt_size, 256)
    intid = 8192
    for d in range(a.devices):
        dev = its.devices[d] = Device(d, itt_base + d * itt_size, bits)
        for e in range(a.events):
            coll = its.collections[e % 4]
            _, lpi = vm.add_lpi(8192 + (intid - 8192) % 57344, e % 4)
            dev.ites[e] = ITE(e, coll, lpi)
            intid += 1
    nites = a.devices * a.events
    t1 = time.perf_counter()
    print(f"built {a.devices} devices, {nites:,} ITEs, {len(vm.lpis)} LPIs in {t1 - t0:.1f} s")

    t = time.perf_counter()
    assert its.save_tables() == 0
    t_save = time.perf_counter() - t
    print(f"save_tables:    {t_save:.2f} s")

    vm2 = VM(4, memory=((0x4000_0000, 0x2_0000_0000),))
    its2 = vm2.add_its()
    vm2.memory.pages = vm.memory.pages  # share: restore writes only pending bits
    for v in range(4):
        for r in ("GICR_PROPBASER", "GICR_PENDBASER", "GICR_CTLR"):
            vm2.write_redist_reg(v, r, vm.read_redist_reg(v, r))
    for r in ("GITS_CBASER", "GITS_BASER0", "GITS_BASER1"):
        its2.write_reg(r, its.read_reg(r))
    t = time.perf_counter()
    ret = its2.restore_tables()
    t_restore = time.perf_counter() - t
    assert ret == 0, ret
    got = sum(len(d.ites) for d in its2.devices.values())
    assert len(its2.devices) == a.devices and got == nites, (len(its2.devices), got)
    print(f"restore_tables: {t_restore:.2f} s")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {rss:.0f} MiB")


if __name__ == "__main__":
    main()
