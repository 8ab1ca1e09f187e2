"""Every invalidation trigger (docs/cache-policies.md), per policy, scoped as its kernel does.

Two ITSes, both with warm caches; a trigger on ITS 0; then which caches still hold entries.
lru-v6.8 / usage-v2 keep one VM-wide cache (a trigger anywhere empties it); per-its-v6.10
empties only the ITS concerned, except EnableLPIs 1->0, which empties every ITS's cache.
"""

import pytest

from gictools import regs as R
from gictools.cmdlayout import encode_command

CACHED = ["lru-v6.8", "usage-v2", "per-its-v6.10"]


def warm(s):
    for _i, its in enumerate(s.itses):
        for e in range(2):
            assert s.vm.signal_msi(its, 1, e).ret == 1
    return [len(its.cache) for its in s.itses]


@pytest.fixture(params=CACHED)
def two(request, make):
    s = make(vcpus=2, cache=request.param, itses=2)
    for g in s.guests:
        s.mapped(dev=1, events=2, icid=0, vcpu=0, intid0=8192 + 100 * s.guests.index(g), g=g)
        assert g.mapc(1, 1) == 0
    s.policy = request.param
    return s


def after(s):
    """(entries left in ITS 0's cache, entries of ITS 1 still there)."""
    if s.policy == "per-its-v6.10":
        return len(s.itses[0].cache), len(s.itses[1].cache)
    c = s.itses[0].cache
    assert c is s.itses[1].cache
    per_its = [sum(1 for e in c.entries() if e[0] == its.doorbell) for its in s.itses]
    return per_its[0], per_its[1]


def expect(s, invalidates, all_itses=False):
    got = after(s)
    if not invalidates:
        assert got == (2, 2)
    elif s.policy == "per-its-v6.10" and not all_itses:
        assert got == (0, 2)
    else:
        assert got == (0, 0)


TRIGGERS = {
    # name: (action on ITS 0's guest, invalidates?)
    "DISCARD": (lambda s, g: g.discard(1, 0), True),
    "MOVI": (lambda s, g: g.movi(1, 0, 1), True),
    "MAPD existing V=1": (lambda s, g: g.mapd(1, 4), True),
    "MAPD existing V=0": (lambda s, g: g.mapd(1, 4, valid=False), True),
    "MAPD new device": (lambda s, g: g.mapd(9, 4), False),
    "MAPC V=0": (lambda s, g: g.mapc(1, 1, valid=False), True),
    "MAPC V=0 of an absent ICID": (lambda s, g: g.mapc(77, 0, valid=False), True),
    "MAPC V=1 retarget": (lambda s, g: g.mapc(0, 1), False),
    "MOVALL": (lambda s, g: g.movall(0, 1), True),
    "MOVALL same vCPU": (lambda s, g: g.movall(1, 1), False),
    "MAPTI": (lambda s, g: g.mapti(1, 5, 9000, 0), False),
    "INV": (lambda s, g: g.inv(1, 0), False),
    "INVALL": (lambda s, g: g.invall(0), False),
    "INT": (lambda s, g: g.int_(1, 1), False),
    "CLEAR": (lambda s, g: g.clear(1, 0), False),
    "SYNC": (lambda s, g: g.sync(0), False),
    "GITS_CTLR Enable=0": (lambda s, g: s.itses[0].mmio_write(R.GITS_CTLR, 4, 0), True),
    "CTRL_RESET": (lambda s, g: s.itses[0].reset(), True),
}


@pytest.mark.parametrize("name", list(TRIGGERS))
def test_trigger(two, name):
    s = two
    assert warm(s) == ([4, 4] if s.policy != "per-its-v6.10" else [2, 2])
    action, invalidates = TRIGGERS[name]
    action(s, s.guests[0])
    expect(s, invalidates)


def test_enable_lpis_off_empties_every_its(two):
    s = two
    warm(s)
    s.guests[0].disable_lpis(1)  # any vCPU, even one the entries don't target
    expect(s, True, all_itses=True)


def test_enable_lpis_off_when_already_off_does_nothing(two):
    s = two
    s.guests[0].disable_lpis(1)
    warm(s)
    s.guests[0].disable_lpis(1)
    expect(s, False)


def test_its_disable_even_when_already_disabled(two):
    """GITS_CTLR with Enable=0 invalidates on every write; seen through the VM-wide cache."""
    s = two
    s.itses[0].mmio_write(R.GITS_CTLR, 4, 0)
    for e in range(2):
        assert s.vm.signal_msi(s.itses[1], 1, e).ret == 1
    s.itses[0].mmio_write(R.GITS_CTLR, 4, 0)
    if s.policy == "per-its-v6.10":
        assert len(s.itses[1].cache) == 2
    else:
        assert len(s.itses[0].cache) == 0


def test_enable_refused_does_not_invalidate(two):
    s = two
    its0 = s.itses[0]
    its0.mmio_write(R.GITS_CTLR, 4, 0)
    its0.mmio_write(R.GITS_CBASER, 8, 0)  # CBASER invalid: enable refused
    for e in range(2):
        s.vm.signal_msi(s.itses[1], 1, e)
    n = len(s.itses[1].cache)
    its0.mmio_write(R.GITS_CTLR, 4, 1)
    assert not its0.enabled and len(s.itses[1].cache) == n == 2


def test_device_baser_invalid_invalidates_collection_baser_does_not(two):
    s = two
    its0 = s.itses[0]
    its0.mmio_write(R.GITS_CTLR, 4, 0)  # (this alone invalidates ITS 0)
    for e in range(2):
        s.vm.signal_msi(s.itses[1], 1, e)
    its0.mmio_write(R.GITS_BASER + 8, 8, 0)  # collections freed: no invalidation
    assert len(s.itses[1].cache) == 2
    its0.mmio_write(R.GITS_BASER, 8, 0)  # devices freed: invalidation
    assert len(s.itses[1].cache) == (2 if s.policy == "per-its-v6.10" else 0)


def test_collection_baser_quirk_cache_still_delivers(make):
    """KVM frees collections without invalidating: a cached translation still delivers."""
    for policy in CACHED:
        s = make(vcpus=1, cache=policy)
        s.mapped(dev=1, events=1)
        s.vm.signal_msi(s.its, 1, 0)
        s.its.enabled = False  # BASER writes need a disabled ITS; no CTLR write
        s.its.mmio_write(R.GITS_BASER + 8, 8, 0)
        s.its.enabled = True
        assert s.its.collections == {}
        r = s.vm.signal_msi(s.its, 1, 0)
        assert (r.ret, r.cache) == (1, "hit"), policy
        assert s.its.resolve_lpi(1, 0)[0] == R.E_ITS_INT_UNMAPPED_INTERRUPT


def test_none_policy_never_caches(make):
    s = make(cache="none")
    s.mapped(dev=1, events=2)
    for _ in range(3):
        assert s.vm.signal_msi(s.its, 1, 0).cache == "bypass"
    assert len(s.its.cache) == 0 and s.g.int_(1, 1) == 0 and len(s.its.cache) == 0


@pytest.mark.parametrize(
    "policy, hits", [("lru-v6.8", 0), ("usage-v2", 0), ("per-its-v6.10", 17 * 4)]
)
def test_seventeen_events_overflow_sixteen_entries(make, policy, hits):
    s = make(vcpus=1, cache=policy)
    s.mapped(dev=0, events=17, bits=5)
    res = [s.vm.signal_msi(s.its, 0, e).cache for _ in range(5) for e in range(17)]
    assert res[17:].count("hit") == hits
    if policy != "per-its-v6.10":
        assert res[17:] == ["miss-evict"] * (17 * 4)


@pytest.mark.parametrize("policy", CACHED)
def test_sixteen_events_all_hit(make, policy):
    s = make(vcpus=1, cache=policy)
    s.mapped(dev=0, events=16, bits=5)
    res = [s.vm.signal_msi(s.its, 0, e).cache for _ in range(5) for e in range(16)]
    assert res[:16] == ["miss"] * 16 and res[16:] == ["hit"] * 64


def test_usage_v2_victim_is_least_used_then_oldest(make):
    s = make(vcpus=1, cache="usage-v2")
    s.mapped(dev=0, events=18, bits=5)
    sig = lambda e: s.vm.signal_msi(s.its, 0, e)  # noqa: E731
    for e in range(16):
        sig(e)
    for e in range(1, 16):
        sig(e)  # every entry but event 0 used once more
    r = sig(16)
    assert r.cache == "miss-evict" and r.victim == (0, 0)  # least used
    r = sig(17)  # all used once now (16 starts at max = 1)
    assert r.victim == (0, 1)  # tie: the oldest, nearest the tail
    s.g.discard(0, 5)  # invalidation empties entries, keeps them
    assert len(s.its.cache) == 0 and len(s.its.cache.linked()) == 16
    assert sig(6).cache == "miss"  # an emptied entry is recycled, no victim


def test_lru_move_to_head_on_hit(make):
    s = make(vcpus=1, cache="lru-v6.8", kernel="6.8")
    s.mapped(dev=0, events=17, bits=5)
    for e in range(16):
        s.vm.signal_msi(s.its, 0, e)
    s.vm.signal_msi(s.its, 0, 0)  # event 0 becomes most recent
    assert s.vm.signal_msi(s.its, 0, 16).victim == (0, 1)


def test_int_command_fills_cache_regardless_of_enable(make):
    s = make(cache="per-its-v6.10")
    s.mapped(dev=1, events=1)
    s.g.set_lpi_config(8192, enabled=False)
    s.g.inv(1, 0)
    assert s.g.int_(1, 0) == 0 and len(s.its.cache) == 1
    assert s.vm.signal_msi(s.its, 1, 0).cache == "hit"
    assert not s.vm.deliverable(0, 8192)  # pending but disabled: not taken


def test_mapti_never_fills(make):
    s = make(cache="lru-v6.8", kernel="6.8")
    s.mapped(dev=1, events=3)
    assert len(s.its.cache) == 0
    assert s.its.process_command(encode_command("SYNC")) == 0 and len(s.its.cache) == 0
