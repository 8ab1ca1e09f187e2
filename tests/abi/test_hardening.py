"""Regression tests for issue 10 (hardening) items owned by the ABI/model side: each built
from the case the fuzz campaign or the kernel review described."""

import gc
import hashlib
import os
import struct
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gictools import VM
from gictools import entries as E
from gictools import regs as R
from gictools.errors import ConfigError, ImageError
from gictools.guest import Guest
from gictools.image import HEADER_SIZE, dump_image, load_image, load_image_bytes, save_image
from gictools.model.budget import DEFAULT_BUDGET, Budget
from gictools.model.memory import PAGE_SIZE, GuestMemory

# --- 1. large images stream ---------------------------------------------------------------------


@pytest.mark.slow
def test_image_over_300_mib_roundtrips_in_bounded_memory(tmp_path):
    """A body of 304 MiB (msgpack BufferFull above 100 MiB before): saved and restored with
    the restore's own allocations bounded by the restored memory plus one record."""
    vm = VM(2, memory=((0x4000_0000, 0x4000_0000),))
    its = vm.add_its()
    g = Guest(vm, its)
    g.enable_lpis()
    assert g.mapc(0, 1) == 0 and g.mapd(3, 4) == 0 and g.mapti(3, 2, 8200, 0) == 0
    chunk = os.urandom(16 << 20)
    base = 0x5000_0000
    nchunks = 19  # 304 MiB
    for i in range(nchunks):
        vm.memory.write(base + i * len(chunk), chunk)
    state = vm.state()
    path = tmp_path / "big.img"
    try:
        size = save_image(vm, path)
        assert size == path.stat().st_size > 300 << 20
        del vm, its, g
        gc.collect()  # the VM and its ITSes reference each other: free the 304 MiB now
        tracemalloc.start()
        vm2 = load_image(path)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        # the restored pages (~304 MiB) plus one 16 MiB record and its copy; reading the
        # whole file first would need twice that
        assert peak < (nchunks + 4) * len(chunk) + (16 << 20)
        assert vm2.state() == state
        digest = hashlib.sha256(chunk).digest()
        for i in range(nchunks):
            got = vm2.memory.read(base + i * len(chunk), len(chunk))
            assert hashlib.sha256(got).digest() == digest
        assert vm2.lpis[8200].target == 1
    finally:
        path.unlink(missing_ok=True)


# --- 2. restore amplification -> -ENOMEM --------------------------------------------------------


def amplification_vm(ndev=8192, bits=16):
    """8,192 DTEs all naming one ITT of 2^bits valid ITEs (the 631 KB image of the campaign)."""
    vm = VM(1)
    its = vm.add_its()
    g = Guest(vm, its)
    g.enable_lpis()
    assert g.mapc(0, 0) == 0
    n = 1 << bits
    itt = g.alloc(n * 8, 256)
    ite = E.InterruptTranslationEntry
    vm.memory.write(
        itt,
        b"".join(
            E.to_bytes(E.encode_ite(ite(0 if i == n - 1 else 1, 8192 + i % 512, 0)))
            for i in range(n)
        ),
    )
    dte = E.to_bytes(E.encode_dte(E.DeviceTableEntry(True, 1, itt, bits - 1)))
    vm.memory.write(g.device_table, dte * ndev)
    assert vm.save_pending_tables() == 0 and its.save_tables() == 0  # the collection table
    return vm, its


def test_amplified_image_fails_enomem_with_the_budget(tmp_path):
    vm, _ = amplification_vm()
    path = tmp_path / "amp.img"
    size = save_image(vm, path, flush=False)
    assert size < 700_000
    with pytest.raises(ImageError) as ei:
        load_image(path, budget=Budget(max_ites=50_000))
    assert (ei.value.step, ei.value.errno) == ("its0.restore_tables", -R.ENOMEM)
    assert str(ei.value).count("ENOMEM") == 1
    # a budget large enough for all 8 devices of a smaller case restores them
    vm_small, _ = amplification_vm(ndev=8, bits=10)
    vm2 = load_image_bytes(dump_image(vm_small, flush=False), budget=Budget(max_ites=8 << 10))
    assert sum(len(d.ites) for d in vm2.itses[0].devices.values()) == 8 << 10
    with pytest.raises(ImageError) as ei:
        load_image_bytes(dump_image(vm_small, flush=False), budget=Budget(max_ites=(8 << 10) - 1))
    assert ei.value.errno == -R.ENOMEM


def test_amplified_restore_on_live_its_frees_everything():
    """-ENOMEM is a failing restore like any other (vgic_its_restore_tables_v0): every
    device and collection of the ITS is freed, the live ICID 0 included."""
    vm, its = amplification_vm(ndev=64, bits=12)
    vm.budget = Budget(max_ites=10_000)
    ctab = its.baser[1] & 0xFFFF_FFFF_0000
    vm.memory.write_u64(ctab, 0)  # ICID 0 is live: restore no CTE (else -EEXIST)
    assert its.collections
    assert its.restore_tables() == -R.ENOMEM
    assert not its.devices and not its.shadowed and not its.collections and not vm.lpis
    assert (vm.nr_devices, vm.nr_ites) == (0, 0)


@pytest.mark.parametrize(
    "budget, what",
    [
        (Budget(max_devices=3), "devices"),
        (Budget(max_lpis=2), "lpis"),
    ],
)
def test_budget_applies_to_commands(budget, what):
    vm = VM(1, budget=budget)
    its = vm.add_its()
    g = Guest(vm, its)
    g.enable_lpis()
    assert g.mapc(0, 0) == 0
    if what == "devices":
        assert [g.mapd(d, 2) for d in range(4)] == [0, 0, 0, -R.ENOMEM]
        assert g.mapd(0, 2, valid=False) == 0 and g.mapd(3, 2) == 0  # freed: room again
    else:
        assert g.mapd(1, 4) == 0
        got = [g.mapti(1, e, 8192 + e, 0) for e in range(3)]
        assert got == [0, 0, -R.ENOMEM]
        assert g.mapti(1, 3, 8193, 0) == 0  # an existing LPI costs nothing
        assert 2 not in its.devices[1].ites and vm.nr_ites == 3


def test_page_budget_and_bad_budgets():
    vm = VM(1, budget=Budget(max_pages=2))
    vm.memory.write(0x4000_0000, b"\1" * (2 * PAGE_SIZE))
    with pytest.raises(Exception) as ei:
        vm.memory.write(0x5000_0000, b"\1")
    assert "budget" in str(ei.value)
    vm.memory.write(0x5000_0000, b"\0")  # zeros into an absent page cost nothing
    with pytest.raises(ConfigError):
        VM(1, budget=Budget(max_ites=-1))
    assert DEFAULT_BUDGET.max_ites >= 1 << 20  # the save/restore benchmark's 1M ITEs fit


def test_amplified_trace_restore_fails_enomem(tmp_path, monkeypatch):
    """The same through a trace: CTRL restore_tables returns -ENOMEM, as recorded."""
    import gictools.model.vm as vm_mod
    from gictools.replay import Replayer
    from gictools.trace.recorder import Recorder

    monkeypatch.setattr(vm_mod, "DEFAULT_BUDGET", Budget(max_ites=20_000))
    p = tmp_path / "amp.msgpack"
    vm = VM(1)
    vm.add_its()
    with Recorder(vm, p) as rec:
        g = Guest(rec, rec.itses[0])
        g.enable_lpis()
        assert g.mapc(0, 0) == 0
        itt = g.alloc(1 << 19, 256)
        ite = E.InterruptTranslationEntry
        rec.memory.write(
            itt,
            b"".join(
                E.to_bytes(E.encode_ite(ite(0 if i == 0xFFFF else 1, 8192 + i % 512, 0)))
                for i in range(1 << 16)
            ),
        )
        dte = E.to_bytes(E.encode_dte(E.DeviceTableEntry(True, 1, itt, 15)))
        rec.memory.write(g.device_table, dte * 8192)
        assert g.its.save_tables() == 0
        rec.memory.write(g.collection_table, bytes(8))  # ICID 0 stays live: no CTE
        assert g.its.restore_tables() == -R.ENOMEM
    rp = Replayer(p, ["default"])
    rp.run()
    run = rp.runs[0]
    assert run.last_ctrl == -R.ENOMEM
    assert not run.vm.itses[0].devices and run.vm.nr_ites == 0


# --- 6. no per-access or quadratic scans ---------------------------------------------------------


def test_65536_itses_and_frame_lookup():
    vm = VM(1, cache="per-its-v6.10")
    base = 0x1_0000_0000
    for i in range(1 << 16):
        vm.add_its(base + (i ^ 0x5555) * R.ITS_FRAME_SIZE)  # not in address order
    assert vm.its_at(base - 1) is None
    assert vm.its_at(base + (1 << 16) * R.ITS_FRAME_SIZE) is None
    for i in (0, 1, 0x5555, 0xFFFF):
        its = vm.itses[i]
        assert vm.its_at(its.base) is its and vm.its_at(its.base + R.ITS_FRAME_SIZE - 1) is its
    with pytest.raises(ConfigError):
        vm.add_its(vm.itses[7].base + 0x10000)


@given(
    st.lists(st.integers(0, 200), min_size=1, max_size=30, unique=True),
    st.lists(st.tuples(st.integers(0, 201 * 0x3000), st.integers(0, 0x5000)), max_size=40),
)
def test_is_ram_bisect_matches_scan(slot_idx, queries):
    slots = [(i * 0x3000, 0x1000 * (1 + i % 2)) for i in slot_idx]
    mem = GuestMemory(slots)
    for gpa, size in queries:
        want = any(b <= gpa and gpa + size <= b + s for b, s in slots)
        assert mem.is_ram(gpa, size) == want


def test_a_million_ram_slots():
    slots = [(i * 0x2000, 0x1000) for i in range(1 << 20)]
    mem = GuestMemory(slots)
    top = (1 << 20) - 1
    mem.write(top * 0x2000, b"xy")
    assert mem.read(top * 0x2000, 2) == b"xy"
    assert not mem.is_ram(top * 0x2000 + 0x1000, 1) and not mem.is_ram(0xFFF, 2)


# --- 9. image header reserved field -------------------------------------------------------------


def test_reserved_header_field_refused():
    data = bytearray(dump_image(VM(1), flush=False))
    struct.pack_into("<I", data, 12, 1)
    end = len(data) - 32
    data[end:] = hashlib.sha256(data[:end]).digest()
    with pytest.raises(ImageError) as ei:
        load_image_bytes(bytes(data))
    assert ei.value.offset == 12 and "reserved" in str(ei.value)
    assert HEADER_SIZE == 24


# --- 10. ITE next capped at 0xFFFF --------------------------------------------------------------


def test_save_caps_ite_next_on_17_bit_device():
    vm = VM(1, kernel="6.13")
    its = vm.add_its()
    g = Guest(vm, its)
    g.enable_lpis()
    assert g.mapc(0, 0) == 0
    itt = g.alloc(0x20000 * 8, 256)
    ite = E.InterruptTranslationEntry
    vm.memory.write_u64(itt, E.encode_ite(ite(0xFFFF, 8192, 0)))
    vm.memory.write_u64(itt + 0x10000 * 8, E.encode_ite(ite(0, 8193, 0)))
    vm.memory.write_u64(g.device_table + 8 * 5, E.encode_dte(E.DeviceTableEntry(True, 0, itt, 16)))
    vm1 = load_image_bytes(dump_image(vm))  # restores the 17-bit device (no Size check)
    its1 = vm1.itses[0]
    assert sorted(its1.devices[5].ites) == [0, 0x10000]
    vm1.memory.write_u64(itt, 0)
    assert its1.save_tables() == 0  # was OverflowError
    assert E.decode_ite(vm1.memory.read_u64(itt)).next == 0xFFFF
    vm2 = load_image_bytes(dump_image(vm1))
    assert vm2.state() == vm1.state()


# --- 11. restored duplicate DeviceID: the live mapping stays ------------------------------------


@pytest.mark.parametrize("cache", ["none", "lru-v6.8", "per-its-v6.10"])
def test_restored_duplicate_device_is_shadowed(cache):
    vm = VM(1, cache=cache)
    its = vm.add_its()
    g = Guest(vm, its)
    g.enable_lpis()
    assert g.mapc(0, 0) == 0 and g.mapd(1, 4) == 0 and g.mapti(1, 0, 8200, 0) == 0
    assert vm.signal_msi(its, 1, 0).intid == 8200  # cached where the policy caches
    assert its.save_tables() == 0
    itt_b = g.alloc(256, 256)
    vm.memory.write_u64(itt_b, E.encode_ite(E.InterruptTranslationEntry(0, 8300, 0)))
    vm.memory.write_u64(g.device_table + 8, E.encode_dte(E.DeviceTableEntry(True, 0, itt_b, 3)))
    vm.memory.write_u64(g.collection_table, 0)  # no CTE: the live collection is reused
    assert its.restore_tables() == 0
    # find_its_device returns the first match: the old device
    assert vm.signal_msi(its, 1, 0).intid == 8200
    assert [d.itt_addr for d in its.shadowed] == [itt_b]
    assert sorted(vm.lpis) == [8200, 8300]
    # MAPD V=0 frees the live one; the duplicate behind it becomes visible
    assert g.mapd(1, 4, valid=False) == 0
    assert vm.signal_msi(its, 1, 0).intid == 8300
    assert not its.shadowed and sorted(vm.lpis) == [8300]


def test_duplicate_save_reverses_the_duplicates():
    """list_sort(vgic_its_device_cmp) reverses devices of equal DeviceID: the live device's
    DTE is written last (real 6.1.192 / 6.12.118: the DTE names the live ITT) and the
    restored duplicate is found first from then on (their MSI hits its INTID)."""
    vm = VM(1)
    its = vm.add_its()
    g = Guest(vm, its)
    g.enable_lpis()
    assert g.mapc(0, 0) == 0 and g.mapd(1, 4) == 0 and g.mapti(1, 0, 8200, 0) == 0
    assert its.save_tables() == 0
    itt_b = g.alloc(256, 256)
    vm.memory.write_u64(itt_b, E.encode_ite(E.InterruptTranslationEntry(0, 8300, 0)))
    vm.memory.write_u64(g.device_table + 8, E.encode_dte(E.DeviceTableEntry(True, 0, itt_b, 3)))
    vm.memory.write_u64(g.collection_table, 0)
    assert its.restore_tables() == 0
    itt_a = its.devices[1].itt_addr
    assert its.save_tables() == 0
    assert E.decode_dte(vm.memory.read_u64(g.device_table + 8)).itt_addr == itt_a
    assert vm.signal_msi(its, 1, 0).intid == 8300
    assert [d.itt_addr for d in its.shadowed] == [itt_a]
    # a second save reverses them again
    assert its.save_tables() == 0
    assert E.decode_dte(vm.memory.read_u64(g.device_table + 8)).itt_addr == itt_b
    assert its.devices[1].itt_addr == itt_a
    # restored into a fresh VM, the device whose DTE was written last is the only one
    vm2 = load_image_bytes(dump_image(vm, flush=False))
    assert vm2.signal_msi(0, 1, 0).intid == 8300


# --- 12. a failed restore invalidates once per device KVM frees ---------------------------------


@pytest.mark.parametrize("cache, scope", [("per-its-v6.10", "its"), ("lru-v6.8", "vm")])
def test_failed_restore_invalidates_the_cache(cache, scope):
    vm = VM(1, cache=cache)
    itses = [vm.add_its(), vm.add_its()]
    gs = [Guest(vm, its, alloc_base=0x4100_0000 + 0x0100_0000 * i) for i, its in enumerate(itses)]
    for g in gs:
        g.enable_lpis()
        assert g.mapc(0, 0) == 0 and g.mapd(1, 4) == 0 and g.mapti(1, 0, 8200, 0) == 0
    for its in itses:
        assert vm.signal_msi(its, 1, 0).cache == "miss"
        assert vm.signal_msi(its, 1, 0).cache == "hit"
    its0, g0 = itses[0], gs[0]
    assert its0.save_tables() == 0
    vm.memory.write_u64(g0.collection_table, 0)
    # a second DTE whose ITE names INTID 8000 (< 8192): -EINVAL after device 1 was appended
    bad = g0.alloc(256, 256)
    vm.memory.write_u64(bad, E.encode_ite(E.InterruptTranslationEntry(0, 8000, 0)))
    vm.memory.write_u64(g0.device_table + 16, E.encode_dte(E.DeviceTableEntry(True, 0, bad, 3)))
    dte1 = E.decode_dte(vm.memory.read_u64(g0.device_table + 8))
    vm.memory.write_u64(g0.device_table + 8, E.encode_dte(dte1._replace(next=1)))
    assert its0.restore_tables() == -R.EINVAL
    assert not its0.devices and not its0.collections  # freed, the live device 1 included
    assert vm.signal_msi(its0, 1, 0).cache == "miss"  # each freed device invalidated
    assert vm.signal_msi(itses[1], 1, 0).cache == ("hit" if scope == "its" else "miss")


def test_failed_collection_restore_leaves_the_cache():
    vm = VM(1, cache="per-its-v6.10")
    its = vm.add_its()
    g = Guest(vm, its)
    g.enable_lpis()
    assert g.mapc(0, 0) == 0 and g.mapd(1, 4) == 0 and g.mapti(1, 0, 8200, 0) == 0
    vm.signal_msi(its, 1, 0)
    assert its.save_tables() == 0
    assert its.restore_tables() == -R.EEXIST  # ICID 0 is live: no device was touched
    assert vm.signal_msi(its, 1, 0).cache == "hit"


# --- 15. Guest commands to processors the VM does not have --------------------------------------


@pytest.mark.parametrize("kernel", ["6.6", "7.0"])
def test_guest_sends_any_processor_number(kernel):
    vm = VM(4, kernel=kernel)
    its = vm.add_its()
    g = Guest(vm, its)
    g.enable_lpis()
    assert g.mapc(0, 7) == R.E_ITS_MAPC_PROCNUM_OOR
    assert g.movall(0, 7) == R.E_ITS_MOVALL_PROCNUM_OOR
    assert g.sync(7) == 0
    assert g.mapc(0, 3) == 0 and its.collections[0].target == 3
    assert g.rdbase(1 << 40) == 0  # only the field's 32 bits are sent


def test_guest_processor_numbers_follow_vcpu_ids():
    vm = VM(2, vcpu_ids=[5, 9])  # 7.0: RDbase is the vCPU id
    its = vm.add_its()
    g = Guest(vm, its)
    g.enable_lpis()
    assert g.mapc(0, 1) == 0 and its.collections[0].target == 9
    assert g.mapc(1, 2) == R.E_ITS_MAPC_PROCNUM_OOR  # processor 2: no such vCPU id


# --- 13. version thresholds, stable point releases ----------------------------------------------


@pytest.mark.parametrize(
    "kernel, zeroes, checks_size",
    [
        ("6.1", False, False),
        ("6.1.119", False, False),
        ("6.1.120", True, False),
        ("6.1.175", True, True),
        ("6.6.63", False, False),
        ("6.6.64", True, False),
        ("6.6.142", True, True),
        ("6.10", False, False),
        ("6.12.1", False, False),
        ("6.12.2", True, False),
        ("6.12.92", True, True),
        ("6.13", True, False),
        ("6.18.33", True, False),
        ("6.18.34", True, True),
        ("7.0", True, False),  # the Size check is not in mainline 7.0...
        ("7.0.10", True, False),
        ("7.0.11", True, True),  # ...only in its stable releases from 7.0.11
        ("7.1", True, True),
    ],
)
def test_kernel_point_releases(kernel, zeroes, checks_size):
    from gictools.model.kernel import profile

    p = profile(kernel)
    assert (p.zero_on_unmap, p.restore_checks_dte_size) == (zeroes, checks_size)
    # and the behaviour follows: a restored 17-bit DTE
    vm = VM(1, kernel=kernel)
    its = vm.add_its()
    g = Guest(vm, its)
    g.enable_lpis()
    itt = g.alloc(0x10000, 256)
    vm.memory.write_u64(g.device_table, E.encode_dte(E.DeviceTableEntry(True, 0, itt, 16)))
    assert its.restore_tables() == (-R.EINVAL if checks_size else 0)
    assert g.mapc(0, 0) == 0 and g.mapd(9, 2) == 0 and its.save_tables() == 0
    assert vm.memory.read_u64(g.device_table + 8 * 9) != 0
    assert g.mapd(9, 2, valid=False) == 0
    assert (vm.memory.read_u64(g.device_table + 8 * 9) == 0) == zeroes


@pytest.mark.parametrize("bad", ["7", "7.x", "6.0", "5.15.174", "7.0.1.2", "-1.2", ""])
def test_kernel_version_refused(bad):
    with pytest.raises(ConfigError):
        VM(1, kernel=bad)


def test_kernel_names_round_trip_through_images():
    vm = VM(1, kernel="6.6.64")
    assert vm.kernel.name == "6.6.64" and VM(1, kernel="7.0").kernel.name == "7.0"
    assert load_image_bytes(dump_image(vm)).kernel.name == "6.6.64"


def test_trace_header_with_65536_itses_replays(tmp_path):
    """The campaign's case: an 860 KB header naming 65,536 ITSes (>120 s before)."""
    from gictools.replay import Replayer
    from gictools.trace.writer import TraceWriter

    p = tmp_path / "many.msgpack"
    bases = [0x1_0000_0000 + i * R.ITS_FRAME_SIZE for i in range(1 << 16)]
    with TraceWriter(p, vm={"vcpus": 1, "itses": [{"base": b} for b in bases]}) as w:
        w.msi(0xFFFF, 1, 2)
    rp = Replayer(p, ["per-its-v6.10"])
    rp.run()
    vm = rp.runs[0].vm
    assert len(vm.itses) == 1 << 16 and vm.its_at(bases[-1] + 0x10040) is vm.itses[-1]
