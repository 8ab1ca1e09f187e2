"""Leaps over a steady state whose threads progress at different rates (FastForward.leap):
the same result as simulating it, whole periods skipped, closed-loop slots kept."""

import numpy as np
import pytest
from closed_loop import closed_loop_intervals_hold

from gictools.analysis.predict import build_run, drive, predict_lpi_stress
from gictools.latency.presets import load_preset
from gictools.latency.resources import Interleaving
from gictools.model.cache import Outcome

# v6.8-rc1 with 8 vCPUs caches 128 translations; 8 devices x 17 events need 136: the threads
# settle into a steady mix of hits and evictions at unequal rates (some threads' keys stay)
OVER = (8, 8, 17, 1000)


def _run(cfg, preset="v6.8-rc1", seed=1, leap=True, chunk=20_000):
    sim = build_run(cfg, load_preset(preset), Interleaving(seed))
    starts = {}
    orig = sim.leap

    def watched(rates, min_events):
        before = {j.id: j.pos for j in sim.injectors}
        n = orig(rates, min_events)
        if n:  # (first leapt, first after the leap, the window leap() copied from)
            p = sim.period
            starts.update(
                {
                    j.id: (a, j.pos, min(rates[j.id][1], a - 1) // p * p)
                    for j in sim.injectors
                    if (a := before[j.id]) != j.pos
                }
            )
        return n

    sim.leap = watched
    rates = drive(sim, chunk, leap)
    return sim, rates, starts


def test_leap_reproduces_the_full_simulation():
    cfg = OVER
    fast = predict_lpi_stress(*cfg, "v6.8-rc1", seed=1, chunk=20_000)
    full = predict_lpi_stress(*cfg, "v6.8-rc1", seed=1, chunk=20_000, leap=False)
    run, ref = fast["runs"][0], full["runs"][0]
    assert run["leaped_events"] > cfg[1] * cfg[2] * cfg[3] // 4  # it did leap, far
    assert ref["leaped_events"] == 0
    assert run["simulated_events"] < ref["simulated_events"] / 2
    assert fast["lpis_per_sec"] == pytest.approx(full["lpis_per_sec"], rel=0.01)
    assert fast["hits"] == pytest.approx(full["hits"], rel=0.005)
    assert fast["evictions"] == pytest.approx(full["evictions"], rel=0.01)
    for key in ("latency_p50_ns", "latency_p99_ns"):
        assert fast[key] == pytest.approx(full[key], rel=0.02), key


def test_a_leap_skips_whole_periods_and_keeps_every_msi_in_its_slot():
    sim, _, starts = _run(OVER)
    assert sim.leaps >= 1 and starts
    p = OVER[2]
    for jid, (a, b, w) in starts.items():
        assert (b - a) % p == 0  # the next key is the one the cache state expects
        # leapt MSI a+k repeats window MSI (k + 1) mod w, the window starting at a-1-w: the
        # same EventID (whole periods back), the same outcome, at most its latency
        ev = np.asarray(sim.injectors[jid].events)
        leapt = ev[a:b]
        src = ev[a - 1 - w + (np.arange(b - a) + 1) % w]
        assert np.array_equal(sim.ev[leapt], sim.ev[src])
        assert np.array_equal(sim.out[leapt], sim.out[src])
        lat = sim.t_done - sim.t_issue
        assert (lat[leapt] <= lat[src] + 1e-6).all()
    assert sim.completed == sim.n
    closed_loop_intervals_hold(sim)


def test_leap_stops_short_of_the_first_finish():
    sim = build_run(OVER, load_preset("v6.8-rc1"), Interleaving(1))
    sim.run(until_completed=20_000)
    sim.run(until_completed=40_000)
    from gictools.analysis.predict import _thread_rates

    rates = _thread_rates(sim)
    assert rates is not None
    t0, pos0 = sim.now, {j.id: j.pos for j in sim.injectors}
    n = sim.leap(rates, min_events=1)
    assert n > 0 and sim.epoch == sim.now > t0
    for j in sim.injectors:
        rate, seen = rates[j.id]
        window = min(seen, pos0[j.id] - 1) // OVER[2] * OVER[2]
        assert len(j.events) - j.pos >= window  # one window of room left, at least
        assert not j.done
    # the thread finishing first was left at most one period (+ one window) from its end
    first = min(sim.injectors, key=lambda j: (len(j.events) - pos0[j.id]) / rates[j.id][0])
    rate, seen = rates[first.id]
    window = min(seen, pos0[first.id] - 1) // OVER[2] * OVER[2]
    assert len(first.events) - first.pos - window < 2 * OVER[2]
    assert sim.leap(rates, min_events=10**9) == 0  # declined: too few to be worth it


@pytest.mark.parametrize("preset", ["series-v2"])
def test_no_leap_when_the_cache_state_drifts(preset):
    # usage-v2's counters grow with every hit: its state after a leap would not be its state
    sim = build_run(OVER, load_preset(preset), Interleaving(1))
    assert not sim.can_leap()
    sim.run(until_completed=20_000)
    rates = {j.id: (1e-3, 10_000) for j in sim.injectors}
    assert sim.leap(rates, min_events=1) == 0


def test_no_leap_without_a_period_or_with_forced_outcomes():
    from gictools.analysis.predict import _workload
    from gictools.latency.simulation import Injections, RunOptions, Simulation

    sim = build_run(OVER, load_preset("v6.8-rc1"), Interleaving(1))
    sim.period = None
    assert not sim.can_leap()
    sim.run(until_completed=20_000)
    assert sim.leap({j.id: (1e-3, 10_000) for j in sim.injectors}, min_events=1) == 0
    # replay --preset's case: outcomes given per event (open loop), even with a period
    per_inj, dev, evs, vcpu, keys = _workload(*OVER, "as-measured")
    out = np.where(evs % 2 == 0, int(Outcome.HIT), int(Outcome.MISS)).astype(np.int8)
    work = Injections(per_inj, dev, evs, np.zeros(len(dev), np.int8), vcpu, keys, out, OVER[2])
    forced = Simulation(
        load_preset("v6.8-rc1"), work, options=RunOptions(interleaving=Interleaving(1))
    )
    assert not forced.can_leap()
    forced.run(until_completed=20_000)
    assert forced.leap({j.id: (1e-3, 10_000) for j in forced.injectors}, min_events=1) == 0


def test_no_leap_that_would_move_a_thread_by_too_few_periods():
    from gictools.analysis.predict import _thread_rates
    from gictools.latency.fastforward import LEAP_MIN_PERIODS

    p = OVER[2]

    def at(slow_periods):
        """A leap whose slowest thread is set to make slow_periods periods in it."""
        sim = build_run(OVER, load_preset("v6.8-rc1"), Interleaving(1))
        sim.run(until_completed=20_000)
        sim.run(until_completed=40_000)
        rates = _thread_rates(sim)
        assert rates is not None
        slow = next(iter(rates))
        others = [j for j in sim.injectors if j.id != slow]
        # the leap's length, as leap() computes it, set by the threads other than `slow`
        dt = min(
            (len(j.events) - j.pos - min(rates[j.id][1], j.pos - 1) // p * p) / rates[j.id][0]
            for j in others
        )
        rates[slow] = (slow_periods * p / dt, rates[slow][1])
        return sim.leap(rates, min_events=1)

    assert at(LEAP_MIN_PERIODS - 1) == 0
    assert at(LEAP_MIN_PERIODS + 1) > 0
