"""kvm-unit-tests arm/gic.c ITS scenarios, written with Guest.

CPUs there are vCPUs here; "exactly one LPI acked on CPU n" becomes: the LPI is
deliverable on vCPU n (pending, enabled, targeted, LPIs on) and nowhere else, and
acknowledging it leaves nothing pending.
"""

import pytest

from gictools import VM
from gictools import regs as R
from gictools.guest import Guest
from gictools.image import dump_image, load_image_bytes

NR_CPUS = 4


def setup1(kernel="7.0"):
    """its_setup1: devices 2 and 7 (8 EventID bits), collections 3 -> PE 3 and 2 -> PE 2."""
    vm = VM(NR_CPUS, kernel=kernel)
    its = vm.add_its()
    g = Guest(vm, its, idbits=14)  # PROPBASER IDbits 13, as the library
    g.enable_lpis()
    g.set_lpi_config(8195)
    g.set_lpi_config(8196)
    assert g.mapd(2, 8) == 0 and g.mapd(7, 8) == 0
    assert g.mapc(3, 3) == 0 and g.mapc(2, 2) == 0
    assert g.invall(2) == 0 and g.invall(3) == 0
    assert g.mapti(2, 20, 8195, 3) == 0 and g.mapti(7, 255, 8196, 2) == 0
    return vm, its, g


def acked(vm):
    """Take every deliverable LPI on every vCPU: {vcpu: [intid, ...]}."""
    got = {}
    for v in range(vm.nr_vcpus):
        for intid in vm.pending_lpis(v):
            if vm.ack(v, intid):
                got.setdefault(v, []).append(intid)
    return got


def test_its_introspection():
    its = VM(NR_CPUS).add_its()
    typer = R.GITS_TYPER_LAYOUT.decode(its.read_reg("GITS_TYPER"))
    for v in (0xFFFFFFFF, 0xA5A55A5A, 0):
        its.mmio_write(R.GITS_IIDR, 4, v)
        its.mmio_write(R.GITS_TYPER, 4, v)
    assert R.GITS_TYPER_LAYOUT.decode(its.read_reg("GITS_TYPER")) == typer
    assert its.read_reg("GITS_IIDR") == 0x4B00043B
    assert typer["Physical"] == 1 and typer["Virtual"] == 0
    assert typer["ITT_entry_size"] + 1 == 8
    assert typer["IDbits"] + 1 == 16 and typer["Devbits"] + 1 == 16
    assert typer["CIL"] == 0 and typer["PTA"] == 0  # 16-bit ICIDs, PE numbers
    for n in (0, 1):
        b = R.GITS_BASER_LAYOUT.decode(its.read_reg(f"GITS_BASER{n}"))
        assert b["Entry_Size"] + 1 == 8 and b["Page_Size"] == 2


def test_its_trigger():
    vm, its, g = setup1()
    assert g.int_(2, 20) == 0
    assert acked(vm) == {3: [8195]}  # int-1
    assert g.int_(7, 255) == 0
    assert acked(vm) == {2: [8196]}  # int-2
    g.set_lpi_config(8195, enabled=False)  # inv
    assert g.inv(2, 20) == 0 and g.int_(2, 20) == 0
    assert acked(vm) == {}
    g.set_lpi_config(8195, enabled=True)  # invall
    assert g.int_(2, 20) == 0
    assert not vm.deliverable(3, 8195)  # cached config: not yet
    assert g.invall(3) == 0
    assert acked(vm) == {3: [8195]}  # one delivery
    assert g.int_(2, 20) == 0 and acked(vm) == {3: [8195]}  # re-int
    assert g.mapd(2, 8, valid=False) == 0  # unmap
    assert g.int_(2, 20) == R.E_ITS_INT_UNMAPPED_INTERRUPT
    assert acked(vm) == {}


def migrate(vm):
    """Save pending + ITS tables, restore everything into a fresh VM (KVM's order)."""
    return load_image_bytes(dump_image(vm))


def test_its_migration():
    vm, its, g = setup1()
    vm2 = migrate(vm)
    its2 = vm2.itses[0]
    assert vm2.signal_msi(its2, 2, 20).ret == 1 and acked(vm2) == {3: [8195]}
    assert vm2.signal_msi(its2, 7, 255).ret == 1 and acked(vm2) == {2: [8196]}


def test_its_migrate_unmapped_collection():
    vm, its, g = setup1()
    g.set_lpi_config(8192)
    assert g.mapti(2, 0, 8192, 0) == 0  # ICID 0 exists, never MAPC'd
    assert its.collections[0].target == 0xFFFF_FFFF
    vm2 = migrate(vm)
    g2 = Guest(vm2, vm2.itses[0])  # post commands on the new queue
    g2.queue = g.queue
    assert g2.mapc(0, 0) == 0 and g2.invall(0) == 0
    assert vm2.signal_msi(vm2.itses[0], 7, 255).ret == 1 and acked(vm2) == {2: [8196]}
    assert vm2.memory.read(g.prop_table + 0, 1)[0] == 0xA3
    assert vm2.signal_msi(vm2.itses[0], 2, 0).ret == 1 and acked(vm2) == {0: [8192]}


@pytest.mark.parametrize("kernel", ["6.8", "7.0"])
def test_its_pending_migration(kernel):
    vm = VM(NR_CPUS, kernel=kernel)
    its = vm.add_its()
    g = Guest(vm, its, idbits=14)
    g.enable_lpis()
    pe0, pe1 = NR_CPUS - 1, NR_CPUS - 2
    assert g.mapd(2, 8) == 0
    assert g.mapc(pe0, pe0) == 0 and g.mapc(pe1, pe1) == 0
    g.disable_lpis(pe0)
    g.disable_lpis(pe1)
    for i in range(256):
        col = pe0 if i % 2 else pe1
        assert g.mapti(2, i, 8192 + i, col) == 0  # config byte still 0: disabled
        g.set_lpi_config(8192 + i)
        g.set_pending_bit(col, 8192 + i)
    assert not vm.lpis[8192].enabled and not vm.lpis[8192].pending
    assert g.invall(pe0) == 0 and g.invall(pe1) == 0  # config applied
    assert vm.lpis[8192].enabled
    g.enable_lpis(pe0)  # PENDBASER rewritten, PTZ clear
    g.enable_lpis(pe1)
    vm2 = migrate(vm)
    got = acked(vm2)
    assert len(got[pe0]) == 128 and len(got[pe1]) == 128
    assert set(got) == {pe0, pe1}
