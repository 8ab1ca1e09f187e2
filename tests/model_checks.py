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


_ITS_REGS = (
    "GITS_CBASER",
    "GITS_IIDR",
    "GITS_BASER0",
    "GITS_BASER1",
    "GITS_CREADR",
    "GITS_CWRITER",
)


def migrate(vm, guests):
    """Save everything, restore into a fresh VM of the same kind in KVM's order (kvm-its
    §9.2, §9.7); the guests now drive the new VM. Returns (results, new vm)."""
    results = [vm.save_pending_tables()] + [g.its.save_tables() for g in guests]
    vm2 = VM(vm.nr_vcpus, kernel=vm.kernel.name, cache=vm.cache_policy, vcpu_ids=vm.vcpu_ids)
    itses = [vm2.add_its(g.its.base) for g in guests]
    vm2.memory.pages = {k: bytearray(v) for k, v in vm.memory.pages.items()}
    for v in range(vm.nr_vcpus):
        for r in ("GICR_PROPBASER", "GICR_PENDBASER", "GICR_CTLR"):
            vm2.write_redist_reg(v, r, vm.read_redist_reg(v, r))
    for g, its2 in zip(guests, itses):
        for r in _ITS_REGS:
            results.append(its2.write_reg(r, g.its.read_reg(r)))
        results.append(its2.restore_tables())
        results.append(its2.write_reg("GITS_CTLR", g.its.read_reg("GITS_CTLR")))
        g.vm, g.its = vm2, its2
    return results, vm2
