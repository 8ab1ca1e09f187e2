"""Compare latency presets over one trace: throughput, hit rate, evictions, latency.

For each preset the trace is replayed through the model with the preset's cache
policy (gictools.replay.Replayer, per-event rows to a temporary Parquet file);
the MSI rows, in trace order, with their injector, target vCPU, ITS and cache
outcome, then go through one closed-loop simulation over the whole trace
(gictools.latency.events.simulate_events): cache outcomes as the recorded
order decided them, time closed loop. `compare_events` does the same for an
iterable of MSI events without a trace file, with the cache policy consulted
in closed loop (as predict does). matplotlib is imported only for plots.
"""

import os

import numpy as np

from gictools import plotting
from gictools.errors import ConfigError
from gictools.latency.events import simulate_events
from gictools.latency.presets import load_preset
from gictools.latency.simulation import Injections, RunOptions, Simulation
from gictools.model.cache import BYPASS, EVICT, HIT, RECYCLE, Outcome, policy_class
from gictools.model.cache.keys import vm_keys
from gictools.stats.schema import CACHE_VALUES, OP_INDEX
from gictools.stats.schema import NUMPY as COLUMN_DTYPES


def _as_preset(p):
    return load_preset(p) if isinstance(p, str) else p


def _result(preset, lat, wait, outcome, summary):
    n = len(lat)
    lookups = int((outcome != BYPASS).sum())
    hits = int((outcome == HIT).sum())
    elapsed = summary.get("elapsed_ns") or 0.0
    return {
        "preset": preset.name,
        "cache": preset.cache,
        "msis": n,
        "lpis_per_sec": n / elapsed * 1e9 if elapsed else None,
        "elapsed_s": elapsed / 1e9,
        "hit_rate": hits / lookups if lookups else None,
        "hits": hits,
        "evictions": int(((outcome == EVICT) | (outcome == RECYCLE)).sum()),
        "latency_p50_ns": float(np.percentile(lat, 50)) if n else None,
        "latency_p99_ns": float(np.percentile(lat, 99)) if n else None,
        "latency_max_ns": float(lat.max()) if n else None,
        "mean_wait_ns": float(wait.mean()) if n else None,
        "time_share": summary.get("time_share", {}),
        "host_cpus": summary.get("host_cpus_for_injectors"),  # compare_trace: the host's
        # kept for plots, dropped by as_json
        "_latency": lat,
        "_outcome": outcome,
    }


class MsiColumns:
    """An EventWriter stand-in (add/flush/close/abort, gictools.stats.parquet) for the
    replay: keeps, of the MSI rows only, the columns compare needs, in memory, as the
    Parquet writer would store them (values cast to the column's type, nulls = 0)."""

    NAMES = ("cache", "error", "injector", "vcpu", "its", "device_id", "event_id")

    def __init__(self):
        self.parts = {name: [] for name in self.NAMES}

    def add(self, cols: dict, masks: dict, n: int, policy: int = 0, trace: int = 0) -> None:
        op, op_null = _chunk(cols, masks, "op", n)
        sel = (op == OP_INDEX["msi"]) & ~op_null
        if not sel.any():
            return
        for name in self.NAMES:
            v, null = _chunk(cols, masks, name, n)
            if name == "cache" and null[sel].any():
                raise ValueError("an MSI row without a cache outcome")
            self.parts[name].append(np.where(null, 0, v)[sel])

    def flush(self, trace=None, policy=None) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def column(self, name: str) -> np.ndarray:
        parts = self.parts[name]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _chunk(cols, masks, name, n):
    """(int64 values, null mask) of one column of an EventWriter.add chunk."""
    v = cols.get(name)
    if v is None:
        return np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool)
    dt = COLUMN_DTYPES[name]
    if isinstance(v, list):
        null = np.array([x is None for x in v], dtype=bool)
        v = np.array([0 if x is None else x for x in v], dtype=dt)
        return v.astype(np.int64), null
    if not isinstance(v, np.ndarray):
        v = np.full(n, v, dtype=dt)
    m = masks.get(name)
    null = np.zeros(n, dtype=bool) if m is None else np.asarray(m, dtype=bool)
    return v.astype(dt, copy=False).astype(np.int64), null


# Parquet `cache` dictionary index -> outcome, without / with a slow-path error
_OUTCOME_OF_CACHE = np.array([Outcome.of_column(v) for v in CACHE_VALUES], dtype=np.int8)
_OUTCOME_OF_CACHE_ERR = np.array([Outcome.of_column(v, 1) for v in CACHE_VALUES], dtype=np.int8)


def msi_outcomes_from_trace(trace, policy, kernel=None, progress=None):
    """(injector, outcome, vcpu, its, keys) arrays for the trace's MSIs in order, as the
    replay's model decides them for this cache policy."""
    from gictools.replay import Replayer

    got = MsiColumns()
    Replayer(trace, [policy], kernel, writer=got).run(progress)
    cache, err = got.column("cache"), got.column("error")
    # a failed slow path caches nothing
    outcome = np.where(err != 0, _OUTCOME_OF_CACHE_ERR[cache], _OUTCOME_OF_CACHE[cache])
    its = got.column("its")
    keys = vm_keys(its, got.column("device_id"), got.column("event_id"))
    return got.column("injector"), outcome.astype(np.int8), got.column("vcpu"), its, keys


def compare_trace(trace, presets, host_cpus=None, kernel=None, progress=None):
    """One result dict per preset (see _result) for the trace's MSIs.

    progress(stage, done, total), if given, is called as the work goes: stage
    "replay POLICY" in trace bytes, then "simulate PRESET" in MSIs. The simulation
    fast-forwards runs of hits (gictools.latency.simulation), so per-event latencies inside
    them are their thread's mean; the summary figures are what compare reports."""
    if not presets:
        raise ConfigError("give at least one --preset")
    out = []
    cached = {}
    size = os.path.getsize(trace)
    for p in map(_as_preset, presets):
        if p.cache not in cached:
            step = None
            if progress is not None:

                def step(offset, _name=f"replay {p.cache}"):
                    progress(_name, offset, size)

            cached[p.cache] = msi_outcomes_from_trace(trace, p.cache, kernel, step)
            if step is not None:
                step(size)  # the reader reports record starts; the end is the whole file
        inj, outcome, vcpu, its, keys = cached[p.cache]
        if len(inj) == 0:
            raise ConfigError(f"{trace}: no MSI injections to compare")
        sim_step = None
        if progress is not None:

            def sim_step(done, total, _name=f"simulate {p.name}"):
                progress(_name, done, total)

        lat, wait, summ = simulate_events(
            p,
            inj,
            outcome,
            host_cpus,
            vcpus=vcpu,
            its=its,
            keys=keys,
            fast_forward=True,
            progress=sim_step,
        )
        out.append(_result(p, lat, wait, outcome, summ))
        out[-1]["host_cpus"] = host_cpus or p.host_cpus
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
        lat = np.rint(sim.t_done - sim.t_issue).astype(np.int64)
        out.append(_result(p, lat, sim.wait, sim.out.astype(np.int8), sim.summary()))
    return out


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
    plotting.save(fig, out / "latency_cdf.png", files, dpi=100, bbox_inches="tight")

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
    plotting.save(fig, out / "hit_rate.png", files, dpi=100, bbox_inches="tight")

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
    plotting.save(fig, out / "time_share.png", files, dpi=100, bbox_inches="tight")
    return [str(f) for f in files]
