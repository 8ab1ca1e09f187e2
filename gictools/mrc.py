"""Cache capacity analysis of a trace: miss-ratio curves (`gictools mrc`).

The access stream is the trace's MSIs in order, keyed as the kernels key
their caches: lru-v6.8 and usage-v2 by the exact doorbell (one per ITS) +
DeviceID + EventID (vgic_its_check_cache), the per-ITS cache by DeviceID and
EventID within its ITS. Invalidations (commands) and failed translations are
not applied: this is the demand of the stream, the capacity question alone.

- LRU: exact miss ratio at every capacity in one pass. An access's stack
  distance is 1 + the number of distinct keys used since its key's last use;
  LRU of capacity C hits exactly the accesses with distance <= C (Mattson et
  al., 1970). Distinct keys since the last use = marks in a Fenwick tree over
  access times that hold only each key's latest use.
- usage-v2: no stack property (a victim is chosen by counters), so its curve is
  simulated at chosen capacities with the policy's own rules.
- per-ITS (v6.10): unbounded, so its size is the footprint: distinct
  translations per ITS as the trace goes.
"""

import math

import numpy as np

from gictools import plotting
from gictools.errors import ConfigError
from gictools.model.cache.base import LPI_DEFAULT_PCPU_CACHE_SIZE
from gictools.model.cache.keys import translation_keys
from gictools.model.cache.usage_v2 import UsageV2

TARGET_HIT_RATE = 0.99
FOOTPRINT_POINTS = 200


def trace_accesses(trace, progress=None):
    """(its, device_id, event_id) int64 arrays of the trace's MSIs, and the vCPU count;
    progress(events_read, events_total or None) after each record."""
    from gictools.trace import format as F
    from gictools.trace.reader import TraceReader

    rd = TraceReader(trace)
    its, dev, ev = [], [], []
    for rec in rd:
        if rec[0] == F.MSI:
            its.append(np.array([rec[3]], dtype=np.int64))
            dev.append(np.array([rec[4]], dtype=np.int64))
            ev.append(np.array([rec[5]], dtype=np.int64))
        elif rec[0] == F.MSI_BLOCK:
            n = rec[1]
            its.append(np.full(n, rec[2], dtype=np.int64))
            dev.append(np.asarray(rec[4], dtype=np.int64))
            ev.append(np.asarray(rec[5], dtype=np.int64))
        if progress is not None:
            progress(rd.events_read, rd.events_total)
    if not its:
        raise ConfigError(f"{trace}: no MSI injections to analyse")
    return (np.concatenate(its), np.concatenate(dev), np.concatenate(ev)), rd.header["vm"]["vcpus"]


def stack_distances(keys) -> np.ndarray:
    """LRU stack distance of each access (0 for a first use: a cold miss)."""
    keys = keys.tolist() if isinstance(keys, np.ndarray) else list(keys)
    n = len(keys)
    tree = [0] * (n + 1)
    last: dict[int, int] = {}
    out = np.zeros(n, dtype=np.int64)
    live = 0  # marks in the tree: distinct keys so far
    for t, k in enumerate(keys, 1):
        prev = last.get(k)
        if prev is not None:
            s, i = 0, prev  # marks at times <= prev
            while i > 0:
                s += tree[i]
                i -= i & -i
            out[t - 1] = live - s + 1
            i = prev
            while i <= n:
                tree[i] -= 1
                i += i & -i
            live -= 1
        i = t
        while i <= n:
            tree[i] += 1
            i += i & -i
        live += 1
        last[k] = t
    return out


def lru_curve(distances) -> list:
    """[[capacity, miss_ratio]] for capacity 1..distinct keys, from stack distances."""
    n = len(distances)
    cold = int((distances == 0).sum())
    hist = np.bincount(distances[distances > 0], minlength=cold + 1)
    hits = np.cumsum(hist)[1 : cold + 1]  # hits at capacity C = accesses with 1 <= d <= C
    return [[c, (n - int(h)) / n] for c, h in zip(range(1, cold + 1), hits.tolist())]


def usage_curve(its, dev, ev, capacities) -> list:
    """[[capacity, miss_ratio]] of the usage-v2 policy, simulated at each capacity."""
    n = len(dev)
    out = []
    triples = list(zip(its.tolist(), dev.tolist(), ev.tolist()))
    for cap in capacities:
        pol = UsageV2(1)
        pol.capacity = int(cap)
        for i in set(its.tolist()):
            pol.doorbells[i] = i  # one doorbell per ITS: the kernel's exact-address key
        misses = 0
        for i, d, e in triples:
            if pol.lookup(i, d, e) is None:
                misses += 1
                pol.fill(i, d, e, 1)
        out.append([int(cap), misses / n])
    return out


def footprints(its, dev, ev, points=FOOTPRINT_POINTS) -> dict:
    """{ITS index: [[accesses so far, distinct translations so far], ...]}."""
    n = len(dev)
    marks = sorted({min(n, max(1, round(n * k / points))) for k in range(1, points + 1)})
    out = {}
    for i in sorted(set(its.tolist())):
        sel = its == i
        key = translation_keys(dev[sel], ev[sel])
        pos = np.flatnonzero(sel)
        _, first = np.unique(key, return_index=True)
        first_at = np.sort(pos[first])  # global index of each key's first use
        out[int(i)] = [[m, int(np.searchsorted(first_at, m, side="left"))] for m in marks]
    return out


def analyse(its, dev, ev, vcpus, usage_capacities=None) -> dict:
    """The capacity report for an access stream (see the module doc)."""
    n = len(dev)
    if int(dev.max()) < 1 << 24 and int(ev.max()) < 1 << 24 and int(its.max()) < 1 << 15:
        keys = (its << 48) | (dev << 24) | ev  # one int per (doorbell, DeviceID, EventID)
    else:
        keys = list(zip(its.tolist(), dev.tolist(), ev.tolist()))
    lru = lru_curve(stack_distances(keys))
    distinct = len(lru)
    cold = distinct / n
    cap99 = next((c for c, m in lru if m <= 1 - TARGET_HIT_RATE + 1e-12), None)
    rule = LPI_DEFAULT_PCPU_CACHE_SIZE * vcpus
    rule_mr = lru[min(rule, distinct) - 1][1]
    if usage_capacities is None:
        usage_capacities = sorted(
            {c for c in (rule, distinct, max(1, distinct // 2), cap99) if c and c <= distinct}
        )
    return {
        "accesses": n,
        "distinct": distinct,
        "cold_miss_ratio": cold,
        "lru": lru,
        "capacity_for_99": cap99,
        "kernel_rule": {
            "policy": "lru-v6.8",
            "vcpus": vcpus,
            "capacity": rule,
            "miss_ratio": rule_mr,
            "enough": cap99 is not None and rule >= cap99,
        },
        "usage_v2": usage_curve(its, dev, ev, usage_capacities),
        "per_its_footprint": footprints(its, dev, ev),
    }


def format_report(r, name="") -> str:
    k = r["kernel_rule"]
    lines = [
        f"{name}: {r['accesses']:,} MSIs, {r['distinct']:,} distinct translations "
        f"(cold misses {r['cold_miss_ratio']:.2%})",
    ]
    if r["capacity_for_99"] is None:
        lines.append(
            f"  99 % hits: unreachable at any capacity (cold misses alone are "
            f"{r['cold_miss_ratio']:.2%})"
        )
    else:
        lines.append(f"  smallest LRU capacity with >= 99 % hits: {r['capacity_for_99']:,}")
    lines.append(
        f"  lru-v6.8 rule 16 x {k['vcpus']} vCPUs = {k['capacity']:,} entries: "
        f"miss ratio {k['miss_ratio']:.2%} ({'enough' if k['enough'] else 'too small'})"
    )
    lines.append("  LRU miss ratio by capacity:")
    lru = r["lru"]
    picks = sorted({1, *(2**i for i in range(int(math.log2(len(lru))) + 1)), len(lru)})
    picks = sorted({c for c in picks if c <= len(lru)} | {r["capacity_for_99"] or 1})
    for c in picks:
        lines.append(f"    {c:>8,}  {lru[c - 1][1]:8.2%}")
    lines.append("  usage-v2 (simulated):")
    for c, m in r["usage_v2"]:
        lines.append(f"    {c:>8,}  {m:8.2%}   (LRU {lru[min(c, len(lru)) - 1][1]:.2%})")
    lines.append("  per-ITS footprint (v6.10 cache size at the end):")
    for i, pts in r["per_its_footprint"].items():
        lines.append(f"    ITS {i}: {pts[-1][1]:,} translations")
    return "\n".join(lines)


def plot(r, outdir, title="") -> list:
    """mrc.png (miss ratio by capacity) and footprint.png into outdir."""
    plt = plotting.pyplot()
    out = plotting.outdir(outdir)
    files: list[str] = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    lru = np.array(r["lru"], dtype=float)
    ax.step(lru[:, 0], lru[:, 1], where="post", label="LRU (exact)", color="C0")
    if r["usage_v2"]:
        u = np.array(r["usage_v2"], dtype=float)
        ax.plot(u[:, 0], u[:, 1], "s--", color="C1", label="usage-v2 (simulated)")
    k = r["kernel_rule"]
    ax.axvline(k["capacity"], ls=":", color="C3", label=f"16 x {k['vcpus']} vCPUs rule")
    if r["capacity_for_99"]:
        ax.axvline(r["capacity_for_99"], ls="-.", color="C2", label="99 % hits")
    ax.set_xscale("log")
    ax.set_xlabel("cache capacity (entries)")
    ax.set_ylabel("miss ratio")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"Miss-ratio curve: {title} ({r['accesses']:,} MSIs)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    plotting.save(fig, out / "mrc.png", files, dpi=100, bbox_inches="tight")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = ["-", "--", ":", "-."]
    for n, (i, pts) in enumerate(r["per_its_footprint"].items()):
        p = np.array(pts, dtype=float)
        ax.plot(p[:, 0], p[:, 1], styles[n % 4], label=f"ITS {i}")
    ax.set_xlabel("MSIs so far")
    ax.set_ylabel("distinct translations (per-ITS cache size)")
    ax.set_title(f"Per-ITS footprint: {title}")
    ax.grid(True, alpha=0.3)
    ax.legend()
    plotting.save(fig, out / "footprint.png", files, dpi=100, bbox_inches="tight")
    return [str(f) for f in files]
