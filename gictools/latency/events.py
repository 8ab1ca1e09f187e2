"""Given cache outcomes, closed-loop time: the per-event latency of a replay with a preset."""

import numpy as np

from gictools.errors import ConfigError
from gictools.latency.resources import LOCKSTEP
from gictools.latency.simulation import Injections, RunOptions, Simulation

PROGRESS_EVENTS = 50_000  # simulate_events reports progress this often


def per_injector_lists(injectors):
    """Event indices per injector id (in order of first appearance of sorted ids)."""
    inj = np.asarray(injectors)
    uniq, inv = np.unique(inj, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    bounds = np.searchsorted(inv[order], np.arange(len(uniq) + 1))
    return [order[bounds[j] : bounds[j + 1]].tolist() for j in range(len(uniq))]


def simulate_events(
    preset,
    injectors,
    outcomes,
    host_cpus=None,
    *,
    vcpus=None,
    its=None,
    keys=None,
    interleaving=LOCKSTEP,
    fast_forward=False,
    progress=None,
):
    """Per-event modelled latency for replay with --preset.

    injectors, outcomes: per event (in trace order) the injector id and the cache outcome
    code (gictools.model.cache: HIT, MISS, EVICT, BYPASS, MISS_NOFILL, RECYCLE), as the
    replay's model computed them in the recorded order: open loop with respect to the
    cache. Time is closed loop: each injector issues its next event (its next one in trace
    order) when its previous one completes; locks, host CPUs and RCU grace periods are
    simulated. Optional per-event arrays: vcpus (target vCPU, for the per-vCPU section;
    default all vCPU 0, which is what the as-measured stress test does), its (ITS index,
    for its_lock; default 0), keys (a cache key per event, e.g. device << 32 | event, for
    the list-walk cost of list caches; without them a hit walks one entry).
    interleaving: lock-step by default (a replay is reproducible); Interleaving(seed)
    for a stochastic run. fast_forward: runs of hits advance in one step at the thread's
    measured rate (exact per-event latencies lost inside them; summaries kept).
    progress(done, total) is called every PROGRESS_EVENTS simulated MSIs.

    Returns (latency_ns, wait_ns, spent): int64 arrays in event order; wait_ns is the part
    of the latency not spent executing steps (lock queueing, handoffs, CPU queueing, RCU
    grace periods); spent as Simulation.time_spent().
    """
    inj = np.asarray(injectors)
    outc = np.asarray(outcomes)
    n = len(inj)
    if len(outc) != n:
        raise ConfigError(f"{n} injectors but {len(outc)} outcomes")
    if n == 0:
        z = np.zeros(0, dtype=np.int64)
        return z, z.copy(), {"steps": {}, "locks": {}, "cpu_wait": 0.0}
    zeros = np.zeros(n, dtype=np.int64)
    work = Injections(
        per_injector_lists(inj),
        dev=zeros,
        ev=zeros,
        its=zeros if its is None else np.asarray(its),
        vcpu=zeros if vcpus is None else np.asarray(vcpus),
        keys=None if keys is None else np.asarray(keys, dtype=np.uint64),
        outcome=outc,
    )
    opts = RunOptions(host_cpus, interleaving=interleaving, fast_forward=fast_forward)
    sim = Simulation(preset, work, options=opts)
    if progress is None:
        sim.run()
    else:
        while not sim.run(until_completed=sim.completed + PROGRESS_EVENTS):
            progress(sim.completed, n)
        progress(n, n)
    lat = np.rint(sim.t_done - sim.t_issue).astype(np.int64)
    wait = np.minimum(np.rint(sim.wait).astype(np.int64), lat)
    return lat, wait, sim.time_spent()
