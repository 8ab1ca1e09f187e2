"""Invalidation counts are the policy's own (CachePolicy.invalidations): one per
vgic_its_invalidate_cache call, which is what the KVM recorder counts (docs/record-kvm.md), so
an invalidation of an empty cache counts and EnableLPIs 1->0 counts once per cache object
(v6.10+: vgic_its_invalidate_all_caches calls it per ITS). The replay report carries the count
(report.invalidations, as_dict), and compare.model_cache_counts reads it from there.

A recorded stream of triggers (docs/cache-policies.md, "Invalidation") on two ITSes, with the
count each step adds under each policy and kernel, then the same total from the replay."""

import pytest

from gictools import VM
from gictools import regs as R
from gictools.errors import ConfigError
from gictools.guest import Guest
from gictools.model.cache import POLICIES, policy_class, policy_names, register
from gictools.model.cache.lru_v6_8 import LruV68
from gictools.model.kernel import profile
from gictools.replay import replay
from gictools.trace.format import CTRL_MIGRATE
from gictools.trace.kvm.compare import model_cache_counts
from gictools.trace.recorder import Recorder
from gictools.trace.writer import TraceWriter

KERNELS = ["6.1", "6.12.118"]  # 6.12.118: any GITS_BASER change invalidates (stable 6.12.112)


def _guest(s, i):
    s["g"].append(Guest(s["rec"], s["rec"].itses[i], alloc_base=0x4100_0000 + 0x0100_0000 * i))


def _map(s, i):
    g, g0 = s["g"][i], s["g"][0]
    assert g.mapc(0, 0) == 0 and g.mapd(1, 4) == 0  # a new device: nothing to invalidate
    for e in range(2):
        g0.set_lpi_config(8192 + 100 * i + e)  # the VM's PROPBASER is guest 0's table
        assert g.mapti(1, e, 8192 + 100 * i + e, 0) == 0


def _msis(s):
    for its in s["rec"].itses:
        for e in range(2):
            s["rec"].signal_msi(its, 1, e)


def _remap(s):
    g = s["g"][0]
    assert g.mapd(1, 4) == 0  # the device exists: vgic_its_free_device
    for e in range(2):
        assert g.mapti(1, e, 8192 + e, 0) == 0


# (what, action, invalidations added: (VM-wide cache, per-ITS caches)); None: the set-up's,
# which depend on the kernel
STEPS = [
    ("ITS 0 tables (GITS_BASER0/1)", lambda s: _guest(s, 0), None),
    ("ITS 1 tables (GITS_BASER0/1)", lambda s: _guest(s, 1), None),
    ("EnableLPIs 0->1, GITS_CTLR Enable 1", lambda s: s["g"][0].enable_lpis(), (0, 0)),
    ("ITS 1 GITS_CTLR Enable 1", lambda s: s["g"][1].enable_lpis(), (0, 0)),
    ("MAPC, MAPD of a new device, MAPTI at ITS 0", lambda s: _map(s, 0), (0, 0)),
    ("the same at ITS 1", lambda s: _map(s, 1), (0, 0)),
    ("MSIs (fills, hits)", _msis, (0, 0)),
    ("MAPD of a mapped device (remap), MAPTI", _remap, (1, 1)),
    ("DISCARD", lambda s: s["g"][0].discard(1, 1), (1, 1)),
    ("DISCARD of an unmapped event (fails)", lambda s: s["g"][0].discard(1, 1), (0, 0)),
    ("MAPC V=1 of a new collection", lambda s: s["g"][0].mapc(1, 1), (0, 0)),
    ("MOVI", lambda s: s["g"][0].movi(1, 0, 1), (1, 1)),
    ("INV, INVALL, SYNC", lambda s: [s["g"][0].inv(1, 0), s["g"][0].invall(0)], (0, 0)),
    ("MSIs again", _msis, (0, 0)),
    ("GITS_CTLR Enable 0", lambda s: s["rec"].itses[0].mmio_write(R.GITS_CTLR, 4, 0), (1, 1)),
    ("GITS_CTLR Enable 0 again", lambda s: s["rec"].itses[0].mmio_write(R.GITS_CTLR, 4, 0), (1, 1)),
    ("EnableLPIs 1->0 on vCPU 1", lambda s: s["g"][0].disable_lpis(1), (1, 2)),
]


def _added(step, kernel, policy):
    per_its = policy_class(policy).scope == "its"
    if step[2] is None:  # two GITS_BASER writes, each a change: free, then invalidate
        return 2 if profile(kernel).baser_change_frees else 0
    return step[2][per_its]


def _total(kernel, policy):
    return sum(_added(s, kernel, policy) for s in STEPS)


def test_stream_totals_known_answers():
    """The table's sums, spelled out: 5 triggers, EnableLPIs 1->0 twice per-ITS, plus two
    GITS_BASER changes per ITS on 6.12.118."""
    assert [(k, p, _total(k, p)) for k in KERNELS for p in ("lru-v6.8", "per-its-v6.10")] == [
        ("6.1", "lru-v6.8", 6),
        ("6.1", "per-its-v6.10", 7),
        ("6.12.118", "lru-v6.8", 10),
        ("6.12.118", "per-its-v6.10", 11),
    ]


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("policy", policy_names())
def test_each_trigger_counts_per_policy_and_the_replay_reports_it(kernel, policy, tmp_path):
    vm = VM(2, kernel=kernel, cache=policy)
    vm.add_its()
    vm.add_its()
    t = tmp_path / "t.msgpack"
    with Recorder(vm, t) as rec:
        s = {"rec": rec, "g": []}
        for step in STEPS:
            before = sum(c.invalidations for c in vm.caches())
            step[1](s)
            got = sum(c.invalidations for c in vm.caches())
            assert got - before == _added(step, kernel, policy), step[0]
    m = model_cache_counts(t, policy)
    assert m["invalidations"] == _total(kernel, policy)
    assert m["failed_expectations"] == 0
    (rep,) = replay(t, policies=(policy,))
    assert rep.invalidations == rep.as_dict()["invalidations"] == _total(kernel, policy)


def test_every_policy_counts_calls_not_entries():
    """An empty cache's invalidation counts (the kernel's probe fires); empty() alone does
    not, and lookups, fills and block runs never do."""
    for name in policy_names():
        pol = policy_class(name)(1)
        pol.doorbells[0x0809_0040] = 0
        assert pol.invalidations == 0
        pol.invalidate()
        pol.invalidate()
        pol.empty()
        pol.fill(0x0809_0040, 1, 2, object())
        pol.lookup(0x0809_0040, 1, 2)
        assert pol.invalidations == 2, name


def test_a_migration_keeps_the_source_vms_count(tmp_path):
    """CTRL migrate replaces the replay's VM: its invalidations stay counted."""
    t = tmp_path / "m.msgpack"
    with TraceWriter(t, vm={"vcpus": 1, "kernel": "6.1", "itses": [{"base": 0x0808_0000}]}) as w:
        w.reg("its", 0, R.GITS_CTLR, 4, 0, True)  # Enable 0 on a disabled ITS: one
        w.ctrl(CTRL_MIGRATE)
        w.reg("its", 0, R.GITS_CTLR, 4, 0, True)
        w.reg("its", 0, R.GITS_CTLR, 4, 0, True)
    reps = replay(t, policies=("lru-v6.8", "per-its-v6.10", "none"))
    assert [r.invalidations for r in reps] == [3, 3, 3]


def test_register_refuses_a_policy_that_overrides_invalidate(monkeypatch):
    """The base class counts in invalidate(); a policy that replaced it would count nothing."""
    monkeypatch.setattr("gictools.model.cache.POLICIES", dict(POLICIES))

    class Uncounted(LruV68):
        name = "uncounted-test"

        def invalidate(self):
            self.map.clear()

    with pytest.raises(ConfigError, match="overrides invalidate"):
        register(Uncounted)
