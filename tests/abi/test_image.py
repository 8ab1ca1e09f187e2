"""Image files: format checks, KVM restore order, determinism, raw dumps, CLI verbs."""

import pytest
from typer.testing import CliRunner

from gictools import VM
from gictools.cli import app
from gictools.errors import ImageError
from gictools.guest import Guest
from gictools.image import (
    HEADER_SIZE,
    dump_image,
    load_image,
    load_image_bytes,
    load_raw,
    save_image,
    save_raw,
)


def make_vm():
    vm = VM(2, vcpu_ids=[4, 9])
    its = vm.add_its()
    g = Guest(vm, its)
    g.enable_lpis()
    assert [
        g.mapc(0, 0),
        g.mapc(1, 1),
        g.mapd(3, 4),
        g.mapti(3, 1, 8192, 0),
        g.mapti(3, 2, 8193, 1),
    ] == [0] * 5
    g.set_lpi_config(8193, 0x80, True)
    assert g.inv(3, 2) == 0
    assert vm.signal_msi(its, 3, 2).ret == 1
    return vm, its, g


def test_roundtrip_identical_bytes_and_state(tmp_path):
    vm, its, g = make_vm()
    p = tmp_path / "a.img"
    save_image(vm, p)
    vm2 = load_image(p)
    assert vm2.state() == vm.state()
    assert vm2.pending_lpis(1) == [8193] and vm2.vcpu_ids == [4, 9]
    assert dump_image(vm2) == p.read_bytes() == dump_image(vm)


def test_restore_order_pending_imported_by_restore(tmp_path):
    vm, its, g = make_vm()
    data = dump_image(vm)
    vm2 = load_image_bytes(data)
    # the bit was consumed from guest memory at LPI creation
    assert vm2.memory.read(g.pend_tables[1] + 8193 // 8, 1) == b"\x00"


@pytest.mark.parametrize(
    "mutate,offset",
    [
        (lambda b: b"XXXXXXXX" + b[8:], 0),
        (lambda b: b[:8] + b"\x02\x00" + b[10:], 8),
        (lambda b: b[:-1], 16),
        (lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:], None),
        (lambda b: b[:10], 0),
    ],
)
def test_malformed_files(tmp_path, mutate, offset):
    vm, its, g = make_vm()
    data = mutate(dump_image(vm))
    with pytest.raises(ImageError) as ei:
        load_image_bytes(data)
    if offset is not None:
        assert ei.value.offset == offset
    else:
        assert ei.value.offset == len(data) - 32  # checksum


def test_body_errors_carry_offsets():
    import hashlib
    import struct

    import msgpack

    body = msgpack.packb(
        [
            "vm",
            {
                "vcpus": 1,
                "vcpu_ids": [0],
                "kernel": "7.0",
                "memory": [[0x4000_0000, 0x1000_0000]],
                "cache": "none",
            },
        ]
    )
    bad = msgpack.packb(["bogus", 1])
    b = body + bad
    head = struct.pack("<8sHHIQ", b"GICTIMG\0", 1, 0, 0, len(b))
    data = head + b + hashlib.sha256(head + b).digest()
    with pytest.raises(ImageError) as ei:
        load_image_bytes(data)
    assert ei.value.offset == HEADER_SIZE + len(body)


def test_failing_restore_step_raises_with_errno(tmp_path):
    vm, its, g = make_vm()
    # corrupt an ITE in guest memory, re-dump without the save sequence
    itt = its.devices[3].itt_addr
    assert vm.save_pending_tables() == 0 and its.save_tables() == 0
    vm.memory.write_u64(itt + 8, (2 << 48) | (100 << 16))
    with pytest.raises(ImageError) as ei:
        load_image_bytes(dump_image(vm, flush=False))
    assert ei.value.errno == -22 and ei.value.step == "its0.restore_tables"


def test_iidr_step_error():
    vm, its, g = make_vm()
    # an image whose GITS_IIDR names ABI revision 1 (through a fake register read)
    orig = its.read_reg
    its.read_reg = lambda r: 0x4B00143B if r == "GITS_IIDR" else orig(r)
    bad = dump_image(vm, flush=False)
    with pytest.raises(ImageError) as ei:
        load_image_bytes(bad)
    assert (ei.value.step, ei.value.errno) == ("its0.GITS_IIDR", -22)


def test_raw_dump_roundtrip(tmp_path):
    vm, its, g = make_vm()
    p = tmp_path / "mem.bin"
    base = g.prop_table
    assert save_raw(vm, p, base, 0x30000) == 0x30000
    vm2 = VM(1)
    assert load_raw(vm2, p, base) == 0x30000
    assert vm2.memory.read(base, 0x30000) == vm.memory.read(base, 0x30000)
    with pytest.raises(ImageError) as ei:
        load_raw(vm2, p, 0x4000_0000 + 0x1_0000_0000 - 0x1000)
    assert ei.value.offset == 0x1000
    with pytest.raises(ImageError):
        save_raw(vm, p, 0, 16)


def test_cli_verbs(tmp_path):
    vm, its, g = make_vm()
    p = tmp_path / "a.img"
    save_image(vm, p)
    r = CliRunner().invoke(app, ["restore", str(p)])
    assert r.exit_code == 0 and "event 2 -> INTID 8193" in r.output and "pending [8193]" in r.output
    r = CliRunner().invoke(app, ["roundtrip", str(p)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["inspect", str(p)])
    assert r.exit_code == 0 and "0 malformed" in r.output
    # flag a malformed entry
    itt = its.devices[3].itt_addr
    vm.memory.write_u64(itt + 8, (1 << 48) | (100 << 16))
    save_image(vm, p, flush=False)
    r = CliRunner().invoke(app, ["inspect", str(p)])
    assert r.exit_code == 1 and f"MALFORMED at {itt + 8:#x}" in r.output
    r = CliRunner().invoke(app, ["restore", str(tmp_path / "missing.img")])
    assert r.exit_code == 2
