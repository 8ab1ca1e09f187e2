"""Compare latency presets over one trace: throughput, hit rate, evictions, latency.

For each preset the trace is replayed (gictools.replay.Replayer) with the preset's cache
policy and the preset as the replay's one latency model: the same path, the same
numbers as `replay --preset P` (and a sweep cell), per MSI from the real outcome of its
cache lookup. `compare_events` does the same for an iterable of MSI events without a
trace file, with the cache policy consulted in closed loop (as predict does).
matplotlib is imported only for plots.
"""

import os

import numpy as np

from gictools import plotting
from gictools.errors import ConfigError
from gictools.latency.model import LatencyModel
from gictools.latency.presets import load_preset
from gictools.latency.simulation import Injections, RunOptions, Simulation, share_of
from gictools.model.cache import BYPASS, EVICT, HIT, RECYCLE, policy_class
from gictools.model.cache.keys import vm_keys


def _as_preset(p):
    return load_preset(p) if isinstance(p, str) else p


def _result(preset, rep, outcome, lat, host_cpus):
    """One preset's figures: counts and percentiles are the replay report's own."""
    d = rep.as_dict()
    elapsed = d["elapsed_ns"] or 0
    return {
        "preset": preset.name,
        "cache": preset.cache,
        "msis": d["msis"],
        "lpis_per_sec": d["msis"] / elapsed * 1e9 if elapsed else None,
        "elapsed_s": elapsed / 1e9,
        "hit_rate": d["hit_rate"],
        "hits": d["hits"],
        "evictions": d["evictions"],
        "recycles": int(rep.outcomes[RECYCLE]),
        "latency_p50_ns": d["latency_p50_ns"],
        "latency_p99_ns": d["latency_p99_ns"],
        "latency_max_ns": d["latency_max_ns"],
        "host_cpus": host_cpus,
        # kept for plots, dropped by as_json
        "_latency": lat,
        "_outcome": outcome,
    }


def compare_trace(trace, presets, host_cpus=None, kernel=None, progress=None, seed=None):
    """One result dict per preset (see _result) for the trace's MSIs.

    progress(stage, done, total), if given, is called as the work goes: stage
    "replay PRESET" in trace bytes. seed None: lock-step (as replay), else stochastic."""
    from gictools.replay import Replayer

    if not presets:
        raise ConfigError("give at least one --preset")
    out = []
    size = os.path.getsize(trace)
    for p in map(_as_preset, presets):
        step = None
        if progress is not None:

            def step(offset, _name=f"replay {p.name}"):
                progress(_name, offset, size)

        model = LatencyModel(p, host_cpus, seed)
        rp = Replayer(trace, [p.cache], kernel, latency=model)
        rep = rp.runs[0].report
        rep.keep = []
        rp.run(step)
        if step is not None:
            step(size)  # the reader reports record starts; the end is the whole file
        if not rep.msis:
            raise ConfigError(f"{trace}: no MSI injections to compare")
        outcome = np.concatenate([o for o, _ in rep.keep]).astype(np.int8)
        lat = np.concatenate([x for _, x in rep.keep])
        cpus = host_cpus if host_cpus is not None else p.host_cpus
        out.append(_result(p, rep, outcome, lat, cpus))
        spent = rep.spent or model.spent_by_outcome(rep.outcomes)
        out[-1]["time_share"] = share_of(spent)
    work = _workload_label(trace)
    for r in out:
        r["workload"] = work
    return out


def _workload_label(trace):
    """'lpi-stress -v 2 -d 4 ...' from a generated trace's metadata, else its source."""
    from gictools.trace.reader import TraceReader

    h = TraceReader(trace).header
    m = h.get("metadata") or {}
    if isinstance(m, dict) and m.get("generator") == "lpi-stress":
        flags = " ".join(
            f"-{k[0]} {m[k]}" for k in ("vcpus", "devices", "events", "iterations") if k in m
        )
        return f"lpi-stress {flags}"
    return str(h.get("source") or "recorded trace")


def compare_events(events, presets, nr_vcpus, host_cpus=None):
    """Compare presets over an iterable of MSI events (its, device_id, event_id, injector
    [, vcpu]) with each preset's cache policy consulted in closed loop, as predict does.
    The plumbing for traces without the replay engine; the ITS index must be 0.."""
    rows = [tuple(e) for e in events]
    if not rows:
        raise ConfigError("no MSI events to compare")
    its = np.array([r[0] for r in rows], dtype=np.int64)
    dev = np.array([r[1] for r in rows], dtype=np.int64)
    ev = np.array([r[2] for r in rows], dtype=np.int64)
    inj = np.array([r[3] for r in rows], dtype=np.int64)
    vcpu = np.array([r[4] if len(r) > 4 else 0 for r in rows], dtype=np.int64)
    uniq, inv = np.unique(inj, return_inverse=True)
    per_inj = [np.flatnonzero(inv == j).tolist() for j in range(len(uniq))]
    keys = vm_keys(its, dev, ev)
    out = []
    for p in map(_as_preset, presets):
        if its.max() > 0 and policy_class(p.cache).scope == "its":
            raise ConfigError("compare_events models one ITS per-ITS cache; give ITS 0 only")
        policy = policy_class(p.cache)(nr_vcpus)
        policy.doorbells[0x0801_0040] = 0
        work = Injections(per_inj, dev, ev, its, vcpu, keys=keys)
        sim = Simulation(p, work, policy, RunOptions(host_cpus))
        sim.run()
        out.append(_sim_result(p, sim))
    return out


def _sim_result(preset, sim):
    """compare_events' figures, from the simulation (percentiles as the replay's)."""
    lat = np.rint(sim.t_done - sim.t_issue).astype(np.int64)
    o = sim.out.astype(np.int8)
    n = len(lat)
    lookups = int((o != BYPASS).sum())
    hits = int((o == HIT).sum())
    elapsed = float(sim.t_done.max()) if n else 0.0
    q = np.percentile(lat, [50, 99], method="inverted_cdf") if n else [None, None]
    return {
        "preset": preset.name,
        "cache": preset.cache,
        "msis": n,
        "lpis_per_sec": n / elapsed * 1e9 if elapsed else None,
        "elapsed_s": elapsed / 1e9,
        "hit_rate": hits / lookups if lookups else None,
        "hits": hits,
        "evictions": int((o == EVICT).sum()),
        "recycles": int((o == RECYCLE).sum()),
        "latency_p50_ns": int(q[0]) if n else None,
        "latency_p99_ns": int(q[1]) if n else None,
        "latency_max_ns": int(lat.max()) if n else None,
        "host_cpus": sim.cpus,
        "time_share": share_of(sim.time_spent()),
        "_latency": lat,
        "_outcome": o,
    }


def as_json(results):
    return [{k: v for k, v in r.items() if not k.startswith("_")} for r in results]


def format_table(results) -> str:
    head = ("preset", "cache", "LPIs/s", "hit rate", "evictions", "p50 ns", "p99 ns", "max ns")
    rows = []
    for r in results:
        rows.append(
            (
                r["preset"],
                r["cache"],
                f"{r['lpis_per_sec']:,.0f}" if r["lpis_per_sec"] else "-",
                f"{r['hit_rate']:.2%}" if r["hit_rate"] is not None else "-",
                f"{r['evictions']:,}",
                f"{r['latency_p50_ns']:,.0f}",
                f"{r['latency_p99_ns']:,.0f}",
                f"{r['latency_max_ns']:,.0f}",
            )
        )
    widths = [max(len(h), *(len(x[i]) for x in rows)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" if i < 2 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*head)] + [fmt.format(*x) for x in rows])


HIT_RATE_WINDOW_MAX = 10_000
STYLES = (("-", None), ("--", "o"), (":", "s"), ("-.", "^"), ((0, (5, 1)), "v"), ((0, (1, 1)), "D"))


def _title(what, results, trace):
    r = results[0]
    cpus = r.get("host_cpus")
    bits = [x for x in (trace, r.get("workload"), f"{cpus} host CPUs" if cpus else None) if x]
    return f"{what}\n{', '.join(bits)}"


def plot(results, outdir, trace=None) -> list:
    """PNG plots into outdir: latency CDF per preset (p50/p99 marked), hit rate over the
    trace (moving window, size stated), time share per step. Needs matplotlib (the 'plot'
    extra; the CLI checks before the work); returns the files written."""
    plt = plotting.pyplot()
    out = plotting.outdir(outdir)
    files: list[str] = []

    _plot_cdf(plt, results, trace, out / "latency_cdf.png", files)
    _plot_hit_rate(plt, results, trace, out / "hit_rate.png", files)
    _plot_time_share(plt, results, trace, out / "time_share.png", files)
    return [str(f) for f in files]


def _plot_cdf(plt, results, trace, path, files):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, r in enumerate(results):
        ls, mk = STYLES[k % len(STYLES)]
        lat = np.sort(r["_latency"])
        y = np.arange(1, len(lat) + 1) / len(lat)
        (line,) = ax.plot(lat, y, linestyle=ls, label=r["preset"], lw=1.6)
        for q, m in ((0.5, "o"), (0.99, "^")):
            xq = float(np.percentile(lat, q * 100))
            ax.plot([xq], [q], marker=m, color=line.get_color(), ms=7, mfc="none", ls="none")
            ax.annotate(
                f"p{int(q * 100)} {xq:,.0f}",
                (xq, q),
                textcoords="offset points",
                xytext=(6, -12 - 10 * k),
                fontsize=7,
                color=line.get_color(),
            )
    ax.set_xscale("log")
    ax.set_xlabel("modelled latency per MSI (ns)")
    ax.set_ylabel("fraction of MSIs")
    ax.set_title(_title("Latency CDF (o p50, ^ p99)", results, trace), fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    plotting.save(fig, path, files, dpi=100, bbox_inches="tight")


def _plot_hit_rate(plt, results, trace, path, files):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    w = 1
    for k, r in enumerate(results):
        ls, mk = STYLES[k % len(STYLES)]
        o = r["_outcome"]
        hit = (o == HIT).astype(np.float64)
        w = max(1, min(len(hit) // 50, HIT_RATE_WINDOW_MAX))
        roll = np.convolve(hit, np.ones(w) / w, mode="valid")
        x = np.arange(len(roll)) + w
        ax.plot(
            x,
            roll,
            linestyle=ls,
            marker=mk,
            markevery=max(1, len(x) // 12),
            label=r["preset"],
            lw=1.6,
            alpha=0.85,
        )
    ax.set_xlabel("MSI number in the trace")
    ax.set_ylabel(f"hit rate (moving window of {w:,} MSIs)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(
        _title(f"Translation-cache hit rate, window {w:,} MSIs", results, trace), fontsize=10
    )
    ax.grid(True, alpha=0.3)
    ax.legend()
    plotting.save(fig, path, files, dpi=100, bbox_inches="tight")


def _plot_time_share(plt, results, trace, path, files):
    fig, ax = plt.subplots(figsize=(8, 4.5))
    labels = []
    for r in results:
        ts = r["time_share"]
        for k in ts.get("steps", {}):
            if f"step {k}" not in labels:
                labels.append(f"step {k}")
        for k in ts.get("locks", {}):
            if f"wait {k}" not in labels:
                labels.append(f"wait {k}")
    if any(r["time_share"].get("cpu_wait") for r in results):
        labels.append("wait host CPU")
    names = [r["preset"] for r in results]
    bottom = np.zeros(len(results))
    hatches = ("", "//", "..", "xx", "\\\\", "++")
    for n, lab in enumerate(labels):
        kind, key = lab.split(" ", 1)
        vals = []
        for r in results:
            ts = r["time_share"]
            if lab == "wait host CPU":
                vals.append(ts.get("cpu_wait", 0.0))
            else:
                vals.append(ts.get("steps" if kind == "step" else "locks", {}).get(key, 0.0))
        ax.bar(names, vals, bottom=bottom, label=lab, hatch=hatches[n % len(hatches)])
        bottom += np.array(vals)
    ax.set_ylabel("share of injector time")
    ax.set_title(_title("Where the time went", results, trace), fontsize=10)
    ax.legend(fontsize=8, bbox_to_anchor=(1.02, 1), loc="upper left")
    plotting.save(fig, path, files, dpi=100, bbox_inches="tight")
