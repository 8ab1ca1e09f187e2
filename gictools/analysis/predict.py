"""Predict the kernel selftest vgic_lpi_stress's LPIs/s for a preset (closed loop).

The workload needs no trace: one injector per device, each looping iterations x
events over its EventIDs (EventID inner), INTID(dev, ev) = 8192 + dev*e + ev;
routing as-measured (every collection, so every LPI, on vCPU 0: the selftest's
pre-Oct-2025 MAPC encoding) or fixed (ICID(dev, ev) = (dev*e + ev) mod v -> vCPU).
The selftest's rate is d*e*i / elapsed, counting KVM_SIGNAL_MSI calls; its
timer stops when the last device thread ends, so every run is simulated to the
last thread.

A prediction is several seeded stochastic runs (gictools.latency.resources.Interleaving), in
parallel processes; it reports the median and the spread. `seed=S` is one run,
reproducible; `lockstep=True` the deterministic lock-step run (the worst case for the hit
rate).

Speed: the simulation fast-forwards phases where every running thread hits
(gictools.latency.simulation). Beyond that, a run is extrapolated from a window only
when every thread's progress is steady (its rate in the last two quarters of
the simulated time agrees within STEADY_TOLERANCE) and all threads progress at
the same rate (else they would finish at different times and the rest speed
up). Threads steady at different rates are leapt to just before the first of them
finishes (Simulation.leap), and the run goes on through the change. Each run says
which (`method`) and how many injections were simulated, fast-forwarded and leapt.
"""

import statistics

import numpy as np

from gictools.errors import ConfigError
from gictools.latency.fastforward import event_array
from gictools.latency.presets import load_preset
from gictools.latency.resources import LOCKSTEP, Interleaving
from gictools.latency.simulation import Injections, RunOptions, Simulation, shares
from gictools.model.cache import EVICT, HIT, RECYCLE, policy_class
from gictools.model.cache.keys import translation_keys
from gictools.supervise import cpu_count, report_progress, run_all
from gictools.trace.gen_lpi_stress import selftest_routing

DEFAULT_SEEDS = 5
BAND_SEEDS = 3  # seeds of each --bands run
CHUNK_EVENTS = 100_000  # simulated injections between two steadiness checks
STEADY_TOLERANCE = 0.03
STEADY_MIN_EVENTS = 200  # per thread and window half
ROUTINGS = ("as-measured", "fixed")
PARALLEL_MIN_EVENTS = 100_000  # below this, seeds run in this process

# (v, d, e, i) -> LPIs/s, per preset: the rows of the "KVM: arm64: Improvements to LPI
# injection" v2 cover letter (13 Feb 2024) whose translations fit the cache
# (docs/latency-model.md §4 "Rows")
CALIBRATION = {
    (1, 1, 1, 1_000_000): {"v6.8-rc1": 780151, "series-v2": 1255291},
    (16, 16, 16, 10_000): {"v6.8-rc1": 437082, "series-v2": 5078226},
    (64, 64, 1, 100_000): {"v6.8-rc1": 295097, "series-v2": 5565965},
}


def _workload(v, d, e, iters, routing):
    n = d * e * iters
    # 4-byte columns: with the simulation's own per-event arrays ~60 B an injection
    dev = np.repeat(np.arange(d, dtype=np.uint32), e * iters)
    evs = np.tile(np.arange(e, dtype=np.uint32), d * iters)
    if routing == "fixed":
        vcpu = ((dev.astype(np.int64) * e + evs) % v).astype(np.int32)
    else:
        vcpu = np.zeros(n, dtype=np.int32)
    per_inj = [range(k * e * iters, (k + 1) * e * iters) for k in range(d)]
    keys = translation_keys(dev, evs)
    return per_inj, dev, evs, vcpu, keys


MAX_VCPUS = 4096  # the model's (and arm64 KVM's largest) vCPU count
# devices x events x iterations: every injection is held in memory, ~60 B each at peak
# (measured: -v 64 -d 1 -e 8192 -i 1000, 8.2 M injections, v6.10: see the commit), so the
# limit runs in about half a GB
MAX_INJECTIONS = 1 << 23
MAX_SEEDS = 1000


def check_workload(vcpus, devices, events, iterations):
    """The flags' sizes, bounded: the simulation holds every injection in memory."""
    for flag, val in (("-v", vcpus), ("-d", devices), ("-e", events), ("-i", iterations)):
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise ConfigError(f"{flag} {val!r}: must be an integer >= 1")
    if vcpus > MAX_VCPUS:
        raise ConfigError(f"-v {vcpus}: at most {MAX_VCPUS} vCPUs")
    n = devices * events * iterations
    if n > MAX_INJECTIONS:
        raise ConfigError(
            f"-d x -e x -i = {n:,} injections: at most {MAX_INJECTIONS:,} are simulated "
            "(the steady rate needs far fewer: lower -i)"
        )


def _check_config(vcpus, devices, events, iterations, routing):
    check_workload(vcpus, devices, events, iterations)
    if routing not in ROUTINGS:
        raise ConfigError(f"--routing {routing!r}: one of {', '.join(ROUTINGS)}")


def _done_events(j, upto):
    """Indices of j's first `upto` events as an array."""
    return event_array(j.events, 0, upto)


def _thread_rates(sim):
    """Per running thread (events per ns, events counted) over the last quarter of the time
    since the last leap, if each thread's rate agrees with its previous quarter's within
    STEADY_TOLERANCE (else None: the run must go on)."""
    t_now, t0 = sim.now, sim.epoch
    q = (t_now - t0) / 4
    if q <= 0:
        return None
    rates = {}
    for j in sim.injectors:
        if j.done:
            continue
        done = sim.t_done[_done_events(j, max(j.pos - 1, 0))]
        c1 = int(((done > t_now - 2 * q) & (done <= t_now - q)).sum())
        c2 = int((done > t_now - q).sum())
        if min(c1, c2) < STEADY_MIN_EVENTS or abs(c2 / c1 - 1) > STEADY_TOLERANCE:
            return None
        rates[j.id] = (c2 / q, c2)
    return rates or None


def _same_rate(per_thread):
    """The rates, if every thread progresses at the same rate within STEADY_TOLERANCE (else
    None). Threads at different rates finish at different times and the others then speed
    up: a per-thread extrapolation would be wrong (a leap goes up to the first finish)."""
    rates = {k: r for k, (r, _) in per_thread.items()}
    if max(rates.values()) > min(rates.values()) * (1 + STEADY_TOLERANCE):
        return None
    return rates


def _extrapolate(sim, rates, masks):
    """(done mask, elapsed ns, (hits, evictions, recycles)) of a run stopped at steady state:
    each injector's remaining events at its steady rate, the counts scaled from the last
    quarter of the time since the last leap."""
    t_now = sim.now
    total = sim.n
    done_mask = np.zeros(total, dtype=bool)
    ends = [t_now]
    for j in sim.injectors:
        idx = _done_events(j, max(j.pos - 1, 0))
        done_mask[idx] = True
        if j.done:
            done_mask[j.events[-1]] = True
            ends.append(float(sim.t_done[j.events[-1]]))
        else:
            ends.append(t_now + (len(j.events) - (j.pos - 1)) / rates[j.id])
    elapsed = max(ends)
    win = done_mask & (sim.t_done > sim.epoch + (t_now - sim.epoch) * 0.75)
    rest = total - int(done_mask.sum())
    counts = tuple(int(m[done_mask].sum() + round(float(m[win].mean()) * rest)) for m in masks)
    return done_mask, elapsed, counts


def build_run(
    cfg,
    preset,
    interleaving,
    *,
    routing="as-measured",
    host_cpus=None,
    vcpu_threads_busy=True,
    fast_forward=True,
    acked=False,
):
    """The Simulation of one run of the stress test, not yet run."""
    vcpus, devices, events, iterations = cfg
    per_inj, dev, evs, vcpu, keys = _workload(vcpus, devices, events, iterations, routing)
    policy = policy_class(preset.cache)(vcpus)
    policy.doorbells[0x0801_0040] = 0
    work = Injections(
        per_inj, dev, evs, np.zeros(len(dev), np.int8), vcpu, keys=keys, period=events
    )
    opts = RunOptions(
        host_cpus, vcpus if vcpu_threads_busy else 0, interleaving, fast_forward, acked
    )
    return Simulation(preset, work, policy, opts)


def drive(sim, chunk=CHUNK_EVENTS, leap=True, progress=report_progress):
    """Run sim to the end, or until every thread progresses steadily at one rate: then
    those rates (to extrapolate from), else None. Between chunks of `chunk` injections,
    a steady state whose threads progress at different rates is leapt over (leap), and
    progress(injections done) is told (by default the supervisor, in a worker)."""
    finished = sim.run(until_completed=chunk if chunk else None)
    while not finished:
        progress(sim.completed)
        per_thread = _thread_rates(sim)
        if per_thread is not None:
            rates = _same_rate(per_thread)
            if rates is not None:
                return rates
            if leap:
                sim.leap(per_thread, min_events=chunk)
        finished = sim.run(until_completed=sim.completed + chunk)
    return None


def run_once(
    cfg, preset, interleaving, *, chunk=CHUNK_EVENTS, leap=True, progress=report_progress, **build
):
    """One closed-loop run of the stress test (build: build_run's options); a dict of its
    results and method. leap: a steady state whose threads progress at different rates is
    leapt over up to the first thread's finish (Simulation.leap). progress(injections
    done, an extrapolated run's rest included at its end): see drive."""
    sim = build_run(cfg, preset, interleaving, **build)
    total = sim.n
    rates = drive(sim, chunk, leap, progress)
    progress(total)
    method = "simulated" if rates is None else "extrapolated"
    hits_mask = sim.out == HIT
    ev_mask = sim.out == EVICT
    rec_mask = sim.out == RECYCLE
    if rates is None:
        done_mask = np.ones(total, dtype=bool)
        elapsed = float(sim.t_done.max())
        hits, evictions = int(hits_mask.sum()), int(ev_mask.sum())
        recycles = int(rec_mask.sum())
    else:
        done_mask, elapsed, (hits, evictions, recycles) = _extrapolate(
            sim, rates, (hits_mask, ev_mask, rec_mask)
        )
    lat = np.subtract(sim.t_done, sim.t_issue, out=sim.t_done)  # t_done is not needed after
    if not done_mask.all():
        lat = lat[done_mask]
    tot, steps, locks = sim.breakdown()
    lat_max = float(lat.max())
    # nearest-rank, as every verb (docs/latency-model.md §6); partitions lat in place
    p50, p99 = np.percentile(lat, [50, 99], method="inverted_cdf", overwrite_input=True)
    return {
        "seed": interleaving.seed,
        "lpis_per_sec": total / elapsed * 1e9 if elapsed > 0 else None,
        "elapsed_s": elapsed / 1e9,
        "hits": hits,
        "hit_rate": hits / total,
        "evictions": evictions,
        "recycles": recycles,
        "latency_p50_ns": float(p50),
        "latency_p99_ns": float(p99),
        "latency_max_ns": lat_max,
        "mean_wait_ns": float(sim.wait.mean(where=done_mask)),
        "time_share": shares(tot, steps, locks, sim.cpu_wait),
        "method": method,
        "simulated_events": int(sim.completed - sim.fast_forwarded - sim.leaped),
        "fast_forwarded_events": int(sim.fast_forwarded),
        "leaped_events": int(sim.leaped),
        "fast_forward_phases": sim.fast_forward_phases,
        "injector_cpus": sim.cpus,
    }


def _run_star(args, progress=report_progress):
    cfg, preset, mix, kw = args
    return run_once(cfg, preset, mix, progress=progress, **kw)


def _spread(runs, key):
    vals = sorted(r[key] for r in runs)
    return vals[0], statistics.median_low(vals), vals[-1]


def predict_lpi_stress(
    vcpus,
    devices,
    events,
    iterations,
    preset,
    *,
    routing=None,
    selftest="2024",
    host=None,
    host_cpus=None,
    seeds=DEFAULT_SEEDS,
    seed=None,
    lockstep=False,
    jobs=None,
    vcpu_threads_busy=True,
    chunk=CHUNK_EVENTS,
    fast_forward=True,
    leap=True,
    progress=None,
):
    """Predicted selftest result; preset is a Preset or a bundled preset name.

        By default `seeds` stochastic runs (seeds 0..seeds-1) in up to `jobs` processes;
        `seed=S` runs that one seed; `lockstep=True` the deterministic lock-step run (the worst case for the hit
    rate).
        host_cpus: the host's CPU count (default: the preset's). The selftest's vCPU threads
        spin in the guest without WFI, so with vcpu_threads_busy they take their fair share
        of the CPUs when vCPUs + devices exceed host_cpus.
        progress(done, total): injections simulated, fast-forwarded, leapt or extrapolated
        so far over every seed, and their total (called now and then).
        Returns a dict: lpis_per_sec (the median over seeds) with lpis_per_sec_min/_max,
        hit_rate and evictions likewise, elapsed_s, latency percentiles and time_share of
        the median run, `runs` (one dict per seed, with its method), and the inputs.
    """
    if isinstance(preset, str) or host is not None:
        preset = _priced(preset, host)
    routing, acked = selftest_routing(selftest, routing)
    _check_config(vcpus, devices, events, iterations, routing)
    cfg = (vcpus, devices, events, iterations)
    if lockstep:
        mixes = [LOCKSTEP]
    elif seed is not None:
        mixes = [Interleaving(int(seed))]
    else:
        if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
            raise ConfigError(f"--seeds {seeds!r}: must be an integer from 1 to {MAX_SEEDS}")
        mixes = [Interleaving(s) for s in range(seeds)]
    kw = {
        "routing": routing,
        "host_cpus": host_cpus,
        "vcpu_threads_busy": vcpu_threads_busy,
        "chunk": chunk,
        "fast_forward": fast_forward,
        "acked": acked,
        "leap": leap,
    }
    total = devices * events * iterations
    work = [(cfg, preset, m, kw) for m in mixes]
    jobs = min(len(work), jobs or cpu_count())
    if jobs > 1 and total >= PARALLEL_MIN_EVENTS:  # supervised processes (gictools.supervise)
        names = [f"predict seed {'lockstep' if m.seed is None else m.seed}" for m in mixes]
        told = None if progress is None else (lambda c: progress(sum(c), total * len(work)))
        runs = run_all(_run_star, [(w,) for w in work], names=names, jobs=jobs, on_progress=told)
    else:
        runs = []
        for k, w in enumerate(work):
            base = k * total

            def told_here(n, base=base):
                if progress is not None:
                    progress(base + n, total * len(work))

            runs.append(_run_star(w, told_here))
    out = _aggregate(cfg, preset, routing, host_cpus, runs, lockstep)
    out["config"]["selftest"] = selftest
    return out


def _priced(preset, host):
    """A preset name or Preset priced on a host profile (None: the preset's own, or the
    default host for a name). A Preset is re-read from its source to be re-priced."""
    if isinstance(preset, str):
        return load_preset(preset, host=host)
    if host is None or (preset.host is not None and host in (preset.host, preset.host.name)):
        return preset
    src = preset.source
    if src.startswith("bundled:"):
        return load_preset(src.split(":", 1)[1], host=host)
    if src:
        return load_preset(path=src, host=host)
    raise ConfigError("a preset built in memory cannot be re-priced on another host")


def _aggregate(cfg, preset, routing, host_cpus, runs, lockstep):
    total = cfg[1] * cfg[2] * cfg[3]
    lo, med, hi = _spread(runs, "lpis_per_sec")
    mid = next(r for r in runs if r["lpis_per_sec"] == med)
    out = {
        "config": dict(zip(("vcpus", "devices", "events", "iterations"), cfg), routing=routing),
        "preset": preset.name,
        "host": None if preset.host is None else preset.host.name,
        "cache": preset.cache,
        "host_cpus": preset.host_cpus if host_cpus is None else host_cpus,
        "injector_cpus": mid["injector_cpus"],
        "injections": total,
        "interleaving": "lock-step (deterministic; the worst case for the hit rate)"
        if lockstep
        else "stochastic",
        "seeds": [r["seed"] for r in runs],
        "lpis_per_sec": med,
        "lpis_per_sec_min": lo,
        "lpis_per_sec_max": hi,
        "elapsed_s": mid["elapsed_s"],
    }
    for key in ("hit_rate", "evictions", "recycles", "hits"):
        a, m, b = _spread(runs, key)
        out[key] = m
        out[f"{key}_min"], out[f"{key}_max"] = a, b
    out["misses"] = total - out["hits"]
    for key in ("latency_p50_ns", "latency_p99_ns", "latency_max_ns", "mean_wait_ns"):
        out[key] = mid[key]
    out["time_share"] = mid["time_share"]
    out["methods"] = sorted({r["method"] for r in runs})
    out["extrapolated"] = "extrapolated" in out["methods"]
    out["runs"] = [{k: v for k, v in r.items() if k != "time_share"} for r in runs]
    return out


# --predict --bands: parameters the calibration rows cannot constrain, over their
# plausible ranges (docs/latency-model.md "Parameters not fitted" and "Host profiles").
# step__ values are reference ns (x the host's core); host__ values multiply the host
# profile's own value (parameters no row of its table separates, or the vCPU loop).
BANDS = (
    ("grace period: HZ", "rcu__hz", (100, 1000), "grace_period"),
    ("grace period: expedited", "rcu__expedited", (True,), "grace_period"),
    ("slow path: translate ns", "step__translate", (150.0, 600.0), "translate"),
    ("slow path: fill ns", "step__fill", (50.0, 300.0), "fill"),
    ("its_lock wake-up ns", "wake__its_lock", (2_000.0, 50_000.0), "mutex"),
    ("v6.10 SRCU read side ns", "step__srcu", (150.0, 700.0), "srcu"),
    ("v6.10 kvm_io_bus_get_dev ns", "step__io_bus", (150.0, 800.0), "io_bus"),
    ("host line transfer x", "host__line_ns", (0.5, 2.0), "walk"),
    ("host vCPU flush x", "host__flush_ns", (0.5, 2.0), "flush"),
    ("host atomic x", "host__atomic_ns", (0.8, 1.25), "flush"),
)


def _band_applies(preset, needs) -> bool:
    steps = preset.steps.values()
    if needs == "grace_period":
        return any(s.grace_period for s in steps)
    if needs == "mutex":
        return "its_lock" in preset.locks and preset.locks["its_lock"].kind == "mutex"
    if needs == "walk":
        return any(s.walk for s in steps)
    if needs == "flush":
        return preset.host is not None and any(s.flush for s in steps)
    return needs in preset.steps


def _band_preset(preset, key, v):
    kind, _, name = key.partition("__")
    if kind == "host":
        h = preset.host
        return _priced(preset, h.with_(**{name: getattr(h, name) * v}))
    if kind == "step" and preset.host is not None:
        v = v * preset.host.core  # reference ns on this host
    return preset.replace_costs(**{key: v})


def band_cases(preset) -> list[tuple[str, str, object]]:
    """(label, key, value) of every band run predict_bands makes for this preset."""
    return [
        (label, key, v)
        for label, key, values, needs in BANDS
        if _band_applies(preset, needs)
        for v in values
    ]


def band_injections(preset, injections: int, seeds: int = BAND_SEEDS) -> int:
    """Injections predict_bands simulates for a workload of `injections` (its progress total)."""
    return len(band_cases(preset)) * seeds * injections


def predict_bands(
    vcpus, devices, events, iterations, preset, *, seeds=BAND_SEEDS, progress=None, **kw
):
    """The prediction with each unconstrained parameter at the ends of its range:
    [{parameter, value, lpis_per_sec, lpis_per_sec_min, lpis_per_sec_max}].
    progress(done, total): injections over every band run and seed so far, and their total."""
    if isinstance(preset, str):
        preset = load_preset(preset)
    cases = band_cases(preset)
    rows = []
    for k, (label, key, v) in enumerate(cases):

        def told(done, total, k=k):
            if progress is not None:  # total: one band run's seeds x injections
                progress(k * total + done, band_injections(preset, total // seeds, seeds))

        r = predict_lpi_stress(
            vcpus,
            devices,
            events,
            iterations,
            _band_preset(preset, key, v),
            seeds=seeds,
            progress=told,
            **kw,
        )
        rows.append(
            {
                "parameter": label,
                "value": v,
                "lpis_per_sec": r["lpis_per_sec"],
                "lpis_per_sec_min": r["lpis_per_sec_min"],
                "lpis_per_sec_max": r["lpis_per_sec_max"],
            }
        )
    return rows


def band_envelope(prediction, rows) -> dict:
    """The band: from the lowest to the highest LPIs/s over the prediction's seeds and every
    band row's seeds, and the parameters setting each end (what drives the width)."""
    lo = (prediction["lpis_per_sec_min"], "seeds")
    hi = (prediction["lpis_per_sec_max"], "seeds")
    for b in rows:
        who = f"{b['parameter']} = {b['value']}"
        lo = min(lo, (b["lpis_per_sec_min"], who))
        hi = max(hi, (b["lpis_per_sec_max"], who))
    return {"low": lo[0], "low_by": lo[1], "high": hi[0], "high_by": hi[1]}


def format_prediction(r) -> str:
    """A human-readable report of predict_lpi_stress's dict."""
    from gictools.report import percent  # one rule: a miss never prints as 100.00%

    c = r["config"]
    n = len(r["runs"])
    seeds = [s for s in r["seeds"] if s is not None]  # --lockstep has none
    spread = (
        f"   (min {r['lpis_per_sec_min']:,.0f}, max {r['lpis_per_sec_max']:,.0f} over {n} seeds)"
        if n > 1
        else ""
    )
    lines = [
        f"lpi-stress -v {c['vcpus']} -d {c['devices']} -e {c['events']} "
        f"-i {c['iterations']} (selftest {c.get('selftest')}, {c['routing']} routing), "
        f"preset {r['preset']} (cache {r['cache']}), host {r.get('host')}, "
        f"{r['host_cpus']} host CPUs",
        f"  interleaving   {r['interleaving']}"
        + (f", seed(s) {', '.join(map(str, seeds))}" if seeds else ""),
        f"  predicted      {r['lpis_per_sec']:,.0f} LPIs/s{spread}",
        f"  hit rate       {percent(r['hit_rate'])} (min {percent(r['hit_rate_min'])}, max "
        f"{percent(r['hit_rate_max'])})   evictions {r['evictions']:,} (min "
        f"{r['evictions_min']:,}, max {r['evictions_max']:,})",
        f"  latency        p50 {r['latency_p50_ns']:,.0f} ns   p99 "
        f"{r['latency_p99_ns']:,.0f} ns   max {r['latency_max_ns']:,.0f} ns",
        "  where the time went (share of simulated injector time, median run):",
    ]
    ts = r["time_share"]
    for k, v in sorted(ts["steps"].items(), key=lambda kv: -kv[1]):
        lines.append(f"    step {k:<14} {v:7.1%}")
    for k, v in sorted(ts["locks"].items(), key=lambda kv: -kv[1]):
        lines.append(f"    wait {k:<14} {v:7.1%}")
    if ts["cpu_wait"]:
        lines.append(f"    wait {'host CPU':<14} {ts['cpu_wait']:7.1%}")
    for run in r["runs"]:
        how = (
            "extrapolated from steady per-thread progress"
            if run["method"] == "extrapolated"
            else "simulated to the last thread"
        )
        which = "lock-step" if run["seed"] is None else f"seed {run['seed']}"
        lines.append(
            f"  {which}: {run['lpis_per_sec']:,.0f} LPIs/s, {how} "
            f"({run['simulated_events']:,} simulated, {run['fast_forwarded_events']:,} "
            "fast-forwarded"
            + (
                f", {run['leaped_events']:,} leapt at steady rates"
                if run.get("leaped_events")
                else ""
            )
            + ")"
        )
    return "\n".join(lines)


def format_bands(rows, prediction=None) -> str:
    lines = ["  across the plausible ranges of parameters the calibration does not fix:"]
    if prediction is not None:
        env = band_envelope(prediction, rows)
        lines.insert(
            0,
            f"  band           {env['low']:,.0f} .. {env['high']:,.0f} LPIs/s (low end: "
            f"{env['low_by']}; high end: {env['high_by']})",
        )
    for b in rows:
        lines.append(
            f"    {b['parameter']:<26} {b['value']!s:>8}: {b['lpis_per_sec']:>14,.0f} LPIs/s "
            f"(min {b['lpis_per_sec_min']:,.0f}, max {b['lpis_per_sec_max']:,.0f})"
        )
    return "\n".join(lines)


def calibration_residuals(presets=None, host_cpus=None, seeds=DEFAULT_SEEDS, **kw):
    """[(config, preset, measured, median predicted, relative residual, min, max)] for
    the CALIBRATION rows, predicted as seed medians."""
    rows = []
    cache = {}
    for cfg, meas in CALIBRATION.items():
        for name, m in meas.items():
            if presets is not None and name not in presets:
                continue
            p = (
                presets[name]
                if isinstance(presets, dict)
                else cache.setdefault(name, load_preset(name))
            )
            r = predict_lpi_stress(*cfg, p, host_cpus=host_cpus, seeds=seeds, **kw)
            v = r["lpis_per_sec"]
            rows.append((cfg, name, m, v, v / m - 1, r["lpis_per_sec_min"], r["lpis_per_sec_max"]))
    return rows
