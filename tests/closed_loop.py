"""The closed loop's invariant on a finished Simulation, shared by the latency tests."""

import numpy as np


def closed_loop_intervals_hold(sim):
    """Per injector, its MSIs occupy disjoint intervals of time: each is issued when (not
    before) the previous one completed, and completes after it was issued. So no latency
    is longer than the time its injector actually had it in flight. (A jump places the
    skipped MSIs before the one in flight, so the order is by issue time, not by index.)"""
    for j in sim.injectors:
        idx = np.asarray(list(j.events), dtype=np.int64)
        idx = idx[np.argsort(sim.t_issue[idx], kind="stable")]
        issue, done = sim.t_issue[idx], sim.t_done[idx]
        lat = done - issue
        assert (lat >= 0).all(), f"injector {j.id}: negative latency {lat.min()}"
        tol = 1e-6 * np.maximum(lat[:-1], 1.0) + 1e-3
        gap = issue[1:] - done[:-1]
        bad = np.flatnonzero(gap < -tol)
        assert not len(bad), (
            f"injector {j.id}: an MSI issued {-gap[bad[0]]:.0f} ns before the one before it "
            f"completed ({len(bad)} such)"
        )
