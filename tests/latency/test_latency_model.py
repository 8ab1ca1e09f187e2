"""The replay's latency model against independent references: hand-computed latencies of a
lone MSI per outcome kind and bundled preset, the contention-free shortcut against the
simulation it stands for, preset bounds, and no fast-forwarded injection timed wrong."""

import numpy as np
import pytest
from closed_loop import closed_loop_intervals_hold
from hypothesis import given, settings
from hypothesis import strategies as st

from gictools.errors import ConfigError
from gictools.latency.events import simulate_events
from gictools.latency.model import LatencyModel
from gictools.latency.presets import BUNDLED, load_preset, parse_preset
from gictools.model.cache import BYPASS, EVICT, HIT, MISS, MISS_NOFILL, RECYCLE

GP = 4_000_000 * 2.5  # series-v2's mean grace period: a 4 ms tick (HZ 250) x (1.5 + 1 extra)

# One injector, lock-step, nobody to wait for: each path's step costs summed by hand from
# the TOML files (a walk step adds per_entry_ns once: the list model is off without keys).
# Outcomes without a path of their own take the miss path.
KNOWN = {
    "fixed-v0": {HIT: 250, MISS: 750, EVICT: 900, BYPASS: 600, MISS_NOFILL: 650, RECYCLE: 750},
    # entry 450, srcu 350, io_bus 400, lookup 250, translate 300, fill 120, put 40, queue(_slow)
    # 2 atomics x 89.85 (lpi-2024a); a miss finds the ITS again (srcu + io_bus once more)
    "v6.10": {
        HIT: 1670,  # 450 + 350 + 400 + 250 + 179.7 + 40
        MISS: 2800,  # 450 + 2 x (350 + 400) + 250 + 300 + 120 + 179.7
        EVICT: 2800,
        BYPASS: 2680,  # the miss path without the fill
        MISS_NOFILL: 2500,  # nor the queueing
        RECYCLE: 2800,
    },
    "v6.8-rc1": {  # entry 450, lookup 499.1+3, translate 300, fill 100+3, evict 50, put 150
        HIT: 1282,
        MISS: 1535,
        EVICT: 1585,
        BYPASS: 1432,  # entry, lookup, translate, queue_slow
        MISS_NOFILL: 1252,
        RECYCLE: 1535,
    },
    "series-v2": {  # entry 450, lookup 115.7+6.6, translate 300, fill 150+6.6, evict 50
        HIT: 792,
        MISS: 1209,
        EVICT: round(450 + 122.3 + 300 + 156.6 + 50 + GP + 179.7),
        BYPASS: 1052,
        MISS_NOFILL: 872,
        RECYCLE: round(450 + 122.3 + 300 + 156.6 + 50 + GP + 179.7),
    },
}


def test_known_answers_cover_every_bundled_preset():
    assert set(KNOWN) == set(BUNDLED)


@pytest.mark.parametrize("name", sorted(KNOWN))
@pytest.mark.parametrize("outcome", [HIT, MISS, EVICT, BYPASS, MISS_NOFILL, RECYCLE])
def test_lone_msi_known_answer(name, outcome):
    m = LatencyModel(load_preset(name))
    one = np.zeros(1, dtype=np.int64)
    lat, wait, _ = m.latencies(one, np.array([outcome], np.int8), one, one, None)
    assert lat.tolist() == [KNOWN[name][outcome]]
    # waiting: nobody holds a lock; only a grace period (synchronize_rcu) is waited out
    sleeps = name == "series-v2" and outcome in (EVICT, RECYCLE)
    assert wait.tolist() == [GP if sleeps else 0]


def test_fixed_v0_is_contention_free_and_the_others_are_not():
    assert LatencyModel(load_preset("fixed-v0")).contention_free
    assert not LatencyModel(load_preset("fixed-v0"), host_cpus=2).contention_free
    for name in ("v6.8-rc1", "series-v2", "v6.10"):
        assert not LatencyModel(load_preset(name)).contention_free


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=1, max_size=200),
    st.one_of(st.none(), st.integers(0, 3)),
)
def test_contention_free_shortcut_is_the_simulation(events, seed):
    """fixed-v0 prices MSIs without simulating; the simulation of the same MSIs (any seed:
    no jitter, no locks, a CPU each) gives exactly the same latencies, and no waiting."""
    m = LatencyModel(load_preset("fixed-v0"), seed=seed)
    inj = np.array([e[0] for e in events])
    out = np.array([e[1] for e in events], dtype=np.int8)
    z = np.zeros(len(events), dtype=np.int64)
    lat, wait, spent = m.latencies(inj, out, z, z, None)
    slat, swait, sspent = simulate_events(m.preset, inj, out, interleaving=m.interleaving)
    assert lat.tolist() == slat.tolist() and wait.tolist() == swait.tolist() == [0] * len(z)
    assert spent["steps"] == pytest.approx(sspent["steps"])


def _preset(entry_ns=100.0, **extra):
    return {
        "name": "t",
        "cache": "per-its-v6.10",
        "steps": {"entry": {"ns": entry_ns}, "lookup": {"ns": 1, "action": "lookup"}}
        | {"fill": {"ns": 1, "action": "fill"}},
        "paths": {"hit": ["entry", "lookup"], "miss": ["entry", "lookup", "fill"]},
        **extra,
    }


@pytest.mark.parametrize(
    "data, key",
    [
        (_preset(1e19), "steps.entry.ns"),
        (_preset(1e10 + 1), "steps.entry.ns"),
        (_preset(rcu={"expedited_ns": 1e300}), "rcu.expedited_ns"),
        (_preset(rcu={"extra_ticks": 1e9}), "rcu.extra_ticks"),
        (_preset(jitter=0.9), "jitter"),
        (_preset(host_cpus="many"), "host_cpus"),
        (
            _preset(locks={"l": {"scope": "vm", "handoff_ns": 1e12}}),
            "locks.l.handoff_ns",
        ),
    ],
)
def test_preset_costs_bounded_at_load_time(data, key):
    """A huge finite cost gave INT64_MIN latencies and NaN shares (issue 23 point 14)."""
    with pytest.raises(ConfigError) as e:
        parse_preset(data, "p.toml")
    msg = str(e.value)
    assert "\n" not in msg and f"p.toml: {key}" in msg


def test_largest_allowed_costs_stay_finite():
    p = parse_preset(_preset(1e10), "p.toml")
    m = LatencyModel(p)
    one = np.zeros(1, dtype=np.int64)
    lat, _, _ = m.latencies(one, np.array([MISS], np.int8), one, one, None)
    assert lat.tolist() == [int(1e10) + 2]


# --- fast-forward: no injection timed longer than it was in flight ---------------------------


@settings(max_examples=12, deadline=None)
@given(
    preset=st.sampled_from(["v6.8-rc1", "series-v2", "v6.10"]),
    devices=st.integers(2, 8),
    events=st.integers(1, 6),
    seed=st.one_of(st.none(), st.integers(0, 5)),
)
def test_fast_forward_keeps_every_injection_in_its_slot(preset, devices, events, seed):
    from gictools.analysis.predict import _workload
    from gictools.latency.resources import LOCKSTEP, Interleaving
    from gictools.latency.simulation import Injections, RunOptions, Simulation
    from gictools.model.cache import policy_class

    p = load_preset(preset)
    iters = max(50, 3000 // (devices * events))
    per_inj, dev, evs, vcpu, keys = _workload(4, devices, events, iters, "as-measured")
    policy = policy_class(p.cache)(4)
    policy.doorbells[0x0801_0040] = 0
    work = Injections(per_inj, dev, evs, np.zeros(len(dev), np.int64), vcpu, keys=keys)
    mix = LOCKSTEP if seed is None else Interleaving(seed)
    sim = Simulation(p, work, policy, RunOptions(interleaving=mix))
    sim.run()
    closed_loop_intervals_hold(sim)


# --- predict's memory per injection (issue 23 point 12) ---------------------------------------


def test_predict_memory_per_injection_is_bounded():
    """Every injection is held in memory: ~60 B each at peak (it was ~136 B, and the
    documented limit of 2^25 injections died at 1.2 GB with a MemoryError traceback)."""
    import subprocess
    import sys

    code = (
        "import resource\n"
        "from gictools.analysis.predict import predict_lpi_stress\n"
        "r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "predict_lpi_stress(64, 1, 4096, 400, 'v6.10', seed=0, jobs=1)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - r0) * 1024)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    per = int(r.stdout.split()[-1]) / (4096 * 400)
    assert per < 80, f"{per:.0f} B per injection"


def test_predict_refuses_more_injections_than_fit_in_memory():
    from gictools.analysis.predict import MAX_INJECTIONS, check_workload

    check_workload(64, 1, 8192, 1000)  # the 8.2 M injections: about 500 MB
    with pytest.raises(ConfigError) as e:
        check_workload(1, 1, MAX_INJECTIONS, 2)
    assert "\n" not in str(e.value) and "injections" in str(e.value)
