"""ITS and redistributor register rules (vgic-its.c, vgic-mmio-v3.c), guest memory."""

import tracemalloc

import pytest

from gictools import VM
from gictools import regs as R
from gictools.guest import Guest
from gictools.model.memory import GuestFault


@pytest.fixture
def its():
    return VM(2).add_its()


def test_reset_values(its):
    assert its.read_reg("GITS_TYPER") == 0x1EF71
    assert its.read_reg("GITS_IIDR") == 0x4B00043B
    assert its.read_reg("GITS_BASER0") == 0x1907_0000_0000_0600
    assert its.read_reg("GITS_BASER1") == 0x1C07_0000_0000_0600
    assert [its.read_reg(f"GITS_BASER{n}") for n in range(2, 8)] == [0] * 6
    assert its.read_reg("GITS_CTLR") == 0x8000_0000
    assert [
        its.mmio_read(o, 4)
        for o in (0xFFD0, 0xFFE0, 0xFFE4, 0xFFE8, 0xFFF0, 0xFFF4, 0xFFF8, 0xFFFC, 0xFFD4)
    ] == [0x40, 0x92, 0xB4, 0x3B, 0x0D, 0xF0, 0x05, 0xB1, 0]
    assert its.mmio_read(0x18, 8) == 0  # GITS_MPIDR: RAZ


def test_typer_iidr_idregs_read_only(its):
    for v in (0xFFFFFFFF, 0xA5A55A5A, 0):
        its.mmio_write(R.GITS_TYPER, 4, v)
        its.mmio_write(R.GITS_IIDR, 4, v)
        assert its.mmio_read(R.GITS_TYPER, 4) == 0x1EF71
        assert its.mmio_read(R.GITS_IIDR, 4) == 0x4B00043B


def test_cbaser_sanitised_and_zeroes_pointers(its):
    its.creadr = its.cwriter = 0x40
    v = (1 << 63) | (1 << 59) | (5 << 53) | 0x4001_F000 | (2 << 10) | 3
    its.mmio_write(R.GITS_CBASER, 8, v)
    L = R.GITS_CBASER_LAYOUT
    got = L.decode(its.read_reg("GITS_CBASER"))
    assert got["Shareability"] == 1 and got["InnerCache"] == 3 and got["OuterCache"] == 0
    assert got["PA"] << 12 == 0x4001_0000 and got["Size"] == 3 and got["Valid"] == 1
    assert its.creadr == its.cwriter == 0


def test_32bit_halves_merge(its):
    its.mmio_write(R.GITS_CBASER, 4, 0x4000_0003)
    its.mmio_write(R.GITS_CBASER + 4, 4, 0x8000_0000)
    # the low half stored as written; the high half carries Valid (and sanitised caches)
    assert its.read_reg("GITS_CBASER") == 0x8000_0000_4000_0003 | (3 << 59)
    assert its.mmio_read(R.GITS_CBASER + 4, 4) == 0x9800_0000


def test_baser_fixed_fields(its):
    its.mmio_write(R.GITS_BASER, 8, (1 << 63) | (1 << 62) | 0x4000_0000 | (0 << 8) | 1)
    b = R.GITS_BASER_LAYOUT.decode(its.read_reg("GITS_BASER0"))
    assert (b["Type"], b["Entry_Size"], b["Page_Size"], b["Indirect"]) == (1, 7, 2, 1)
    its.mmio_write(R.GITS_BASER + 8, 8, (1 << 63) | (1 << 62) | (7 << 56) | 0x4100_0000)
    b = R.GITS_BASER_LAYOUT.decode(its.read_reg("GITS_BASER1"))
    assert (b["Type"], b["Indirect"]) == (4, 0)  # collection Indirect is RAZ/WI
    its.mmio_write(R.GITS_BASER + 16, 8, 0xFFFF)
    assert its.read_reg("GITS_BASER2") == 0


def test_writes_ignored_while_enabled(its):
    g = Guest(its.vm, its)
    g.enable_lpis()
    before = (its.cbaser, list(its.baser))
    its.mmio_write(R.GITS_CBASER, 8, 0)
    its.mmio_write(R.GITS_BASER, 8, 0)
    assert (its.cbaser, list(its.baser)) == before
    assert its.write_reg("GITS_CREADR", 0) == -R.EBUSY


def test_enable_refused_without_valid_tables():
    vm = VM(1)
    its = vm.add_its()
    its.mmio_write(R.GITS_CTLR, 4, 1)
    assert not its.enabled
    its.mmio_write(R.GITS_BASER, 8, 1 << 63)
    its.mmio_write(R.GITS_BASER + 8, 8, 1 << 63)
    its.mmio_write(R.GITS_CTLR, 4, 1)
    assert not its.enabled  # CBASER still invalid
    its.mmio_write(R.GITS_CBASER, 8, (1 << 63) | 0x4000_0000)
    its.mmio_write(R.GITS_CTLR, 4, 1)
    assert its.enabled


def test_cwriter_rules(its):
    its.mmio_write(R.GITS_CBASER, 8, (1 << 63) | 0x4000_0000)  # Size 0: 4 KiB queue
    its.mmio_write(R.GITS_CWRITER, 8, 0x1000)  # past the queue: ignored
    assert its.cwriter == 0
    its.mmio_write(R.GITS_CWRITER, 8, 0x47 | (1 << 40))  # Retry and high bits dropped
    assert its.cwriter == 0x40


def test_creadr_userspace_and_guest(its):
    its.mmio_write(R.GITS_CBASER, 8, (1 << 63) | 0x4000_0000)
    its.mmio_write(R.GITS_CREADR, 8, 0x20)  # guest write ignored
    assert its.creadr == 0
    assert its.write_reg("GITS_CREADR", 0x2000) == -R.EINVAL
    assert its.write_reg("GITS_CREADR", 0x61) == 0 and its.creadr == 0x60
    assert its.mmio_read(R.GITS_CREADR, 8) & 1 == 0  # never Stalled


def test_userspace_access_errors(its):
    assert its.write_reg(0x82, 0) == -R.EINVAL  # 64-bit register, misaligned
    assert its.write_reg(0x18, 0) == -R.ENXIO  # no register there
    assert its.write_reg("GITS_IIDR", 1 << 12) == -R.EINVAL  # only ABI revision 0 exists
    assert its.write_reg("GITS_IIDR", 0) == 0


def test_translater_guest_write_does_nothing():
    vm = VM(1)
    its = vm.add_its()
    g = Guest(vm, its)
    g.enable_lpis()
    g.mapc(0, 0)
    g.mapd(0, 4)
    g.set_lpi_config(8192)
    g.mapti(0, 0, 8192, 0)
    its.mmio_write(R.GITS_TRANSLATER, 4, 0)
    assert vm.pending_lpis(0) == []


def test_baser_valid_clear_frees_devices_and_collections(make):
    s = make()
    s.mapped(dev=1, events=2)
    s.its.mmio_write(R.GITS_CTLR, 4, 0)
    s.its.mmio_write(R.GITS_BASER + 4, 4, 0)  # high half: Valid = 0
    assert s.its.devices == {} and s.vm.lpis == {}
    s.its.mmio_write(R.GITS_BASER + 8, 8, 0)
    assert s.its.collections == {}


def test_msi_return_contract(make):
    s = make()
    s.mapped(dev=1, events=1)
    vm, its = s.vm, s.its
    assert vm.signal_msi(its, 1, 0).ret == 1
    assert vm.signal_msi(its, 1, 7).ret == 0
    assert vm.signal_msi(its, 1, 0, flags=3).ret == -R.EINVAL
    assert vm.signal_msi(its, 1, 5, flags=0).ret == -R.EINVAL  # miss, no DEVID flag
    assert vm.signal_msi(its, 1, 0, flags=0).ret == 1  # cache hit first
    assert vm.signal_msi(its, 1, 0, address=0x1234_0000).ret == -R.EINVAL
    r = vm.signal_msi(its, 1, 0, address=its.base + 0x100)  # anywhere in the frame
    assert r.ret == 1 and r.cache == "hit"  # v6.10: any address in the frame finds the ITS
    s.g.disable_lpis(0)
    assert vm.signal_msi(its, 1, 0).ret == -R.EBUSY
    assert VM(1).signal_msi(None, 1, 0, address=0x0801_0040).ret == -R.ENODEV


def test_lru_cache_only_hits_exact_doorbell(make):
    s = make(cache="lru-v6.8", kernel="6.8")
    s.mapped(dev=1, events=1)
    assert s.vm.signal_msi(s.its, 1, 0).cache == "miss"
    assert s.vm.signal_msi(s.its, 1, 0, address=s.its.base + 0x40).cache == "miss"
    assert s.vm.signal_msi(s.its, 1, 0).cache == "hit"


# --- redistributors ---------------------------------------------------------------------------


def test_propbaser_pendbaser_sanitising_and_lock():
    vm = VM(2)
    vm.add_its()
    vm.write_redist_reg(0, "GICR_PROPBASER", 0xFFFF_FFFF_FFFF_FFFF)
    p = vm.read_redist_reg(1, "GICR_PROPBASER")  # one value for every RD
    assert p & ((0x1F << 59) | (0xF << 52) | (3 << 5)) == 0
    vm.write_redist_reg(0, "GICR_PENDBASER", (1 << 62) | 0x4001_0000)
    assert vm.read_redist_reg(0, "GICR_PENDBASER") & (1 << 62) == 0  # PTZ reads 0
    vm.write_redist_reg(0, "GICR_CTLR", 1)
    vm.write_redist_reg(0, "GICR_PROPBASER", 0x4000_0000 | 15)
    assert vm.read_redist_reg(0, "GICR_PROPBASER") == p  # ignored while LPIs on


def test_gicr_ctlr_needs_an_its():
    vm = VM(1)
    vm.write_redist_reg(0, "GICR_CTLR", 1)
    assert not vm.redists[0].lpis_enabled


def test_enable_lpis_imports_and_can_clear_latch(make):
    s = make()
    s.mapped(dev=1, events=2)
    s.vm.signal_msi(s.its, 1, 0)
    s.g.disable_lpis(0)
    assert s.vm.lpis[8192].pending  # flush keeps the latch
    s.g.set_pending_bit(0, 8193)
    s.vm.write_redist_reg(0, "GICR_CTLR", 1)
    assert s.vm.lpis[8192].pending is False  # overwritten from the table
    assert s.vm.lpis[8193].pending is True
    assert s.vm.memory.read(s.g.pend_tables[0] + 8193 // 8, 1)[0] == 1 << (8193 % 8)


def test_ptz_skips_import(make):
    s = make()
    s.mapped(dev=1, events=1)
    s.g.disable_lpis(0)
    s.g.set_pending_bit(0, 8192)
    pend = s.vm.redists[0].pendbaser | (1 << 62)
    s.vm.write_redist_reg(0, "GICR_PENDBASER", pend)
    s.vm.write_redist_reg(0, "GICR_CTLR", 1)
    assert s.vm.lpis[8192].pending is False


def test_invlpir_invallr(make):
    s = make()
    s.mapped(dev=1, events=2)
    s.g.set_lpi_config(8192, enabled=False)
    s.g.set_lpi_config(8193, enabled=False)
    s.vm.write_redist_reg(0, "GICR_INVLPIR", 8192)
    assert not s.vm.lpis[8192].enabled and s.vm.lpis[8193].enabled
    s.vm.write_redist_reg(0, "GICR_INVALLR", 0)
    assert not s.vm.lpis[8193].enabled


def test_config_not_reread_on_propbaser_or_enable(make):
    s = make()
    s.mapped(dev=1, events=1)
    s.g.set_lpi_config(8192, enabled=False)
    s.g.disable_lpis(0)
    s.g.enable_lpis(0)
    assert s.vm.lpis[8192].enabled


@pytest.mark.parametrize(
    "kernel, order", [("6.8", [8300, 8192, 8250]), ("6.9", [8192, 8250, 8300])]
)
def test_copy_lpi_list_order_and_filter(make, kernel, order):
    s = make(kernel=kernel)
    assert s.g.mapc(0, 0) == 0 and s.g.mapc(1, 1) == 0 and s.g.mapd(1, 4) == 0
    for e, (intid, icid) in enumerate([(8300, 0), (8192, 0), (8250, 0), (8260, 1)]):
        s.g.set_lpi_config(intid)
        assert s.g.mapti(1, e, intid, icid) == 0
    assert s.vm.copy_lpi_list(0) == order
    assert sorted(s.vm.copy_lpi_list()) == [8192, 8250, 8260, 8300]


# --- guest memory --------------------------------------------------------------------------------


def test_memory_sparse_zero_and_faults():
    vm = VM(1, memory=[(0x4000_0000, 0x1000_0000)])
    m = vm.memory
    assert m.read(0x4800_0000, 16) == bytes(16) and m.pages == {}
    m.write(0x4000_0FFE, b"\x01\x02\x03\x04")  # crosses a page
    assert m.read_u64(0x4000_0FFC) == 0x0403_0201_0000 and len(m.pages) == 2
    for gpa in (0x3FFF_FFFF, 0x5000_0000, 0x4FFF_FFFC):
        with pytest.raises(GuestFault):
            m.read(gpa, 8)
    tracemalloc.start()
    m.read(0x4000_0000, 1 << 20)
    m.write(0x4FFF_F000, b"x")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 8 << 20 and len(m.pages) == 3


def test_hostile_guest_values_allocate_nothing(make):
    s = make()
    s.mapped(dev=1, events=1)
    pages = len(s.vm.memory.pages)
    from gictools.cmdlayout import encode_command

    tracemalloc.start()
    for b in (
        encode_command("MAPD", DeviceID=0xFFFF_FFFF, Size=31, ITT_addr=(1 << 44) - 1, V=1),
        encode_command("MAPTI", DeviceID=1, EventID=0xFFFF_FFFF, pINTID=0xFFFF_FFFF, ICID=0xFFFF),
        encode_command("MAPC", ICID=0xFFFF, RDbase=0xFFFF_FFFF, V=1),
        encode_command("MOVALL", RDbase=0xFFFF_FFFF, RDbase2=0xFFFF_FFFF),
        encode_command("INVALL", ICID=0xFFFF),
    ):
        assert s.its.process_command(b) > 0
    s.its.mmio_write(R.GITS_CTLR, 4, 0)
    s.its.mmio_write(R.GITS_CBASER, 8, (1 << 63) | (0xF_FFFF_FFFF << 12) | 0xFF)
    s.its.mmio_write(R.GITS_BASER, 8, (1 << 63) | (1 << 62) | (0xFFFF_FFFF << 16) | 0xFF)
    s.its.mmio_write(R.GITS_CTLR, 4, 1)
    s.its.mmio_write(R.GITS_CWRITER, 8, 0xFFFE0)  # 32768 unreadable slots
    assert s.its.creadr == 0xFFFE0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 4 << 20
    assert len(s.vm.memory.pages) <= pages + 1
