"""What one replay of one trace under one cache policy found: counts and latencies."""

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from gictools import regs as R
from gictools.latency.presets import DEFAULT_PRESET
from gictools.model.cache import BYPASS, EVICT, HIT, N_OUTCOMES, RECYCLE


@dataclass
class PolicyReport:
    policy: str
    events: int = 0
    msis: int = 0
    delivered: int = 0
    commands: int = 0
    outcomes: np.ndarray = field(default_factory=lambda: np.zeros(N_OUTCOMES, dtype=np.int64))
    msi_errors: Counter = field(default_factory=Counter)
    command_errors: Counter = field(default_factory=Counter)
    command_counts: Counter = field(default_factory=Counter)
    latency: Counter = field(default_factory=Counter)  # MSI latency_ns -> count
    invalidations: int = 0  # the policy's invalidate() calls (CachePolicy.invalidations)
    failures: list = field(default_factory=list)
    failure_count: int = 0
    unchecked: Counter = field(default_factory=Counter)  # EXPECT kinds this version ignores
    trace: str = ""
    trace_sha256: str = ""
    preset: str = DEFAULT_PRESET
    busy: Counter = field(default_factory=Counter)  # injector -> sum of its MSIs' latency_ns
    keep: list | None = None  # if a list: (outcome, latency_ns) arrays per window appended
    spent: dict | None = None  # where the simulated windows' time went (deferred models)

    def add_latencies(self, lat, injectors, outcomes=None, spent=None) -> None:
        """MSIs' latencies (int64, in trace order) with their injectors (and outcome codes,
        where the time went)."""
        if spent is not None:
            self.spent = _merge(self.spent, spent)
        vals, cnt = np.unique(lat, return_counts=True)
        for v, k in zip(vals.tolist(), cnt.tolist()):
            self.latency[v] += k
        self._add_busy(lat, injectors)
        if self.keep is not None:
            self.keep.append((outcomes, lat))

    def add_priced(self, outcomes, counts, costs: np.ndarray, injectors, lat) -> None:
        """MSIs priced by outcome (a contention-free model: lat = costs[outcomes]; counts:
        per outcome code): counted per outcome (and per injector and outcome), not by
        sorting the latencies."""
        n = len(costs)
        for c, k in enumerate(counts.tolist()):
            if k:
                self.latency[int(costs[c])] += k
        hi = int(injectors.max()) if injectors is not None and len(injectors) else 0
        if injectors is None or hi == int(injectors.min()):  # one injector: the usual block
            self.busy[hi] += int(counts @ costs)
        elif hi < 1 << 16:  # exact integer sums per injector and outcome
            per = np.bincount(injectors.astype(np.int64) * n + outcomes)
            per = np.pad(per, (0, -len(per) % n)).reshape(-1, n) @ costs
            for i in np.flatnonzero(per).tolist():
                self.busy[i] += int(per[i])
        else:
            self._add_busy(lat, injectors)
        if self.keep is not None:
            self.keep.append((outcomes, lat))

    def _add_busy(self, lat, injectors) -> None:
        inj, inv = np.unique(injectors, return_inverse=True)
        if len(inj) == 1:
            self.busy[int(inj[0])] += int(lat.sum())
            return
        sums = np.zeros(len(inj), dtype=np.int64)  # exact: float sums drift past 2**53
        np.add.at(sums, inv, lat)
        for i, v in zip(inj.tolist(), sums.tolist()):
            self.busy[i] += v

    def add_one(self, lat: int, injector: int, outcome: int) -> None:
        """One MSI's latency (the per-event path, contention-free model)."""
        self.latency[lat] += 1
        self.busy[injector] += lat
        if self.keep is not None:
            self.keep.append((np.array([outcome], np.int8), np.array([lat], np.int64)))

    @property
    def elapsed_ns(self) -> int | None:
        """Modelled closed-loop time: each injector issues its next MSI when the last one
        completes, so the run lasts as long as the busiest injector's sum of latencies."""
        return max(self.busy.values()) if self.busy else None

    @property
    def hits(self):
        return int(self.outcomes[HIT])

    @property
    def lookups(self):
        return int(self.outcomes.sum() - self.outcomes[BYPASS])

    @property
    def misses(self):
        return self.lookups - self.hits

    @property
    def evictions(self):
        return int(self.outcomes[EVICT])

    @property
    def hit_rate(self):
        return self.hits / self.lookups if self.lookups else None

    def percentile(self, q):
        if not self.latency:
            return None
        vals = sorted(self.latency)
        counts = np.cumsum([self.latency[v] for v in vals])
        return int(vals[int(np.searchsorted(counts, q * counts[-1], side="left"))])

    def as_dict(self):
        return {
            "trace": self.trace,
            "trace_sha256": self.trace_sha256,
            "policy": self.policy,
            "latency_preset": self.preset,
            "events": self.events,
            "msis": self.msis,
            "delivered": self.delivered,
            "commands": self.commands,
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
            "recycles": int(self.outcomes[RECYCLE]),
            "invalidations": self.invalidations,
            "hit_rate": self.hit_rate,
            "msi_errors": {R.error_name(k): v for k, v in self.msi_errors.items()},
            "command_errors": {R.error_name(k): v for k, v in self.command_errors.items()},
            "latency_p50_ns": self.percentile(0.5),
            "latency_p99_ns": self.percentile(0.99),
            "latency_max_ns": max(self.latency) if self.latency else None,
            "elapsed_ns": self.elapsed_ns,
            "failed_expectations": self.failure_count,
            "unchecked_expectations": dict(self.unchecked),
        }


def _merge(a: dict | None, b: dict) -> dict:
    """Sums of two Simulation.time_spent() dicts."""
    if a is None:
        return {"steps": dict(b["steps"]), "locks": dict(b["locks"]), "cpu_wait": b["cpu_wait"]}
    for k in ("steps", "locks"):
        for name, v in b[k].items():
            a[k][name] = a[k].get(name, 0.0) + v
    a["cpu_wait"] += b["cpu_wait"]
    return a
