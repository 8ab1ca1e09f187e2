"""One known-answer test per ITS command and per E_ITS_* code (vgic_its_handle_command and
the handlers it calls)."""

import pytest

from gictools import regs as R
from gictools.cmdlayout import decode_command, encode_command
from gictools.model.its import COLLECTION_NOT_MAPPED


def raw(hexstr):
    return bytes.fromhex(hexstr.replace(" ", ""))


# --- encoding: the 32 bytes, written out ---------------------------------------------------


def test_mapti_bytes():
    b = encode_command("MAPTI", DeviceID=2, EventID=20, pINTID=8195, ICID=3)
    assert b == raw("0a00000002000000 1400000003200000 0300000000000000 0000000000000000")
    assert decode_command(b) == ("MAPTI", {"DeviceID": 2, "EventID": 20, "pINTID": 8195, "ICID": 3})


def test_mapd_mapc_movall_bytes():
    assert encode_command("MAPD", DeviceID=7, Size=7, ITT_addr=0x40120000 >> 8, V=1) == raw(
        "0800000007000000 0700000000000000 0000124000000080 0000000000000000"
    )
    assert encode_command("MAPC", ICID=2, RDbase=2, V=1) == raw(
        "0900000000000000 0000000000000000 0200020000000080 0000000000000000"
    )
    assert encode_command("MOVALL", RDbase=1, RDbase2=3) == raw(
        "0e00000000000000 0000000000000000 0000010000000000 0000030000000000"
    )
    with pytest.raises(ValueError):
        encode_command("MAPD", Size=32)


def test_raw_mapti_through_queue(make):
    s = make()
    assert s.g.mapc(3, 1) == 0
    assert s.g.mapd(2, 8) == 0
    s.g.set_lpi_config(8195)
    assert (
        s.g.command(raw("0a00000002000000 1400000003200000 0300000000000000 0000000000000000")) == 0
    )
    ite = s.its.devices[2].ites[20]
    assert (ite.lpi.intid, ite.collection.icid, ite.lpi.target) == (8195, 3, 1)


# --- MAPD -------------------------------------------------------------------------------------


def test_mapd_device_oor_checked_for_v0_too(make):
    s = make()  # one 64 KiB flat device table: DeviceIDs 0..8191
    assert s.g.mapd(8191, 4) == 0
    assert s.g.mapd(8192, 4) == R.E_ITS_MAPD_DEVICE_OOR
    assert s.g.mapd(8192, 4, valid=False) == R.E_ITS_MAPD_DEVICE_OOR
    assert s.g.mapd(0x10000, 4, valid=False) == R.E_ITS_MAPD_DEVICE_OOR


def test_mapd_ittsize_oor_only_when_valid(make):
    s = make()
    assert s.g.mapd(1, 17) == R.E_ITS_MAPD_ITTSIZE_OOR
    assert 1 not in s.its.devices
    assert s.g.command(encode_command("MAPD", DeviceID=1, Size=31, V=0)) == 0
    assert s.g.mapd(1, 16) == 0 and s.its.devices[1].num_eventid_bits == 16


def test_mapd_remap_drops_ites(make):
    s = make()
    s.mapped(dev=1, events=2)
    itt = s.its.devices[1].itt_addr
    assert s.g.mapd(1, 4, itt_addr=itt) == 0  # identical parameters
    assert s.its.devices[1].ites == {} and s.vm.lpis == {}
    r = s.vm.signal_msi(s.its, 1, 0)
    assert (r.ret, r.error) == (0, R.E_ITS_INT_UNMAPPED_INTERRUPT)
    assert s.g.mapd(300, 4, valid=False) == 0  # never mapped: not an error


@pytest.mark.parametrize("kernel, zeroed", [("6.10", False), ("6.13", True), ("7.0", True)])
def test_mapd_v0_zeroes_dte_from_v6_13(make, kernel, zeroed):
    s = make(kernel=kernel)
    s.mapped(dev=5, events=1)
    dte = s.g.device_table + 8 * 5
    s.vm.memory.write(dte, (0x8000_0000_1234_5603).to_bytes(8, "little"))
    assert s.g.mapd(5, 4, valid=False) == 0
    assert (s.vm.memory.read_u64(dte) == 0) == zeroed
    assert 5 not in s.its.devices


# --- MAPC -------------------------------------------------------------------------------------


def test_mapc_errors(make):
    s = make()
    assert s.g.command(encode_command("MAPC", ICID=0, RDbase=5, V=1)) == R.E_ITS_MAPC_PROCNUM_OOR
    assert s.g.mapc(8192, 0) == R.E_ITS_MAPC_COLLECTION_OOR  # 64 KiB table: 8192 entries
    assert s.g.mapc(8191, 1) == 0


@pytest.mark.parametrize("kernel, ok_rdbase, bad_rdbase", [("7.0", 20, 1), ("6.6", 1, 20)])
def test_rdbase_vcpu_id_or_index(make, kernel, ok_rdbase, bad_rdbase):
    s = make(vcpus=2, kernel=kernel, vcpu_ids=[10, 20])
    c = lambda rd, v=1: s.g.command(encode_command("MAPC", ICID=4, RDbase=rd, V=v))  # noqa
    assert c(bad_rdbase) == R.E_ITS_MAPC_PROCNUM_OOR
    assert c(ok_rdbase) == 0
    assert s.vm.vcpu_from_rdbase(s.its.collections[4].target) == 1
    # v6.6 checks RDbase for V=0 too; v6.7+ does not
    assert c(bad_rdbase, 0) == (R.E_ITS_MAPC_PROCNUM_OOR if kernel == "6.6" else 0)


def test_mapc_retarget_moves_lpis_and_pending(make):
    s = make()
    s.mapped(dev=1, events=2, icid=0, vcpu=0)
    assert s.vm.signal_msi(s.its, 1, 0).vcpu == 0
    assert s.vm.pending_lpis(0) == [8192]
    assert s.g.mapc(0, 1) == 0
    assert s.vm.lpis[8192].target == 1 and s.vm.pending_lpis(1) == [8192]
    assert s.vm.signal_msi(s.its, 1, 1).vcpu == 1


def test_mapc_v0_orphans_ites_for_good(make):
    s = make()
    s.mapped(dev=1, events=1, icid=0, vcpu=0)
    assert s.g.mapc(0, 0, valid=False) == 0
    assert s.its.devices[1].ites[0].collection is None
    assert s.g.int_(1, 0) == R.E_ITS_INT_UNMAPPED_INTERRUPT
    assert s.g.mapc(0, 1) == 0  # a new collection; not reattached
    assert s.its.devices[1].ites[0].collection is None
    assert s.vm.signal_msi(s.its, 1, 0).ret == 0
    assert s.g.movi(1, 0, 0) == R.E_ITS_MOVI_UNMAPPED_COLLECTION
    assert s.g.discard(1, 0) == R.E_ITS_DISCARD_UNMAPPED_INTERRUPT
    assert s.g.mapd(1, 4, valid=False) == 0 and s.vm.lpis == {}


# --- MAPTI / MAPI ---------------------------------------------------------------------------------


def test_mapti_errors_in_order(make):
    s = make()
    assert s.g.mapc(0, 0) == 0
    assert s.g.mapti(9, 0, 8192, 0) == R.E_ITS_MAPTI_UNMAPPED_DEVICE
    assert s.g.mapd(1, 4) == 0
    assert s.g.mapti(1, 16, 8192, 0) == R.E_ITS_MAPTI_ID_OOR  # 4 bits: 0..15
    assert s.g.mapti(1, 0, 8191, 0) == R.E_ITS_MAPTI_PHYSICALID_OOR
    assert s.g.mapti(1, 0, 65536, 0) == R.E_ITS_MAPTI_PHYSICALID_OOR
    assert s.g.mapti(1, 0, 8192, 8192) == R.E_ITS_MAPC_COLLECTION_OOR  # a MAPC code from MAPTI
    assert s.g.mapti(1, 0, 65535, 0) == 0


def test_mapti_itt_outside_ram_is_id_oor(make):
    s = make()
    assert s.g.mapc(0, 0) == 0
    assert s.g.mapd(1, 4, itt_addr=0x2000_0000) == 0  # below RAM: MAPD does not check
    assert s.g.mapti(1, 0, 8192, 0) == R.E_ITS_MAPTI_ID_OOR


def test_mapti_limit_follows_propbaser_idbits(make):
    s = make(idbits=14)  # PROPBASER IDbits 13: INTIDs < 16384
    s.mapped(dev=1, events=0)
    assert s.g.mapti(1, 0, 16384, 0) == R.E_ITS_MAPTI_PHYSICALID_OOR
    assert s.g.mapti(1, 0, 16383, 0) == 0


def test_reset_propbaser_allows_no_lpi(make):
    from gictools import VM
    from gictools.guest import Guest

    vm = VM(1)
    its = vm.add_its()
    g = Guest(vm, its)
    its.mmio_write(R.GITS_CTLR, 4, 1)  # ITS on, PROPBASER never written
    assert g.mapc(0, 0) == 0 and g.mapd(0, 4) == 0
    assert g.mapti(0, 0, 8192, 0) == R.E_ITS_MAPTI_PHYSICALID_OOR


def test_mapti_existing_event_is_a_noop(make):
    s = make()
    s.mapped(dev=1, events=1)
    s.g.set_lpi_config(9000)
    assert s.g.mapti(1, 0, 9000, 0) == 0
    assert s.its.devices[1].ites[0].lpi.intid == 8192 and 9000 not in s.vm.lpis


def test_mapti_creates_unmapped_collection(make):
    s = make()
    s.mapped(dev=1, events=0)
    s.g.set_lpi_config(8300)
    assert s.g.mapti(1, 0, 8300, 7) == 0
    assert s.its.collections[7].target == COLLECTION_NOT_MAPPED
    assert s.vm.lpis[8300].target is None
    r = s.vm.signal_msi(s.its, 1, 0)
    assert (r.ret, r.error) == (0, R.E_ITS_INT_UNMAPPED_INTERRUPT)
    assert s.g.mapc(7, 1) == 0  # mapping it now retargets the LPI
    assert s.vm.lpis[8300].target == 1 and s.vm.signal_msi(s.its, 1, 0).ret == 1


def test_mapi_uses_eventid_as_intid(make):
    s = make()
    s.mapped(dev=1, events=0, bits=14)
    s.g.set_lpi_config(8200)
    assert s.g.mapi(1, 8200, 0) == 0 and s.its.devices[1].ites[8200].lpi.intid == 8200
    assert s.g.mapi(1, 5, 0) == R.E_ITS_MAPTI_PHYSICALID_OOR


def test_shared_lpi_keeps_first_target_and_lives_until_last_ite(make):
    s = make()
    s.mapped(dev=1, events=1, icid=0, vcpu=0)
    assert s.g.mapc(1, 1) == 0 and s.g.mapd(2, 4) == 0
    assert s.g.mapti(2, 3, 8192, 1) == 0  # same INTID, collection on vCPU 1
    lpi = s.vm.lpis[8192]
    assert lpi.target == 0 and lpi.refs == 2
    assert s.its.devices[2].ites[3].lpi is lpi
    assert s.g.discard(1, 0) == 0 and 8192 in s.vm.lpis
    assert s.g.discard(2, 3) == 0 and 8192 not in s.vm.lpis


def test_lpi_creation_reads_config_and_consumes_pending_bit(make):
    s = make()
    s.g.set_lpi_config(8193, priority=0x40, enabled=False)
    s.g.set_pending_bit(0, 8193)
    s.mapped(dev=1, events=0)
    assert s.g.mapti(1, 1, 8193, 0) == 0
    lpi = s.vm.lpis[8193]
    assert (lpi.priority, lpi.enabled, lpi.pending) == (0x40, False, True)
    assert s.vm.memory.read(s.g.pend_tables[0] + 8193 // 8, 1)[0] == 0  # consumed


# --- MOVI, DISCARD, CLEAR, INT, INV, INVALL, MOVALL, SYNC ----------------------------------


def test_movi(make):
    s = make()
    s.mapped(dev=1, events=1, icid=0, vcpu=0)
    assert s.g.movi(1, 5, 0) == R.E_ITS_MOVI_UNMAPPED_INTERRUPT
    assert s.g.movi(1, 0, 9) == R.E_ITS_MOVI_UNMAPPED_COLLECTION  # target does not exist
    s.vm.signal_msi(s.its, 1, 0)
    assert s.g.mapc(1, 1) == 0 and s.g.movi(1, 0, 1) == 0
    assert s.vm.pending_lpis(1) == [8192] and s.vm.pending_lpis(0) == []


def test_discard(make):
    s = make()
    s.mapped(dev=1, events=2)
    assert s.g.discard(1, 9) == R.E_ITS_DISCARD_UNMAPPED_INTERRUPT
    assert s.g.discard(1, 0) == 0
    assert 0 not in s.its.devices[1].ites and 8192 not in s.vm.lpis
    assert s.vm.signal_msi(s.its, 1, 0).error == R.E_ITS_INT_UNMAPPED_INTERRUPT


@pytest.mark.parametrize("kernel, zeroed", [("6.10", False), ("7.0", True)])
def test_discard_zeroes_ite_from_v6_13(make, kernel, zeroed):
    s = make(kernel=kernel)
    s.mapped(dev=1, events=2)
    ite_gpa = s.its.devices[1].itt_addr + 8 * 1
    s.vm.memory.write(ite_gpa, b"\xff" * 8)
    assert s.g.discard(1, 1) == 0
    assert (s.vm.memory.read_u64(ite_gpa) == 0) == zeroed


def test_clear_ignores_collection(make):
    s = make()
    s.mapped(dev=1, events=1)
    assert s.g.clear(1, 3) == R.E_ITS_CLEAR_UNMAPPED_INTERRUPT
    s.vm.signal_msi(s.its, 1, 0)
    assert s.g.mapc(0, 0, valid=False) == 0
    assert s.g.clear(1, 0) == 0 and s.vm.lpis[8192].pending is False


def test_int(make):
    s = make()
    s.mapped(dev=1, events=1, icid=0, vcpu=0)
    assert s.g.int_(1, 1) == R.E_ITS_INT_UNMAPPED_INTERRUPT
    assert s.g.int_(1, 0) == 0 and s.vm.pending_lpis(0) == [8192]
    assert len(s.its.cache) == 1  # INT fills the cache
    s.g.disable_lpis(0)
    assert s.g.int_(1, 0) == -R.EBUSY


def test_inv_rereads_config(make):
    s = make()
    s.mapped(dev=1, events=1)
    assert s.g.inv(1, 4) == R.E_ITS_INV_UNMAPPED_INTERRUPT
    s.g.set_lpi_config(8192, priority=0x10, enabled=False)
    assert s.vm.lpis[8192].enabled is True  # cached until INV
    assert s.g.inv(1, 0) == 0
    assert (s.vm.lpis[8192].priority, s.vm.lpis[8192].enabled) == (0x10, False)
    # PROPBASER moved outside RAM (allowed while LPIs are off on that RD): -EFAULT
    s.g.disable_lpis(0)
    s.vm.write_redist_reg(0, "GICR_PROPBASER", 0x1000_0000 | 15)
    assert s.g.inv(1, 0) == -R.EFAULT


def test_invall_only_touches_the_collections_vcpu(make):
    s = make()
    s.mapped(dev=1, events=1, icid=0, vcpu=0)
    s.mapped(dev=2, events=1, icid=1, vcpu=1, intid0=8300)
    assert s.g.invall(5) == R.E_ITS_INVALL_UNMAPPED_COLLECTION
    s.g.set_lpi_config(8192, enabled=False)
    s.g.set_lpi_config(8300, enabled=False)
    assert s.g.invall(1) == 0
    assert s.vm.lpis[8192].enabled is True and s.vm.lpis[8300].enabled is False
    assert s.g.mapti(2, 1, 8301, 7) == 0  # unmapped collection
    assert s.g.invall(7) == R.E_ITS_INVALL_UNMAPPED_COLLECTION


@pytest.mark.parametrize(
    "kernel, moved", [("6.9", {8192: 1, 8300: 1, 8400: 2}), ("7.0", {8192: 1, 8300: 1, 8400: 1})]
)
def test_movall_scope_by_kernel(make, kernel, moved):
    s = make(vcpus=3, kernel=kernel)
    s.mapped(dev=1, events=1, icid=0, vcpu=0)
    s.mapped(dev=2, events=1, icid=1, vcpu=1, intid0=8300)
    s.mapped(dev=3, events=1, icid=2, vcpu=2, intid0=8400)
    assert s.g.command(encode_command("MOVALL", RDbase=0, RDbase2=7)) == R.E_ITS_MOVALL_PROCNUM_OOR
    assert s.g.movall(1, 1) == 0
    assert s.g.movall(0, 1) == 0
    assert {i: s.vm.lpis[i].target for i in moved} == moved
    assert s.its.devices[1].ites[0].collection.icid == 0  # ITE links unchanged


def test_sync_and_unknown_commands(make):
    s = make()
    assert s.g.sync(1) == 0
    for op in (0x02, 0x06, 0x22, 0x2A, 0xFF):
        assert s.g.command(bytes([op]) + bytes(31)) == -R.ENODEV
    assert s.its.creadr == s.its.cwriter


# --- the queue ---------------------------------------------------------------------------------


def test_queue_wraps_around(make):
    s = make(queue_pages=1)  # 128 slots
    s.mapped(dev=1, events=1)
    start = s.its.creadr
    for _ in range(300):
        assert s.g.sync(0) == 0
    assert s.its.creadr == s.its.cwriter == (start + 300 * 32) % 4096
    assert s.its.mmio_read(R.GITS_CTLR, 4) == 0x8000_0001


def test_queued_commands_wait_for_enable_and_unreadable_slots_are_skipped(make):
    from gictools import VM
    from gictools.guest import Guest

    vm = VM(1)
    its = vm.add_its()
    g = Guest(vm, its)
    g.enable_lpis(enable_its=False)
    vm.memory.write(g.queue, encode_command("MAPC", ICID=0, RDbase=0, V=1))
    its.mmio_write(R.GITS_CWRITER, 8, 32)
    assert its.creadr == 0 and its.mmio_read(R.GITS_CTLR, 4) == 0  # not quiescent
    its.mmio_write(R.GITS_CTLR, 4, 1)  # enabling runs them
    assert its.creadr == 32 and 0 in its.collections
    # a queue outside guest RAM: slots are skipped, CREADR still advances
    its.mmio_write(R.GITS_CTLR, 4, 0)
    its.mmio_write(R.GITS_CBASER, 8, (1 << 63) | 0x1000_0000)
    its.mmio_write(R.GITS_CTLR, 4, 1)
    its.mmio_write(R.GITS_CWRITER, 8, 0xFE0)
    assert its.creadr == 0xFE0
