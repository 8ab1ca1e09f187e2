"""What one replay of one trace under one cache policy found: counts and latencies."""

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from gictools import regs as R
from gictools.latency.fixed import FIXED_PRESET
from gictools.model.cache import BYPASS, EVICT, HIT, N_OUTCOMES


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
    failures: list = field(default_factory=list)
    failure_count: int = 0
    unchecked: Counter = field(default_factory=Counter)  # EXPECT kinds this version ignores
    trace: str = ""
    trace_sha256: str = ""
    preset: str = FIXED_PRESET

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
            "hit_rate": self.hit_rate,
            "msi_errors": {R.error_name(k): v for k, v in self.msi_errors.items()},
            "command_errors": {R.error_name(k): v for k, v in self.command_errors.items()},
            "latency_p50_ns": self.percentile(0.5),
            "latency_p99_ns": self.percentile(0.99),
            "latency_max_ns": max(self.latency) if self.latency else None,
            "failed_expectations": self.failure_count,
            "unchecked_expectations": dict(self.unchecked),
        }
