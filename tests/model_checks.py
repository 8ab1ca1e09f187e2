"""Model scenarios and invariant checks shared by the property and stateful tests."""

from gictools import VM
from gictools import regs as R
from gictools.guest import Guest
from gictools.model.its import COLLECTION_NOT_MAPPED


def build(policy, kernel):
    vm = VM(3, cache=policy, kernel=kernel)
    guests = []
    for i in range(2):
        its = vm.add_its()
        guests.append(Guest(vm, its, alloc_base=0x4100_0000 + i * 0x100_0000))
    for g in guests:
        g.enable_lpis()
    for n, g in enumerate(guests):  # live state for the random stream to work on
        for c in range(3):
            g.mapc(c, c)
        for d in range(3):
            g.mapd(d, 4)
            for e in range(4):
                g.set_lpi_config(8192 + e)
                g.mapti(d, e, 8192 + (d * 4 + e + n) % 9, (d + e) % 3)
    return vm, guests


def one_device(policy, events, bits, kernel=None):
    """1 vCPU, one ITS, collection 0 on vCPU 0, device 0 with `bits` EventID bits and
    EventIDs 0..events-1 mapped to LPIs 8192+EventID. Returns (vm, its)."""
    vm = VM(1, cache=policy) if kernel is None else VM(1, cache=policy, kernel=kernel)
    its = vm.add_its()
    g = Guest(vm, its)
    g.enable_lpis()
    g.mapc(0, 0)
    g.mapd(0, bits)
    for e in range(events):
        g.set_lpi_config(8192 + e)
        assert g.mapti(0, e, 8192 + e, 0) == 0
    return vm, its


def build_its_state(spec, icid_step=1):
    """A VM whose one ITS maps spec = (vcpus, indirect, ncoll, [(DeviceID, bits,
    [(EventID, INTID, collection)])], pending INTIDs) through the Guest helper; collection c
    has ICID c * icid_step. Returns (vm, its)."""
    vcpus, indirect, ncoll, plan, pend = spec
    vm = VM(vcpus)
    its = vm.add_its()
    g = Guest(vm, its, indirect=indirect)
    g.enable_lpis()
    for c in range(ncoll):
        assert g.mapc(c * icid_step, c % vcpus) == 0
    for dev, bits, ites in plan:
        assert g.mapd(dev, bits) == 0
        for e, intid, c in ites:
            assert g.mapti(dev, e, intid, c * icid_step) == 0
    for intid in pend:
        if intid in vm.lpis:
            vm.lpis[intid].pending = True
    return vm, its


def retarget_quirk(vm, lpi):
    """The cached LPI targets a vCPU whose LPIs are off (MAPC V=1 does not invalidate)."""
    return lpi is not None and lpi.target is not None and not vm.redists[lpi.target].lpis_enabled


def check_cache_matches_slow_path(vm):
    for its in vm.itses:
        for d, e, lpi in its.cache.cached(its):
            err, slow = its.resolve_lpi(d, e)
            assert slow is lpi or (err == -R.EBUSY and retarget_quirk(vm, lpi)), (
                f"ITS {its.index} caches ({d}, {e}) -> {lpi!r}; slow path: {err} {slow!r}"
            )


def check_invariants(vm):
    refs = {}
    for its in vm.itses:
        colls = set(map(id, its.collections.values()))
        for d in its.devices.values():
            assert d.num_eventid_bits <= 16
            for e, ite in d.ites.items():
                assert e < 1 << d.num_eventid_bits
                assert vm.lpis.get(ite.lpi.intid) is ite.lpi, "ITE points at a missing LPI"
                assert ite.collection is None or id(ite.collection) in colls
                refs[ite.lpi.intid] = refs.get(ite.lpi.intid, 0) + 1
        for c in its.collections.values():
            assert c.target == COLLECTION_NOT_MAPPED or vm.vcpu_from_rdbase(c.target) is not None
    assert refs == {i: lpi.refs for i, lpi in vm.lpis.items()}
    for lpi in vm.lpis.values():
        assert 8192 <= lpi.intid < 65536 and lpi.priority & 3 == 0
        assert lpi.target is None or 0 <= lpi.target < vm.nr_vcpus


ITS_REGS = (  # what userspace writes back before GITS_CTLR (arm-vgic-its.rst)
    "GITS_CBASER",
    "GITS_IIDR",
    "GITS_BASER0",
    "GITS_BASER1",
    "GITS_CREADR",
    "GITS_CWRITER",
)


def restore_target(vm, bases, vm2):
    """Give the fresh vm2 an ITS at each base, vm's guest memory and its redistributor
    registers: what comes before the ITS registers and tables in KVM's restore order."""
    itses = [vm2.add_its(b) for b in bases]
    vm2.memory.pages = {k: bytearray(v) for k, v in vm.memory.pages.items()}
    for v in range(vm.nr_vcpus):
        for r in ("GICR_PROPBASER", "GICR_PENDBASER", "GICR_CTLR"):
            vm2.write_redist_reg(v, r, vm.read_redist_reg(v, r))
    return itses


def write_its_regs(its, its2):
    """Copy its's ITS_REGS into its2; the write results."""
    return [its2.write_reg(r, its.read_reg(r)) for r in ITS_REGS]


def migrate(vm, guests):
    """Save everything, restore into a fresh VM of the same kind in KVM's order
    (arm-vgic-its.rst, "ITS Restore Sequence"); the guests now drive the new VM. Returns (results, new vm)."""
    results = [vm.save_pending_tables()] + [g.its.save_tables() for g in guests]
    vm2 = VM(vm.nr_vcpus, kernel=vm.kernel.name, cache=vm.cache_policy, vcpu_ids=vm.vcpu_ids)
    itses = restore_target(vm, [g.its.base for g in guests], vm2)
    for g, its2 in zip(guests, itses):
        results += write_its_regs(g.its, its2)
        results.append(its2.restore_tables())
        results.append(its2.write_reg("GITS_CTLR", g.its.read_reg("GITS_CTLR")))
        g.vm, g.its = vm2, its2
    return results, vm2
