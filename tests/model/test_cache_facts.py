"""A cache policy owns its facts (key_of, contains, add_hits, moves_on_hit, caches, its
mainline range) and the registry answers for all of them: each fact is checked here against
the policy's own per-event rules, or against the kernel history spelled out."""

import copy
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gictools.errors import ConfigError
from gictools.model.cache import (
    POLICIES,
    CachePolicy,
    Outcome,
    default_policy,
    policy_class,
    policy_names,
    register,
)
from gictools.model.kernel import MILESTONES, OLDEST, parse_version, profile

DB = (0x0801_0040, 0x0803_0040)  # two ITSes' doorbells


def _policy(name, nr_vcpus=1):
    pol = POLICIES[name](nr_vcpus)
    for i, db in enumerate(DB):
        pol.doorbells[db] = i
    return pol


def _state(pol):
    """Everything a hit may change: entry order and, where the policy has them, counters."""
    usage = [e.usage for e in pol.order] if hasattr(pol, "order") else None
    return pol.entries(), usage


# --- the registry ----------------------------------------------------------------------------
def test_registry_names_and_known_facts():
    assert policy_names() == ("none", "lru-v6.8", "usage-v2", "per-its-v6.10")
    facts = {n: (c.scope, c.caches, c.moves_on_hit, c.mainline) for n, c in POLICIES.items()}
    assert facts == {
        "none": ("vm", False, False, None),
        "lru-v6.8": ("vm", True, True, ((5, 4), (6, 10))),  # vgic_its_check_cache: list_move
        "usage-v2": ("vm", True, False, None),  # never merged
        "per-its-v6.10": ("its", True, False, ((6, 10), None)),
    }
    with pytest.raises(ConfigError, match=r"unknown cache policy 'lru-v9' \(known: none, "):
        policy_class("lru-v9")


@pytest.mark.parametrize(
    "version, want",
    [
        ("6.1", "lru-v6.8"),
        ("6.9", "lru-v6.8"),
        ("6.9.12", "lru-v6.8"),
        ("6.10", "per-its-v6.10"),
        ("6.12.118", "per-its-v6.10"),
        ("7.1", "per-its-v6.10"),
        ("42.0", "per-its-v6.10"),
    ],
)
def test_default_cache_per_kernel_known_answers(version, want):
    assert default_policy(parse_version(version)) == want
    assert profile(version).default_cache == want


def test_every_modelled_kernel_has_exactly_one_default_cache():
    for x in range(OLDEST[0], 9):
        for y in range(0, 25):
            if (x, y) >= OLDEST:
                assert default_policy((x, y, 0)) in POLICIES
    assert {profile(m).default_cache for m in MILESTONES} == {"lru-v6.8", "per-its-v6.10"}


def test_overlapping_ranges_are_refused(monkeypatch):
    monkeypatch.setattr("gictools.model.cache.POLICIES", dict(POLICIES))

    class Rival(CachePolicy):
        name = "rival"
        mainline = ((6, 12), (6, 14))

    register(Rival)
    assert default_policy((6, 11, 0)) == "per-its-v6.10"
    with pytest.raises(ConfigError, match=r"kernel 6\.13: 2 cache policies claim it"):
        default_policy((6, 13, 0))


def test_cli_choices_and_presets_ask_the_policies():
    from gictools import clikit
    from gictools.latency.presets import load_preset, parse_preset

    assert policy_names() == clikit.CACHE_POLICIES
    for name in ("v6.8-rc1", "series-v2", "v6.10"):
        p = load_preset(name)
        assert p.walk_moves_on_hit is POLICIES[p.cache].moves_on_hit
    d = load_preset("v6.8-rc1").as_dict()
    assert d["walk"]["moves_on_hit"] is True  # the metadata still says it, from the policy
    base = {
        "name": "t",
        "cache": "lru-v6.8",
        "walk": {"per_entry_ns": 1.0, "moves_on_hit": False},
        "locks": {},
        "steps": {"entry": {"ns": 1.0}},
        "paths": {"hit": ["entry"], "miss": ["entry"]},
    }
    with pytest.raises(ConfigError, match="moves_on_hit"):  # the preset cannot restate it
        parse_preset(base)


# --- each fact against the policy's own per-event rules ---------------------------------------
_ops = st.lists(
    st.tuples(
        st.sampled_from(["msi", "msi", "msi", "invalidate", "hits", "hits"]),
        st.integers(0, 1),  # ITS
        st.integers(0, 1),  # DeviceID
        st.sampled_from([0, 1, 0xFFFF, 0x10000]),  # EventID (0x10000 aliases in v6.10)
        st.integers(1, 4),  # hits
    ),
    max_size=60,
)


@pytest.mark.parametrize("name", sorted(POLICIES))
@settings(max_examples=60, deadline=None)
@given(ops=_ops)
def test_contains_key_of_add_hits_agree_with_lookup(name, ops):
    pol = _policy(name)
    if hasattr(pol, "capacity"):
        pol.capacity = 3  # small: evictions and recycled entries happen
    for op, i, d, e, n in ops:
        db = DB[i]
        before = _state(pol)
        present = pol.contains(db, d, e)
        assert _state(pol) == before  # contains() has no side effect
        probe = copy.deepcopy(pol)
        assert present == (probe.lookup(db, d, e) is not None)
        if op == "invalidate":
            pol.invalidate()
        elif op == "hits":
            if not present:
                continue
            want = copy.deepcopy(pol)
            for _ in range(n):
                want.lookup(db, d, e)
            pol.add_hits(db, d, e, n)
            if pol.moves_on_hit:  # counters only: the order is the lookups' business
                assert _state(pol) == before
            else:  # n hits change nothing else
                assert _state(pol) == _state(want)
        elif not present:
            o = pol.fill(db, d, e, SimpleNamespace(intid=8192 + d * 64 + e % 64))
            if not pol.caches:
                assert o == Outcome.BYPASS and len(pol) == 0 and pol.key_of(db, d, e) is None
            else:
                assert pol.key_of(db, d, e) in pol.map  # the key the fill stored it under
        else:
            head = pol.entries()
            pol.lookup(db, d, e)
            moved = pol.entries()
            if pol.moves_on_hit:  # the hit entry is now the head, the rest keep their order
                assert moved[0][:3] == (db, d, e)
                assert sorted(moved) == sorted(head)
            else:
                assert moved == head
