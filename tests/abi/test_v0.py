"""ITS save/restore ABI rev 0: known-answer images both ways, KVM's errnos and failures."""

import pytest
from model_checks import ITS_REGS, restore_target, write_its_regs

from gictools import VM
from gictools import entries as E
from gictools.guest import Guest

EINVAL, EFAULT, EEXIST = -22, -14, -17


def build(indirect=False, vcpus=2, kernel="7.1"):
    vm = VM(vcpus, kernel=kernel)
    its = vm.add_its()
    g = Guest(vm, its, indirect=indirect)
    g.enable_lpis()
    return vm, its, g


def fresh_like(vm, its, kernel=None):
    """A new VM with vm's memory and registers, tables not yet restored (KVM's order)."""
    vm2 = VM(vm.nr_vcpus, kernel=kernel or vm.kernel.name)
    (its2,) = restore_target(vm, [its.base], vm2)
    assert write_its_regs(its, its2) == [0] * len(ITS_REGS)
    return vm2, its2


def u64(vm, gpa):
    return vm.memory.read_u64(gpa)


def test_save_known_answer_flat():
    vm, its, g = build()
    assert [g.mapc(5, 1), g.mapc(2, 0), g.mapd(4, 5), g.mapd(1, 3)] == [0] * 4
    assert [g.mapti(4, 0, 8300, 5), g.mapti(4, 17, 8301, 2), g.mapti(1, 7, 8300, 2)] == [0] * 3
    assert its.save_tables() == 0
    dt, ct = g.device_table, g.collection_table
    itt4, itt1 = its.devices[4].itt_addr, its.devices[1].itt_addr
    # DTEs: device 1 -> next 3 (to device 4); device 4 last
    assert E.decode_dte(u64(vm, dt + 8)) == E.DeviceTableEntry(True, 3, itt1, 2)
    assert E.decode_dte(u64(vm, dt + 32)) == E.DeviceTableEntry(True, 0, itt4, 4)
    assert u64(vm, dt) == 0 and u64(vm, dt + 16) == 0
    # ITEs: EventID order, next = distance
    assert E.decode_ite(u64(vm, itt4)) == E.InterruptTranslationEntry(17, 8300, 5)
    assert E.decode_ite(u64(vm, itt4 + 17 * 8)) == E.InterruptTranslationEntry(0, 8301, 2)
    assert E.decode_ite(u64(vm, itt1 + 7 * 8)) == E.InterruptTranslationEntry(0, 8300, 2)
    # CTEs in creation order, then a zero terminator
    assert E.decode_cte(u64(vm, ct)) == E.CollectionTableEntry(True, 1, 5)
    assert E.decode_cte(u64(vm, ct + 8)) == E.CollectionTableEntry(True, 0, 2)
    assert u64(vm, ct + 16) == 0


def test_dte_next_capped():
    vm, its, g = build(indirect=True)
    assert g.mapd(0, 1) == 0 and g.mapd(20000, 1) == 0
    assert its.save_tables() == 0
    assert E.decode_dte(u64(vm, its.check_id(0, 0))).next == 16383
    vm2, its2 = fresh_like(vm, its)
    assert its2.restore_tables() == 0
    assert sorted(its2.devices) == [0, 20000]  # found through the second L1 entry


def test_restore_hand_built_image():
    """Entries written by hand from the layouts restore to the expected objects."""
    vm, its, g = build()
    ct, dt = g.collection_table, g.device_table
    itt = g.alloc(0x100, 256)
    m = vm.memory
    m.write_u64(ct, E.encode_cte(E.CollectionTableEntry(True, 1, 9)))
    m.write_u64(ct + 8, E.encode_cte(E.CollectionTableEntry(True, 0xFFFF_FFFF, 3)))
    m.write_u64(dt + 8 * 6, E.encode_dte(E.DeviceTableEntry(True, 0, itt, 3)))
    m.write_u64(itt + 8 * 2, E.encode_ite(E.InterruptTranslationEntry(3, 9000, 9)))
    m.write_u64(itt + 8 * 5, E.encode_ite(E.InterruptTranslationEntry(0, 9001, 3)))
    g.set_lpi_config(9000, 0x40, True)
    g.set_pending_bit(1, 9000)
    assert its.restore_tables() == 0
    assert {c.icid: c.target for c in its.collections.values()} == {9: 1, 3: 0xFFFF_FFFF}
    dev = its.devices[6]
    assert (dev.itt_addr, dev.num_eventid_bits, sorted(dev.ites)) == (itt, 4, [2, 5])
    lpi = vm.lpis[9000]
    assert (lpi.target, lpi.priority, lpi.enabled, lpi.pending) == (1, 0x40, True, True)
    assert vm.memory.read(g.pend_tables[1] + 9000 // 8, 1) == b"\x00"  # bit consumed
    assert vm.lpis[9001].target is None


def _corrupt_case(kind):
    vm, its, g = build()
    assert [g.mapc(0, 0), g.mapd(2, 4), g.mapti(2, 1, 8192, 0), g.mapti(2, 3, 8193, 0)] == [0] * 4
    assert its.save_tables() == 0
    vm2, its2 = fresh_like(vm, its)
    m = vm2.memory
    dte_gpa = g.device_table + 16
    itt = its.devices[2].itt_addr
    if kind == "cte_target":
        m.write_u64(g.collection_table, E.pack_cte(7, 0))
    elif kind == "cte_dup":
        m.write_u64(g.collection_table + 8, E.pack_cte(0, 0))
    elif kind == "cte_oor":
        m.write_u64(g.collection_table, E.pack_cte(0, 9000))  # table holds 8192 entries
    elif kind == "ite_low_intid":
        m.write_u64(itt + 8, E.pack_ite(2, 100, 0))
    elif kind == "ite_next_oor":
        m.write_u64(itt + 24, E.pack_ite(13, 8193, 0))
    elif kind == "ite_bad_icid":
        m.write_u64(itt + 24, E.pack_ite(0, 8193, 4))
    elif kind == "dte_itt_outside":
        m.write_u64(dte_gpa, E.pack_dte(0, 0x1000, 3))
    elif kind == "dte_size":
        m.write_u64(dte_gpa, E.pack_dte(0, itt, 20))
    elif kind == "prop_outside":
        m.write_u64(itt + 24, E.pack_ite(0, 0xFFFF_0000, 0))
    return vm2, its2


@pytest.mark.parametrize(
    "kind,err",
    [
        ("cte_target", EINVAL),
        ("cte_dup", EEXIST),
        ("cte_oor", EINVAL),
        ("ite_low_intid", EINVAL),
        ("ite_next_oor", EINVAL),
        ("ite_bad_icid", EINVAL),
        ("dte_itt_outside", EFAULT),
        ("dte_size", EINVAL),
        ("prop_outside", EFAULT),
    ],
)
def test_restore_errors_leave_vm_unchanged(kind, err):
    vm2, its2 = _corrupt_case(kind)
    before, mem_before = vm2.state(), vm2.memory.snapshot()
    assert its2.restore_tables() == err
    assert vm2.state() == before
    assert vm2.memory.snapshot() == mem_before


def test_dte_size_accepted_before_7_0():
    vm2, its2 = _corrupt_case("dte_size")
    vm3 = VM(2, kernel="6.13")
    its3 = vm3.add_its(its2.base)
    vm3.memory.pages = vm2.memory.pages
    for r in ("GITS_CBASER", "GITS_BASER0", "GITS_BASER1"):
        its3.write_reg(r, its2.read_reg(r))
    for v in range(2):
        for r in ("GICR_PROPBASER", "GICR_PENDBASER", "GICR_CTLR"):
            vm3.write_redist_reg(v, r, vm2.read_redist_reg(v, r))
    assert its3.restore_tables() == 0
    assert its3.devices[2].num_eventid_bits == 21


def test_failed_restore_leaves_consumed_pending_bits_cleared():
    """vgic_its_restore_tables_v0 rolls nothing back: the pending bit the walk consumed
    (vgic_v3_lpi_sync_pending_status) stays cleared, everything restored is freed (real
    6.1.192 and 6.12.118: -EINVAL, bit read back 0)."""
    vm, its, g = build()
    assert [g.mapc(0, 0), g.mapd(2, 4), g.mapti(2, 1, 8192, 0), g.mapti(2, 3, 8193, 0)] == [0] * 4
    vm.lpis[8192].pending = True
    assert vm.save_pending_tables() == 0 and its.save_tables() == 0
    vm2, its2 = fresh_like(vm, its)
    vm2.memory.write_u64(its.devices[2].itt_addr + 24, E.pack_ite(0, 8193, 4))  # bad ICID
    pend = vm2.memory.read(g.pend_tables[0] + 1024, 1)
    assert pend == b"\x01"
    assert its2.restore_tables() == EINVAL
    assert vm2.memory.read(g.pend_tables[0] + 1024, 1) == b"\x00"
    assert not vm2.lpis and not its2.devices and not its2.collections
    assert (vm2.nr_devices, vm2.nr_ites) == (0, 0)


def test_failed_collection_restore_frees_live_collections():
    """A CTE duplicating a live ICID: -EEXIST, and vgic_its_restore_collection_table frees
    the ITS's whole collection list, the live one included; devices stay, their ITEs lose
    the collection (vgic_its_free_collection)."""
    vm, its, g = build()
    assert [g.mapc(0, 0), g.mapd(2, 4), g.mapti(2, 1, 8192, 0)] == [0] * 3
    assert its.save_tables() == 0
    assert its.restore_tables() == EEXIST
    assert not its.collections
    assert list(its.devices) == [2] and its.devices[2].ites[1].collection is None
    assert vm.signal_msi(its, 2, 1).ret == 0  # no collection: E_ITS_INT_UNMAPPED_INTERRUPT


def test_orphaned_ite_save_is_einval():
    vm, its, g = build()
    assert [g.mapc(0, 0), g.mapd(2, 4), g.mapti(2, 1, 8192, 0), g.mapc(0, 0, valid=False)] == [
        0
    ] * 4
    assert its.devices[2].ites[1].collection is None
    assert its.save_tables() == EINVAL


def test_save_check_id_failure_and_invalid_baser():
    vm, its, g = build(indirect=True)
    assert g.mapd(5, 2) == 0
    vm.memory.write_u64(g.device_table, 0)  # L1 entry gone: check_id fails
    assert its.save_tables() == EINVAL
    its.baser[0] &= ~(1 << 63)
    assert its.save_tables() == 0 and its.restore_tables() == 0


def test_iidr_revision_check():
    vm, its, g = build()
    assert its.write_reg("GITS_IIDR", 0x4B00143B) == EINVAL
    assert its.write_reg("GITS_IIDR", 0x4B00043B) == 0


def test_scan_loop_and_unreadable_tables_terminate():
    vm, its, g = build()
    # a valid DTE whose next points at itself is impossible (next >= 1); fill the ITT with
    # next=1 entries of an unknown collection and check the first failing one decides.
    assert g.mapc(0, 0) == 0 and g.mapd(0, 16) == 0
    assert its.save_tables() == 0
    itt = its.devices[0].itt_addr
    vm2, its2 = fresh_like(vm, its)
    for e in range(0, 1 << 16, 997):
        vm2.memory.write_u64(itt + 8 * e, E.pack_ite(1, 8192 + e, 0))
    assert its2.restore_tables() == 0
    assert len(its2.devices[0].ites) == len(range(0, 1 << 16, 997))
    # device table base outside RAM -> -EFAULT
    vm3, its3 = fresh_like(vm, its)
    its3.write_reg("GITS_BASER0", its.read_reg("GITS_BASER0") & ~0xFFFF_FFFF_0000 | 0x10000)
    assert its3.restore_tables() == EFAULT


def test_huge_itt_on_old_kernel_terminates():
    """DTE Size 27/28/31 on a kernel without the Size check: KVM's int length, no hang."""
    for size in (26, 27, 30):
        vm, its, g = build(kernel="6.13")
        assert its.save_tables() == 0
        itt = g.alloc(0x10000)
        vm.memory.write_u64(g.device_table, E.pack_dte(0, itt, size))
        vm2, its2 = fresh_like(vm, its)
        ret = its2.restore_tables()
        assert ret in (0, EFAULT)
