"""Cache capacity analysis of a trace: miss-ratio curves (`gictools mrc`).

The access stream is the trace's MSIs in order, keyed as the kernels key
their caches: lru-v6.8 and usage-v2 by the exact doorbell (one per ITS) +
DeviceID + EventID (vgic_its_check_cache), the per-ITS cache by DeviceID and
EventID within its ITS. Invalidations (commands) and failed translations are
not applied: this is the demand of the stream, the capacity question alone.

- LRU: exact miss ratio at every capacity in one pass. An access's stack
  distance is 1 + the number of distinct keys used since its key's last use;
  LRU of capacity C hits exactly the accesses with distance <= C (Mattson et
  al., 1970): gictools.model.cache.recency, the LRU stack the latency model's
  list walks use too.
- usage-v2: no stack property (a victim is chosen by counters), so its curve is
  simulated at chosen capacities with the policy's own rules.
- per-ITS (v6.10): unbounded, so its size is the footprint: distinct
  translations per ITS as the trace goes.

Memory: the stream is held as one 4-byte key id per MSI (dense ids of the distinct
(ITS, DeviceID, EventID), given batch by batch with numpy); everything else grows with
the distinct keys only: the LRU stack's clock is renumbered down to the live keys whenever
it runs past twice the distinct keys. A trace of more than max_msis MSIs
(DEFAULT_MAX_MSIS) is refused with a ConfigError that names the limit.
"""

import math
from array import array
from dataclasses import dataclass

import numpy as np

from gictools import plotting
from gictools.errors import ConfigError
from gictools.model.cache.base import LPI_DEFAULT_PCPU_CACHE_SIZE
from gictools.model.cache.keys import split_translation_keys, translation_keys
from gictools.model.cache.recency import RecencyList
from gictools.model.cache.usage_v2 import UsageV2

TARGET_HIT_RATE = 0.99
FOOTPRINT_POINTS = 200
DEFAULT_MAX_MSIS = 1 << 24  # 64 MiB of key ids; a few minutes per usage-v2 capacity
_U32_MAX = (1 << 32) - 1
MAX_MSIS = _U32_MAX  # key ids are u32
MIN_TREE = 1 << 16  # Fenwick positions before the first renumbering
_BATCH = 1 << 16  # MSIs given ids together (more when there are more distinct keys)
_CHUNK = 1 << 16  # key ids turned into Python ints at a time


@dataclass
class Accesses:
    """An access stream: ids[t] is the key id of MSI t (array of u32); key id k is
    (its[k], dev[k], ev[k])."""

    ids: array
    its: np.ndarray
    dev: np.ndarray
    ev: np.ndarray
    vcpus: int = 1

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def distinct(self) -> int:
        return len(self.its)


class StreamBuilder:
    """Collects MSIs into an Accesses with bounded memory: 4 bytes per MSI plus a sorted
    table per ITS of its distinct translation keys; ConfigError past max_msis."""

    def __init__(self, max_msis: int = DEFAULT_MAX_MSIS, source: str = "") -> None:
        self.max_msis, self.source = max_msis, source
        self.ids = array("I")
        self.n = 0
        self._tables: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._new_its: list[np.ndarray] = []
        self._new_keys: list[np.ndarray] = []
        self._distinct = 0
        self._keys = array("Q")
        self._its = array("I")

    def _count(self, k: int) -> None:
        self.n += k
        if self.n > self.max_msis:
            raise ConfigError(too_many(self.source, self.max_msis))
        if len(self._keys) >= max(_BATCH, self._distinct):
            self._flush()

    def add(self, its: int, device_id: int, event_id: int) -> None:
        self._keys.append(device_id << 32 | event_id)
        self._its.append(its)
        self._count(1)

    def add_block(self, its: int, device_ids, event_ids) -> None:
        """One ITS's MSIs (u32 arrays)."""
        self.add_many(np.full(len(device_ids), its, dtype=np.uint32), device_ids, event_ids)

    def add_many(self, its, device_ids, event_ids) -> None:
        """MSIs in stream order from three arrays (IDs and ITS indexes below 2^32)."""
        self._keys.frombytes(translation_keys(device_ids, event_ids).tobytes())
        self._its.frombytes(np.asarray(its).astype(np.uint32).tobytes())
        self._count(len(device_ids))

    def _flush(self) -> None:
        if not self._keys:
            return
        keys = np.frombuffer(self._keys, dtype=np.uint64)
        its = np.frombuffer(self._its, dtype=np.uint32)
        out = np.empty(len(keys), dtype=np.uint32)
        itses = np.unique(its).tolist()
        for i in itses:
            if len(itses) == 1:
                out[:] = self._ids_of(i, keys)
            else:
                sel = its == i
                out[sel] = self._ids_of(i, keys[sel])
        del keys, its  # release the buffers before the arrays are replaced
        self._keys, self._its = array("Q"), array("I")
        self.ids.frombytes(out.tobytes())

    def _ids_of(self, its: int, keys: np.ndarray) -> np.ndarray:
        uniq, inverse = np.unique(keys, return_inverse=True)
        tkeys, tids = self._tables.get(
            its, (np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.uint32))
        )
        pos = np.searchsorted(tkeys, uniq)
        found = np.zeros(len(uniq), dtype=bool)
        inside = pos < len(tkeys)
        found[inside] = tkeys[pos[inside]] == uniq[inside]
        uids = np.empty(len(uniq), dtype=np.uint32)
        uids[found] = tids[pos[found]]
        new = ~found
        fresh = np.arange(self._distinct, self._distinct + int(new.sum()), dtype=np.uint32)
        uids[new] = fresh
        self._distinct += len(fresh)
        self._new_its.append(np.full(len(fresh), its, dtype=np.uint32))
        self._new_keys.append(uniq[new])
        self._tables[its] = (
            np.insert(tkeys, pos[new], uniq[new]),
            np.insert(tids, pos[new], fresh),
        )
        return uids[np.ravel(inverse)]

    def finish(self, vcpus: int = 1) -> Accesses:
        self._flush()
        self._tables.clear()
        keys = np.concatenate(self._new_keys) if self._new_keys else np.empty(0, np.uint64)
        its = np.concatenate(self._new_its) if self._new_its else np.empty(0, np.uint32)
        dev, ev = split_translation_keys(keys)
        return Accesses(self.ids, its, dev, ev, vcpus)


def too_many(source: str, limit: int) -> str:
    where = f"{source}: " if source else ""
    return (
        f"{where}more than {limit:,} MSIs, the limit of mrc (4 bytes each in memory); "
        f"raise it with --max-msis N"
    )


def trace_accesses(trace, progress=None, max_msis: int = DEFAULT_MAX_MSIS) -> Accesses:
    """The trace's MSIs as an Accesses (vcpus from its header); progress(events_read,
    events_total or None) after each record. ConfigError past max_msis MSIs (checked
    against the header's counts first, then while reading)."""
    from gictools.trace import format as F
    from gictools.trace.reader import TraceReader

    rd = TraceReader(trace)
    counts = rd.counts
    if counts is not None and counts["msis"] > max_msis:
        raise ConfigError(too_many(str(trace), max_msis))
    b = StreamBuilder(max_msis, str(trace))
    for rec in rd:
        if rec[0] == F.MSI:
            b.add(rec[3], rec[4], rec[5])
        elif rec[0] == F.MSI_BLOCK:
            b.add_block(rec[2], rec[4], rec[5])
        if progress is not None:
            progress(rd.events_read, rd.events_total)
    if not b.n:
        raise ConfigError(f"{trace}: no MSI injections to analyse")
    return b.finish(rd.header["vm"]["vcpus"])


def accesses_of(its, dev, ev, vcpus: int = 1) -> Accesses:
    """An Accesses from three arrays (or sequences) of ITS index, DeviceID, EventID."""
    its, dev, ev = (np.asarray(a, dtype=np.int64).ravel() for a in (its, dev, ev))
    if not len(its) == len(dev) == len(ev):
        raise ValueError("its, dev and ev differ in length")
    for name, a in (("its", its), ("dev", dev), ("ev", ev)):
        if len(a) and (int(a.min()) < 0 or int(a.max()) > _U32_MAX):
            raise ValueError(f"{name}: values must be in 0..{_U32_MAX:#x}")
    b = StreamBuilder(max(len(its), 1))
    for s in range(0, len(its), _BATCH):
        part = slice(s, s + _BATCH)
        b.add_many(its[part], dev[part], ev[part])
    return b.finish(vcpus)


def _walk(ids, distinct: int, out=None, min_tree: int | None = None):
    """One pass of the LRU stack (model.cache.recency): (hist, first) where hist[d] counts
    the accesses at stack distance d (0: first use, a cold miss) and first[k] is key k's
    first access. out (optional, indexable by access): each access's distance. The stack
    holds 8 bytes per key and renumbers its clock past twice the distinct keys."""
    stack = RecencyList(max(2 * distinct, MIN_TREE if min_tree is None else min_tree), distinct)
    touch = stack.touch
    first = array("q", bytes(8 * distinct))
    hist = [0] * (distinct + 1)
    for g, k in enumerate(ids):
        d = touch(k)
        if not d:
            first[k] = g
        hist[d] += 1
        if out is not None:
            out[g] = d
    return hist, first


def stack_distances(keys, min_tree: int | None = None) -> np.ndarray:
    """LRU stack distance of each access of a key sequence (0 for a first use: a cold miss).
    For small streams (ids through a dict); traces go through analyse_accesses."""
    seen: dict = {}
    ids = [
        seen.setdefault(k, len(seen)) for k in (keys.tolist() if hasattr(keys, "tolist") else keys)
    ]
    out = np.zeros(len(ids), dtype=np.int64)
    _walk(ids, len(seen), out, min_tree)
    return out


def lru_curve(distances) -> list:
    """[[capacity, miss_ratio]] for capacity 1..distinct keys, from stack distances."""
    distances = np.asarray(distances)
    cold = int((distances == 0).sum())
    return _lru_curve(np.bincount(distances, minlength=cold + 1).tolist())


def _lru_curve(hist) -> list:
    """The curve from a histogram of stack distances (hist[0]: cold misses)."""
    n = sum(hist)
    cold = hist[0]
    hits = np.cumsum(np.asarray(hist[1 : cold + 1], dtype=np.int64))  # accesses with 1 <= d <= C
    return [[c, (n - int(h)) / n] for c, h in zip(range(1, cold + 1), hits.tolist())]


def usage_curve(acc: Accesses, capacities) -> list:
    """[[capacity, miss_ratio]] of the usage-v2 policy, simulated at each capacity."""
    n = acc.n
    out = []
    ids = np.frombuffer(acc.ids, dtype=np.uint32)
    for cap in capacities:
        pol = UsageV2(1)
        pol.capacity = int(cap)
        for i in np.unique(acc.its).tolist():
            pol.doorbells[i] = i  # one doorbell per ITS: the kernel's exact-address key
        misses = 0
        for s in range(0, n, _CHUNK):
            part = ids[s : s + _CHUNK]
            triples = zip(acc.its[part].tolist(), acc.dev[part].tolist(), acc.ev[part].tolist())
            for i, d, e in triples:
                if pol.lookup(i, d, e) is None:
                    misses += 1
                    pol.fill(i, d, e, 1)
        out.append([int(cap), misses / n])
    return out


def footprints(acc: Accesses, first, points=FOOTPRINT_POINTS) -> dict:
    """{ITS index: [[accesses so far, distinct translations so far], ...]}."""
    n = acc.n
    marks = sorted({min(n, max(1, round(n * k / points))) for k in range(1, points + 1)})
    first_use = np.frombuffer(first, dtype=np.int64)
    out = {}
    for i in np.unique(acc.its).tolist():
        first_at = np.sort(first_use[acc.its == i])  # access index of each key's first use
        out[int(i)] = [[m, int(np.searchsorted(first_at, m, side="left"))] for m in marks]
    return out


def analyse(its, dev, ev, vcpus, usage_capacities=None) -> dict:
    """The capacity report for an access stream given as arrays (see the module doc)."""
    return analyse_accesses(accesses_of(its, dev, ev, vcpus), usage_capacities)


def analyse_accesses(acc: Accesses, usage_capacities=None) -> dict:
    """The capacity report for an Accesses (see the module doc)."""
    n = acc.n
    hist, first = _walk(acc.ids, acc.distinct)
    lru = _lru_curve(hist)
    distinct = len(lru)
    cold = distinct / n
    cap99 = next((c for c, m in lru if m <= 1 - TARGET_HIT_RATE + 1e-12), None)
    vcpus = acc.vcpus
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
        "usage_v2": usage_curve(acc, usage_capacities),
        "per_its_footprint": footprints(acc, first),
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
    lines.append(f"  note: {INVALIDATIONS_IGNORED}")
    return "\n".join(lines)


# What the curve leaves out, said wherever it is shown (text; "note" in --json)
INVALIDATIONS_IGNORED = (
    "the curve follows the MSIs' translations only; commands that empty the cache (DISCARD, "
    "MAPD, MOVI, INV..., disabling LPIs) are ignored, so a replay of the same trace can miss "
    "more"
)


def plot(r, outdir, title="") -> list:
    """mrc.png (miss ratio by capacity) and footprint.png into outdir."""
    plt = plotting.pyplot()
    out = plotting.outdir(outdir)
    files: list[str] = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    lru = np.array(r["lru"], dtype=float)
    # LRU wide and light below, usage-v2 narrow with markers on top: both stay visible
    # where they coincide
    ax.step(lru[:, 0], lru[:, 1], where="post", label="LRU (exact)", color="C0", lw=4, alpha=0.45)
    if r["usage_v2"]:
        u = np.array(r["usage_v2"], dtype=float)
        ax.plot(u[:, 0], u[:, 1], "s--", color="C1", label="usage-v2 (simulated)", zorder=3)
    k = r["kernel_rule"]
    ax.axvline(k["capacity"], ls=":", color="C3", label=f"16 x {k['vcpus']} vCPUs rule")
    if r["capacity_for_99"]:
        ax.axvline(r["capacity_for_99"], ls="-.", color="C2", label="99 % hits")
    ax.set_xscale("log")
    # log y: a curve of 0.09-2.2 % misses is not squashed to the floor (LRU never reaches 0:
    # every distinct translation misses once)
    ax.set_yscale("log")
    ax.set_xlabel("cache capacity (entries)")
    ax.set_ylabel("miss ratio (log)")
    plotting.plain_ticks(ax.xaxis)
    plotting.percent_ticks(ax.yaxis)
    ax.set_title(f"Miss-ratio curve: {title} ({r['accesses']:,} MSIs)")
    ax.grid(True, which="both", alpha=0.3)
    plotting.legend_outside(ax)
    plotting.save(fig, out / "mrc.png", files, dpi=100, bbox_inches="tight")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = ["-", "--", ":", "-."]
    for n, (i, pts) in enumerate(r["per_its_footprint"].items()):
        p = np.array(pts, dtype=float)
        ax.plot(p[:, 0], p[:, 1], styles[n % 4], label=f"ITS {i}")
    ax.set_xlabel("MSIs so far")
    ax.set_ylabel("distinct translations (per-ITS cache size)")
    plotting.plain_ticks(ax.xaxis, integer=True)
    plotting.plain_ticks(ax.yaxis, integer=True)
    ax.set_title(f"Per-ITS footprint: {title}")
    ax.grid(True, alpha=0.3)
    plotting.legend_outside(ax)
    plotting.save(fig, out / "footprint.png", files, dpi=100, bbox_inches="tight")
    return [str(f) for f in files]
