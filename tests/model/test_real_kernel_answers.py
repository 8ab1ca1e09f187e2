"""Known answers read from the real kernels (issue 20 point 5).

Each case was run on Debian's 6.1.192 and 6.12.118 arm64 kernels under
../shared/kvm-nested (a raw-ioctl program: KVM_CREATE_VM, vGICv3 + ITS, CTRL_INIT,
register writes through the device attributes, commands queued in guest memory and
processed by KVM after a userspace GITS_CWRITER write, KVM_SIGNAL_MSI,
SAVE_TABLES / RESTORE_TABLES / SAVE_PENDING_TABLES). The expected values below are what
those kernels returned; the model must give the same with --kernel set to the release.
"""

import pytest

from gictools import VM
from gictools import entries as E
from gictools import regs as R
from gictools.guest import Guest
from gictools.model import kernel as K

EINVAL, ENXIO = -R.EINVAL, -R.ENXIO
BOTH = ("6.1.192", "6.12.118")


def build(kernel, vcpus=1, *, indirect=False, dist=False, intids=range(8192, 8320)):
    vm = VM(vcpus, kernel=kernel)
    its = vm.add_its()
    g = Guest(vm, its, indirect=indirect)
    for i in intids:  # the probe enabled every LPI, priority 0xa0
        g.set_lpi_config(i)
    if dist:
        vm.write_dist_reg("GICD_CTLR", 0x12)  # EnableGrp1A | ARE
    g.enable_lpis()
    return vm, its, g


def pend_bit(vm, g, vcpu, intid):
    return vm.memory.read(g.pend_tables[vcpu] + intid // 8, 1)[0] >> (intid % 8) & 1


# --- a. MAPC V=0 leaves ITEs without a collection ------------------------------------------------


@pytest.mark.parametrize("kernel", BOTH)
def test_a_orphan_ites_saved_as_zero(kernel):
    """vgic_its_save_ite (stable 6.1.191 / 6.12.113): SAVE_TABLES 0, a zero ITE for each
    collection-less ITE; the others keep next pointing at them. Real: save=0,
    ite0=0 ite1=0x1000020010001 ite2=0 ite3=0x20030001, CTE of ICID 1 only."""
    vm, its, g = build(kernel, 2)
    assert [g.mapd(1, 4), g.mapc(0, 0), g.mapc(1, 1)] == [0, 0, 0]
    assert [g.mapti(1, e, 8192 + e, e % 2) for e in range(4)] == [0] * 4
    assert g.mapc(0, 0, valid=False) == 0
    itt = its.devices[1].itt_addr
    vm.memory.write(itt, b"\xee" * 64)
    assert its.save_tables() == 0
    assert [vm.memory.read_u64(itt + 8 * e) for e in range(4)] == [
        0,
        0x1_0000_2001_0001,
        0,
        0x2003_0001,
    ]
    assert vm.memory.read_u64(g.collection_table) == E.pack_cte(1, 1)
    assert vm.memory.read_u64(g.collection_table + 8) == 0


@pytest.mark.parametrize("kernel", ["6.1.190", "6.12.111", "7.1"])
def test_a_without_the_fix_the_save_fails(kernel):
    """MODEL CHOICE for kernels that dereference NULL there: -EINVAL."""
    vm, its, g = build(kernel)
    assert [g.mapd(1, 4), g.mapc(0, 0), g.mapti(1, 0, 8192, 0)] == [0, 0, 0]
    assert g.mapc(0, 0, valid=False) == 0
    assert its.save_tables() == EINVAL


# --- b. MOVALL moves only the source vCPU's LPIs -----------------------------------------------


@pytest.mark.parametrize("kernel, filtered", [*((k, True) for k in BOTH), ("6.12.111", False)])
def test_b_movall_source_filter(kernel, filtered):
    """vgic_its_cmd_handle_movall: update_affinity(irq, vcpu1, vcpu2) (stable 6.12.113).
    Real: INTID 8192 (vCPU 0) moves to vCPU 1, INTID 8193 (vCPU 2) stays on vCPU 2."""
    vm, its, g = build(kernel, 3)
    assert [g.mapd(1, 4), g.mapc(0, 0), g.mapc(2, 2)] == [0, 0, 0]
    assert [g.mapti(1, 0, 8192, 0), g.mapti(1, 1, 8193, 2)] == [0, 0]
    assert [vm.signal_msi(its, 1, e).ret for e in (0, 1)] == [1, 1]
    assert g.movall(0, 1) == 0
    assert vm.save_pending_tables() == 0
    assert [pend_bit(vm, g, v, 8192) for v in range(3)] == [0, 1, 0]
    assert [pend_bit(vm, g, v, 8193) for v in range(3)] == ([0, 0, 1] if filtered else [0, 1, 0])


# --- c. any change of GITS_BASER0/1 frees (6.12.112) ---------------------------------------------


@pytest.mark.parametrize(
    "kernel, answers", [("6.1.192", [1, 1, 1]), ("6.12.118", [0, 1, 0]), ("6.12.111", [1, 1, 1])]
)
def test_c_baser_change_frees(kernel, answers):
    """vgic_mmio_write_its_baser: 6.12.112+ frees the list on any change (then invalidates);
    before, only a write with Valid 0 frees. Real MSI after moving BASER0 / rewriting it
    unchanged / moving BASER1: 6.12.118 0, 1, 0; 6.1.192 1, 1, 1."""
    got = []
    for case in range(3):
        vm, its, g = build(kernel)
        assert [g.mapd(1, 4), g.mapc(0, 0), g.mapti(1, 0, 8192, 0)] == [0, 0, 0]
        assert vm.signal_msi(its, 1, 0).ret == 1  # cached too: the change must invalidate
        assert its.write_reg("GITS_CTLR", 0) == 0
        reg = ("GITS_BASER0", "GITS_BASER0", "GITS_BASER1")[case]
        value = its.read_reg(reg) + (0 if case == 1 else 0x10000)
        assert its.write_reg(reg, value) == 0
        assert its.write_reg("GITS_CTLR", 1) == 0
        got.append(vm.signal_msi(its, 1, 0).ret)
    assert got == answers


# --- d. SAVE_TABLES skips a device whose L1 entry was zeroed (6.12.112) ------------------------


@pytest.mark.parametrize("kernel, ret", [("6.1.192", EINVAL), ("6.12.118", 0)])
def test_d_save_skips_unreachable_device(kernel, ret):
    """vgic_its_save_device_tables: 6.12.112+ `continue`s past a device vgic_its_check_id
    cannot place (its ITT not written either) and still saves the collections; before,
    -EINVAL before the collection table. Real: 6.12.118 0 / CTE 0x8000000000000000,
    6.1.192 -EINVAL / CTE 0."""
    vm, its, g = build(kernel, indirect=True)
    assert [g.mapd(1, 4), g.mapc(0, 0), g.mapti(1, 0, 8192, 0)] == [0, 0, 0]
    vm.memory.write_u64(g.device_table, 0)
    itt = its.devices[1].itt_addr
    assert its.save_tables() == ret
    assert vm.memory.read_u64(itt) == 0
    assert vm.memory.read_u64(g.collection_table) == (0 if ret else E.pack_cte(0, 0))


def test_d_next_skips_unreachable_devices():
    """compute_next_devid_offset (6.12.112+): next points at the next device check_id can
    place, so restore does not walk into the skipped one (before: the next on the list).
    Real: 6.12.118 save 0, DTE 8191 0xc002000008242003 (next 8193); 6.1.192 -EINVAL,
    DTE 8191 0x8002000008242003 (next 1)."""
    for kernel, nxt in (("6.12.118", 16384 - 8191), ("6.12.111", 1)):
        vm, its, g = build(kernel, indirect=True)
        assert [g.mapd(8191, 4), g.mapd(8192, 4), g.mapd(16384, 4)] == [0, 0, 0]
        vm.memory.write_u64(g.device_table + 8, 0)  # L1[1], the one holding device 8192
        assert its.save_tables() == (0 if nxt > 1 else EINVAL)
        assert E.decode_dte(vm.memory.read_u64(its.check_id(0, 8191))).next == nxt


# --- e. EnableLPIs 1->0 with the distributor enabled ------------------------------------------


@pytest.mark.parametrize("kernel", BOTH)
@pytest.mark.parametrize("dist, bit", [(False, 1), (True, 0)])
def test_e_disabling_lpis_flushes_queued_lpis(kernel, dist, bit):
    """vgic_flush_pending_lpis clears the pending state of the LPIs on the vCPU's ap_list;
    an MSI queues there (vgic_queue_irq_unlock) only when the distributor is enabled.
    Real (both): GICR_CTLR 0x7 then 0x6; saved pending bit 1 (distributor off), 0 (on)."""
    vm, its, g = build(kernel, dist=dist)
    assert [g.mapd(1, 4), g.mapc(0, 0), g.mapti(1, 0, 8192, 0)] == [0, 0, 0]
    assert vm.signal_msi(its, 1, 0).ret == 1
    assert vm.read_redist_reg(0, "GICR_CTLR") == 0x7
    vm.write_redist_reg(0, "GICR_CTLR", 0)
    assert vm.read_redist_reg(0, "GICR_CTLR") == 0x6
    assert vm.save_pending_tables() == 0
    assert pend_bit(vm, g, 0, 8192) == bit


# --- f. a queued LPI outlives DISCARD while its vCPU has not run ----------------------------


@pytest.mark.parametrize("kernel", BOTH)
@pytest.mark.parametrize("dist", [False, True])
def test_f_queued_lpi_outlives_discard(kernel, dist):
    """its_free_ite drops the ITE's reference; the ap_list's reference keeps the LPI (its
    target and pending state) until the vCPU runs. vgic_add_lpi then reuses it with its old
    target. Real (both), distributor off: bit after DISCARD 0, MSI through vCPU 1's
    collection lands on vCPU 1; on: bit 1, and the re-mapped INTID stays on vCPU 0."""
    vm, its, g = build(kernel, 2, dist=dist)
    assert [g.mapd(1, 4), g.mapc(0, 0), g.mapc(1, 1), g.mapti(1, 0, 8192, 0)] == [0] * 4
    assert vm.signal_msi(its, 1, 0).ret == 1
    assert g.discard(1, 0) == 0
    assert vm.save_pending_tables() == 0
    assert pend_bit(vm, g, 0, 8192) == int(dist)
    assert g.mapti(1, 1, 8192, 1) == 0 and g.clear(1, 1) == 0
    assert vm.save_pending_tables() == 0
    assert pend_bit(vm, g, 0, 8192) == 0
    assert vm.signal_msi(its, 1, 1).ret == 1
    assert vm.save_pending_tables() == 0
    on = 0 if dist else 1
    assert [pend_bit(vm, g, 0, 8192), pend_bit(vm, g, 1, 8192)] == [1 - on, on]


def test_f_running_the_vcpu_releases_the_lpi():
    """vgic_prune_ap_list when the vCPU runs: the discarded LPI, still pending, is taken
    (ACK); once not pending it leaves the list and its last reference goes."""
    vm, its, g = build("6.12.118", dist=True)
    assert [g.mapd(1, 4), g.mapc(0, 0), g.mapti(1, 0, 8192, 0), g.mapti(1, 1, 8193, 0)] == [0] * 4
    assert vm.signal_msi(its, 1, 0).ret == 1 and vm.signal_msi(its, 1, 1).ret == 1
    assert g.discard(1, 0) == 0
    assert 8192 in vm.lpis and vm.lpis[8192].pending and vm.lpis[8192].refs == 1
    assert vm.ack(0, 8192)
    assert 8192 not in vm.lpis and list(vm.redists[0].ap_list) == [8193]
    assert vm.lpis[8193].refs == 2  # its ITE and the ap_list


# --- g. a failed RESTORE_TABLES frees live devices, keeps consumed bits cleared -------------


@pytest.mark.parametrize("kernel", BOTH)
def test_g_failed_restore_frees_live_state(kernel):
    """vgic_its_restore_tables_v0: -EINVAL; the live device 5 is freed (MSI 0), the pending
    bit of INTID 8200 the first ITE consumed stays 0; re-mapping makes MSIs work again.
    Real (both): restore -22, MSI 1 then 0, bit 0, after re-mapping MSI 1."""
    vm, its, g = build(kernel)
    assert [g.mapd(5, 4), g.mapc(0, 0), g.mapti(5, 0, 8192, 0)] == [0, 0, 0]
    assert vm.signal_msi(its, 5, 0).ret == 1
    vm.memory.write(g.device_table, bytes(0x10000))
    vm.memory.write(g.collection_table, bytes(0x10000))
    itt7 = g.alloc(0x100, 0x100)
    vm.memory.write_u64(g.device_table + 7 * 8, E.pack_dte(0, itt7, 3))
    vm.memory.write_u64(itt7, E.pack_ite(1, 8200, 0))
    vm.memory.write_u64(itt7 + 8, E.pack_ite(0, 8201, 9))  # ICID 9: no such collection
    g.set_pending_bit(0, 8200)
    assert its.restore_tables() == EINVAL
    assert vm.signal_msi(its, 5, 0).ret == 0
    assert pend_bit(vm, g, 0, 8200) == 0
    assert [g.mapc(0, 0), g.mapd(5, 4), g.mapti(5, 0, 8192, 0)] == [0, 0, 0]
    assert vm.signal_msi(its, 5, 0).ret == 1


# --- h, j. registers read back ---------------------------------------------------------------------


@pytest.mark.parametrize("kernel", BOTH)
def test_h_j_gicr_ctlr_and_typer(kernel):
    """vgic_mmio_read_v3r_ctlr: IR | CES once vgic_init set KVM_VGIC_IMP_REV_3;
    vgic_mmio_read_v3r_typer: Affinity from reset_mpidr. Real (both), vCPU ids 0, 17, 300:
    CTLR 0x6 (0x7 with LPIs on); TYPER 0x1, 0x0000010100001101, 0x0000120c00012c11."""
    vm = VM(3, vcpu_ids=[0, 17, 300], kernel=kernel)
    vm.add_its()
    assert [vm.read_redist_reg(v, "GICR_CTLR") for v in range(3)] == [0x6] * 3
    assert [vm.read_redist_reg(v, "GICR_TYPER") for v in range(3)] == [
        0x1,
        0x0000_0101_0000_1101,
        0x0000_120C_0001_2C11,
    ]
    Guest(vm, vm.itses[0]).enable_lpis()
    assert [vm.read_redist_reg(v, "GICR_CTLR") for v in range(3)] == [0x7] * 3


@pytest.mark.parametrize("kernel", BOTH)
def test_j_save_pending_before_init(kernel):
    """vgic_v3_save_pending_tables: -ENXIO until vgic_init. Real (both): -6."""
    vm = VM(1, kernel=kernel, initialized=False)
    vm.add_its()
    assert vm.save_pending_tables() == ENXIO
    assert vm.init_vgic() == 0 and vm.save_pending_tables() == 0


@pytest.mark.parametrize("kernel", BOTH)
def test_j_msi_without_an_its_is_enodev(kernel):
    """kvm_set_msi: !vgic_has_its -> -ENODEV for a VM with a vGICv3 and no ITS (the issue
    said -EINVAL; both real kernels return -19, with and without KVM_MSI_VALID_DEVID)."""
    vm = VM(1, kernel=kernel)
    assert vm.signal_msi(0, 1, 0, address=0x0808_0040).ret == -R.ENODEV
    assert vm.signal_msi(0, 1, 0, address=0x0808_0040, flags=0).ret == -R.ENODEV
    # kvm_send_userspace_msi checks the flags first (real, both: -22)
    assert vm.signal_msi(0, 1, 0, address=0x0808_0040, flags=2).ret == EINVAL


@pytest.mark.parametrize("kernel", BOTH)
def test_gicd_ctlr(kernel):
    """vgic_mmio_read_v3_misc: ARE_NS | DS, EnableGrp1 as written. Real (both): 0x50, then
    0x52 after writing 0x12."""
    vm = VM(1, kernel=kernel)
    assert vm.read_dist_reg("GICD_CTLR") == 0x50
    assert vm.write_dist_reg(0, 0x12, 4) == 0
    assert vm.read_dist_reg(0, 4) == 0x52 and vm.dist_enabled


# --- i. a restored duplicate DeviceID wins after a save ------------------------------------------


@pytest.mark.parametrize("kernel", BOTH)
@pytest.mark.parametrize("save", [False, True])
def test_i_restored_duplicate_after_save(kernel, save):
    """find_its_device returns the first device of the list: the live one after the restore
    appends the duplicate, the duplicate after list_sort (vgic_its_device_cmp) reversed
    them. Real (both): without a save INTID 8192 pending and the DTE names the image's ITT;
    after a save INTID 8300, and the DTE names the live device's ITT (written last)."""
    vm, its, g = build(kernel)
    assert [g.mapd(3, 4), g.mapc(0, 0), g.mapti(3, 0, 8192, 0)] == [0, 0, 0]
    itt_live = its.devices[3].itt_addr
    vm.memory.write(g.device_table, bytes(0x10000))
    vm.memory.write(g.collection_table, bytes(0x10000))
    itt_img = g.alloc(0x100, 0x100)
    vm.memory.write_u64(g.device_table + 3 * 8, E.pack_dte(0, itt_img, 3))
    vm.memory.write_u64(itt_img, E.pack_ite(0, 8300, 0))
    assert its.restore_tables() == 0
    if save:
        assert its.save_tables() == 0
    dte = E.decode_dte(vm.memory.read_u64(g.device_table + 3 * 8))
    assert dte.itt_addr == (itt_live if save else itt_img)
    assert vm.signal_msi(its, 3, 0).ret == 1
    assert vm.save_pending_tables() == 0
    assert [pend_bit(vm, g, 0, 8192), pend_bit(vm, g, 0, 8300)] == ([0, 1] if save else [1, 0])


# --- the version table ------------------------------------------------------------------------------


def test_version_table_for_the_booted_kernels():
    """The flags 6.1.192 and 6.12.118 get, and the first releases that bring them."""
    p61, p612 = K.profile("6.1.192"), K.profile("6.12.118")
    assert (p61.save_zeroes_orphan_ite, p61.baser_change_frees, p61.save_skips_unreachable) == (
        True,
        False,
        False,
    )
    assert p61.movall_filters_source and p61.zero_on_unmap
    assert p612.save_zeroes_orphan_ite and p612.baser_change_frees
    assert p612.save_skips_unreachable and p612.movall_filters_source and p612.zero_on_unmap
    assert not K.profile("6.1.190").save_zeroes_orphan_ite
    assert not K.profile("6.12.111").baser_change_frees
    assert K.profile("6.12.112").baser_change_frees
    assert not K.profile("6.12.112").movall_filters_source
    assert K.profile("6.12.113").movall_filters_source
    assert not K.profile("6.11.10").zero_on_unmap and K.profile("6.11.11").zero_on_unmap
    # mainline releases: not known to carry the 2026 fixes
    assert not K.profile("7.1").movall_filters_source
