"""Known answers for the ABI rev 0 entry layouts (DTE, ITE, CTE, L1), both directions."""

import random

import pytest

from gictools import VM
from gictools import entries as E
from gictools.abi.pending import save_pending_tables


def test_dte_known_answer():
    # V=1, next=0x1234, ITT address 0x4106_0000, Size=15 (16 EventID bits)
    word = (1 << 63) | (0x1234 << 49) | ((0x4106_0000 >> 8) << 5) | 15
    e = E.decode_dte(word)
    assert e == E.DeviceTableEntry(True, 0x1234, 0x4106_0000, 15)
    assert e.num_eventid_bits == 16
    assert E.encode_dte(e) == word
    assert E.pack_dte(0x1234, 0x4106_0000, 15) == word
    assert E.unpack_dte(word) == (1, 0x1234, 0x4106_0000, 16)
    # ITT_addr spans bits 48:5, i.e. address bits 51:8
    top = E.encode_dte(E.DeviceTableEntry(True, 0, (1 << 52) - 256, 0))
    assert top == (1 << 63) | (((1 << 44) - 1) << 5)


def test_ite_known_answer():
    word = (0xFFFF << 48) | (0x2345 << 16) | 0xBEEF
    e = E.decode_ite(word)
    assert e == E.InterruptTranslationEntry(0xFFFF, 0x2345, 0xBEEF) and e.valid
    assert E.encode_ite(e) == word == E.pack_ite(0xFFFF, 0x2345, 0xBEEF)
    assert not E.decode_ite(0xFFFF).valid  # pINTID 0: invalid
    assert E.to_bytes(E.pack_ite(1, 8192, 3)) == bytes.fromhex("0300002000000100")


def test_cte_known_answer():
    word = (1 << 63) | (0xFFFF_FFFF << 16) | 7
    assert E.decode_cte(word) == E.CollectionTableEntry(True, 0xFFFF_FFFF, 7)
    assert E.encode_cte(E.decode_cte(word)) == word == E.pack_cte(0xFFFF_FFFF, 7)
    # KVM reads the target as (u32)(val >> 16): bits 51:48 are ignored
    assert E.unpack_cte(word | (0xF << 48)) == (1, 0xFFFF_FFFF, 7)
    assert (word | (0xF << 48)) & E.CTE_IGNORED_MASK


def test_l1_known_answer():
    word = (1 << 63) | 0x000F_1234_5678_0000
    assert E.decode_l1e(word) == E.L1Entry(True, 0x000F_1234_5678_0000)
    assert E.encode_l1e(E.decode_l1e(word)) == word
    assert E.unpack_l1e(word | 0xFFFF | (0x7FF << 52)) == (1, 0x000F_1234_5678_0000)
    with pytest.raises(ValueError):
        E.encode_l1e(E.L1Entry(True, 0x1000))


def test_encoders_reject_overflow():
    with pytest.raises(ValueError):
        E.encode_dte(E.DeviceTableEntry(True, 1 << 14, 0, 0))
    with pytest.raises(ValueError):
        E.encode_dte(E.DeviceTableEntry(True, 0, 0x80, 0))
    with pytest.raises(ValueError):
        E.encode_ite(E.InterruptTranslationEntry(0, 1 << 32, 0))


def test_fast_helpers_match_generic():
    rnd = random.Random(5)
    for _ in range(2000):
        w = rnd.getrandbits(64)
        d = E.decode_dte(w)
        assert E.unpack_dte(w) == (int(d.valid), d.next, d.itt_addr, d.num_eventid_bits)
        i = E.decode_ite(w)
        assert E.unpack_ite(w) == (i.next, i.pintid, i.icid)
        assert E.pack_ite(*E.unpack_ite(w)) == w == E.encode_ite(i)
        c = E.decode_cte(w)
        assert E.unpack_cte(w) == (int(c.valid), c.rdbase, c.icid)
        lv, la = E.unpack_l1e(w)
        assert (bool(lv), la) == tuple(E.decode_l1e(w))
        if d.valid:
            assert E.pack_dte(d.next, d.itt_addr, d.size) == E.encode_dte(d) == w


# --- pending tables (vgic_v3_save_pending_tables) ---------------------------------------------


def _vm_with_lpis():
    from gictools.guest import Guest

    vm = VM(2)
    its = vm.add_its()
    g = Guest(vm, its)
    g.enable_lpis()
    assert g.mapc(0, 0) == 0 and g.mapc(1, 1) == 0 and g.mapd(0, 4) == 0
    for ev, (intid, icid) in enumerate([(8192, 0), (8193, 1), (8200, 0), (8201, 1)]):
        assert g.mapti(0, ev, intid, icid) == 0
    return vm, its, g


def test_save_pending_tables_known_answer():
    vm, its, g = _vm_with_lpis()
    vm.lpis[8192].pending = True
    vm.lpis[8201].pending = True
    writes = []
    orig = vm.memory.write
    vm.memory.write = lambda gpa, data: (writes.append((gpa, bytes(data))), orig(gpa, data))[1]
    assert save_pending_tables(vm) == 0
    del vm.memory.write
    # INTID 8192 -> vCPU 0 table byte 1024 bit 0; INTID 8201 -> vCPU 1 byte 1025 bit 1
    assert vm.memory.read(g.pend_tables[0] + 1024, 2) == b"\x01\x00"
    assert vm.memory.read(g.pend_tables[1] + 1024, 2) == b"\x00\x02"
    assert writes == [(g.pend_tables[0] + 1024, b"\x01"), (g.pend_tables[1] + 1025, b"\x02")]
    # clearing also writes; an unchanged bit does not
    vm.lpis[8192].pending = False
    assert save_pending_tables(vm) == 0
    assert vm.memory.read(g.pend_tables[0] + 1024, 1) == b"\x00"
    assert vm.memory.read(g.pend_tables[1] + 1025, 1) == b"\x02"


def test_save_pending_tables_skips_untargeted_and_faults():
    vm, its, g = _vm_with_lpis()
    vm.lpis[8193].target = None
    vm.lpis[8193].pending = True
    assert save_pending_tables(vm) == 0
    assert vm.memory.read(g.pend_tables[1] + 1024, 1) == b"\x00"
    vm.lpis[8192].pending = True
    vm.redists[0].pendbaser = 0x580  # table at GPA 0: outside RAM
    assert save_pending_tables(vm) == -14
