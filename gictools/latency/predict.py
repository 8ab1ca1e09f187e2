"""Predict the kernel selftest vgic_lpi_stress's LPIs/s for a preset (closed loop).

The workload needs no trace: one injector per device, each looping iterations x
events over its EventIDs (EventID inner), INTID(dev, ev) = 8192 + dev*e + ev;
routing as-measured (every collection, so every LPI, on vCPU 0: the selftest's
pre-Oct-2025 MAPC encoding) or fixed (ICID(dev, ev) = (dev*e + ev) mod v -> vCPU).
The selftest's rate is d*e*i / elapsed, counting KVM_SIGNAL_MSI calls.

Speed: the workload is periodic (every injector repeats the same e events), so the
closed loop settles into a steady state after a warm-up (the first iteration
fills the cache). `predict_lpi_stress` simulates at most `max_events`
injections (whole iterations), measures the steady rate over the second half of
that window (up to the moment the first injector runs out of work, so no
tail effect), and extrapolates the remaining iterations at that rate; hits and
evictions likewise. With max_events >= d*e*i it simulates everything.
tests/test_latency.py checks extrapolated against full simulations.
"""

import math

import numpy as np

from gictools.errors import ConfigError
from gictools.latency.contention import Simulation, shares
from gictools.latency.presets import load_preset
from gictools.model.cache import EVICT, HIT, POLICIES, RECYCLE
from gictools.model.cache.keys import translation_keys

DEFAULT_MAX_EVENTS = 200_000
MIN_SIM_ITERATIONS = 64  # the closed loop needs tens of iterations to settle
ROUTINGS = ("as-measured", "fixed")

# DESIGN.md "Latency": (v, d, e, i) -> LPIs/s, per preset
CALIBRATION = {
    (1, 1, 1, 1_000_000): {"v6.8-rc1": 780151, "series-v2": 1255291},
    (16, 16, 16, 10_000): {"v6.8-rc1": 437082, "series-v2": 5078226},
    (64, 64, 1, 100_000): {"v6.8-rc1": 295097, "series-v2": 5565965},
}


def _workload(v, d, e, iters, routing):
    n = d * e * iters
    dev = np.repeat(np.arange(d, dtype=np.int64), e * iters)
    evs = np.tile(np.arange(e, dtype=np.int64), d * iters)
    if routing == "fixed":
        vcpu = (dev * e + evs) % v
    else:
        vcpu = np.zeros(n, dtype=np.int64)
    per_inj = [list(range(k * e * iters, (k + 1) * e * iters)) for k in range(d)]
    keys = translation_keys(dev, evs).tolist()
    return per_inj, dev, evs, vcpu, keys


def predict_lpi_stress(
    vcpus,
    devices,
    events,
    iterations,
    preset,
    *,
    routing="as-measured",
    host_cpus=None,
    max_events=DEFAULT_MAX_EVENTS,
    vcpu_threads_busy=True,
):
    """Predicted selftest result; preset is a Preset or a bundled preset name.

    host_cpus: the host's CPU count (default: the preset's). The selftest's vCPU threads
    spin in the guest without WFI, so with vcpu_threads_busy they take their fair share
    of the CPUs when vCPUs + devices exceed host_cpus.
    Returns a dict: lpis_per_sec, elapsed_s, hit_rate, hits, evictions, latency
    percentiles (ns, over the simulated window), time_share (per step, per lock, CPU
    wait), simulated_events, extrapolated, and the inputs.
    """
    if isinstance(preset, str):
        preset = load_preset(preset)
    for flag, val, lo in (
        ("-v", vcpus, 1),
        ("-d", devices, 1),
        ("-e", events, 1),
        ("-i", iterations, 1),
    ):
        if not isinstance(val, int) or val < lo:
            raise ConfigError(f"{flag} {val!r}: must be an integer >= {lo}")
    if routing not in ROUTINGS:
        raise ConfigError(f"--routing {routing!r}: one of {', '.join(ROUTINGS)}")
    per_iter = devices * events
    total = per_iter * iterations
    sim_iters = (
        iterations
        if max_events is None
        else min(iterations, max(MIN_SIM_ITERATIONS, math.ceil(max_events / per_iter)))
    )
    per_inj, dev, evs, vcpu, keys = _workload(vcpus, devices, events, sim_iters, routing)
    policy = POLICIES[preset.cache](vcpus)
    policy.doorbells[0x0801_0040] = 0
    sim = Simulation(
        preset,
        per_inj,
        dev=dev,
        ev=evs,
        its=np.zeros(len(dev), np.int64),
        vcpu=vcpu,
        policy=policy,
        keys=keys,
        host_cpus=host_cpus,
        vcpus_busy=vcpus if vcpu_threads_busy else 0,
    ).run()
    n_sim = sim.n
    done = sim.t_done
    hits_mask = sim.out == HIT
    ev_mask = (sim.out == EVICT) | (sim.out == RECYCLE)
    extrapolated = sim_iters < iterations
    if not extrapolated:
        elapsed = float(done.max())
        hits, evictions = int(hits_mask.sum()), int(ev_mask.sum())
    else:
        # steady window: from half the simulated events done to the first injector's end
        t_end = min(float(done[lst[-1]]) for lst in per_inj)
        order = np.sort(done)
        t_start = float(order[n_sim // 2])
        if t_end <= t_start:
            t_start = float(order[n_sim // 4])
        win = (done > t_start) & (done <= t_end)
        n_win = int(win.sum())
        if n_win == 0 or t_end <= t_start:
            raise ConfigError("steady-state window is empty; raise max_events")
        rate = n_win / (t_end - t_start)  # events per ns
        n_before = int((done <= t_end).sum())
        elapsed = t_end + (total - n_before) / rate
        hit_frac = float(hits_mask[win].mean())
        ev_frac = float(ev_mask[win].mean())
        hits = int(hits_mask[done <= t_end].sum() + round(hit_frac * (total - n_before)))
        evictions = int(ev_mask[done <= t_end].sum() + round(ev_frac * (total - n_before)))
    lat = done - sim.t_issue
    tot, steps, locks = sim.breakdown()
    return {
        "config": {
            "vcpus": vcpus,
            "devices": devices,
            "events": events,
            "iterations": iterations,
            "routing": routing,
        },
        "preset": preset.name,
        "cache": preset.cache,
        "host_cpus": preset.host_cpus if host_cpus is None else host_cpus,
        "injector_cpus": sim.cpus,
        "injections": total,
        "lpis_per_sec": total / elapsed * 1e9 if elapsed > 0 else None,
        "elapsed_s": elapsed / 1e9,
        "hits": hits,
        "misses": total - hits,
        "hit_rate": hits / total if total else None,
        "evictions": evictions,
        "latency_p50_ns": float(np.percentile(lat, 50)),
        "latency_p99_ns": float(np.percentile(lat, 99)),
        "latency_max_ns": float(lat.max()),
        "mean_wait_ns": float(sim.wait.mean()),
        "time_share": shares(tot, steps, locks, sim.cpu_wait),
        "simulated_events": n_sim,
        "extrapolated": extrapolated,
    }


def format_prediction(r) -> str:
    """A human-readable report of predict_lpi_stress's dict."""
    c = r["config"]
    lines = [
        f"lpi-stress -v {c['vcpus']} -d {c['devices']} -e {c['events']} "
        f"-i {c['iterations']} ({c['routing']} routing), preset {r['preset']} "
        f"(cache {r['cache']}), {r['host_cpus']} host CPUs",
        f"  predicted      {r['lpis_per_sec']:,.0f} LPIs/s   ({r['injections']:,} injections "
        f"in {r['elapsed_s']:.4g} s)",
        f"  hit rate       {r['hit_rate']:.2%}   evictions {r['evictions']:,}",
        f"  latency        p50 {r['latency_p50_ns']:,.0f} ns   p99 "
        f"{r['latency_p99_ns']:,.0f} ns   max {r['latency_max_ns']:,.0f} ns",
        "  where the time went (share of all injector time):",
    ]
    ts = r["time_share"]
    for k, v in sorted(ts["steps"].items(), key=lambda kv: -kv[1]):
        lines.append(f"    step {k:<14} {v:7.1%}")
    for k, v in sorted(ts["locks"].items(), key=lambda kv: -kv[1]):
        lines.append(f"    wait {k:<14} {v:7.1%}")
    if ts["cpu_wait"]:
        lines.append(f"    wait {'host CPU':<14} {ts['cpu_wait']:7.1%}")
    if r["extrapolated"]:
        lines.append(
            f"  (steady state from {r['simulated_events']:,} simulated injections, extrapolated)"
        )
    return "\n".join(lines)


def calibration_residuals(presets=None, host_cpus=None, max_events=DEFAULT_MAX_EVENTS):
    """[(config, preset, measured, predicted, relative residual)] for DESIGN.md's rows."""
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
            r = predict_lpi_stress(*cfg, p, host_cpus=host_cpus, max_events=max_events)
            rows.append((cfg, name, m, r["lpis_per_sec"], r["lpis_per_sec"] / m - 1))
    return rows


# The fit (docs/latency-model.md): six parameters, six rows. Host-wide costs are shared by
# both presets (same machine); the rest are fixed at the middle of their plausible ranges.
FIT_PARAMETERS = (
    # (name, presets it sets, how: ("step", step) / ("lock", lock) / ("walk_remote",) ...)
    ("queue_ns", ("v6.8-rc1", "series-v2"), "step__queue"),
    ("walk_remote_line_ns", ("v6.8-rc1", "series-v2"), "walk_remote_line_ns"),
    ("v6.8_lookup_ns", ("v6.8-rc1",), "step__lookup"),
    ("handoff_ns", ("v6.8-rc1", "series-v2"), "lock__lpi_list_lock"),
    ("series_lookup_ns", ("series-v2",), "step__lookup"),
    ("series_walk_per_entry_ns", ("series-v2",), "walk_per_entry_ns"),
)


def _apply(base, x):
    out = {}
    for name, p in base.items():
        ch = {}
        for (_pname, targets, key), val in zip(FIT_PARAMETERS, x):
            if name in targets:
                ch[key] = float(val)
        if "lock__lpi_list_lock" in ch:  # one handoff cost for every lock of the host
            for lk in p.locks:
                if p.locks[lk].scope != "vcpu":
                    ch[f"lock__{lk}"] = ch["lock__lpi_list_lock"]
        if "step__queue" in ch:
            ch["step__queue_slow"] = ch["step__queue"]
        out[name] = p.replace_costs(**ch)
    return out


def fit_presets(max_events=30_000, iterations=8, verbose=False):
    """Gauss-Newton on log(predicted/measured) over the six DESIGN.md rows, starting from
    the bundled values. Returns (parameters dict, residual rows)."""
    base = {n: load_preset(n) for n in ("v6.8-rc1", "series-v2")}
    p0 = base["v6.8-rc1"]
    s0 = base["series-v2"]
    x = np.array(
        [
            p0.steps["queue"].ns,
            p0.walk_remote_line_ns,
            p0.steps["lookup"].ns,
            p0.locks["lpi_list_lock"].handoff_ns,
            s0.steps["lookup"].ns,
            s0.walk_per_entry_ns,
        ],
        dtype=float,
    )

    def resid(xv):
        rows = calibration_residuals(_apply(base, xv), max_events=max_events)
        return np.array([math.log1p(r[4]) for r in rows]), rows

    for it in range(iterations):
        r0, rows = resid(x)
        if verbose:
            print(it, np.round(x, 2), np.round(r0, 4))
        if np.abs(r0).max() < 2e-3:
            break
        J = np.zeros((len(r0), len(x)))
        for j in range(len(x)):
            h = max(abs(x[j]) * 0.02, 0.05)
            xj = x.copy()
            xj[j] += h
            J[:, j] = (resid(xj)[0] - r0) / h
        step = np.linalg.lstsq(J, -r0, rcond=None)[0]
        x = np.maximum(x + step, 0.0)
    r0, rows = resid(x)
    return dict(zip([f[0] for f in FIT_PARAMETERS], x.tolist())), rows
