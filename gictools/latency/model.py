"""The latency model of one replay: one preset, one host, one interleaving.

Every MSI of a replay, on the block path or the per-event path, gets its latency from
this one object, from the real outcome code of its cache lookup (gictools.model.cache
Outcome: hit, miss, evict, recycle, nofill, bypass). compare and sweep run the replay,
so they get the same numbers.

A contention-free preset (no locks, no list walk, no sleeping step, no jitter) on
unlimited host CPUs prices each MSI at the sum of its path's step costs: exactly what the
closed-loop simulation gives it (nobody ever waits), without running the simulation.
Any other model runs gictools.latency.events.simulate_events over windows of MSIs.
"""

from dataclasses import dataclass, field

import numpy as np

from gictools.latency.events import simulate_events
from gictools.latency.presets import DEFAULT_PRESET, Preset, load_preset
from gictools.latency.resources import LOCKSTEP, Interleaving
from gictools.model.cache import N_OUTCOMES, Outcome

_PATH_OF_CODE = {int(o): o.path for o in Outcome}

# ITS commands are not modelled: each command row carries this placeholder (ns)
COMMAND_NS = 1000


def _default_preset() -> Preset:
    return load_preset(DEFAULT_PRESET)


@dataclass(frozen=True)
class LatencyModel:
    """preset: the step costs and locks; host_cpus: overrides the preset's; seed: None
    for the deterministic lock-step run (the default: a replay is reproducible), else
    a stochastic interleaving with that seed (docs/latency-model.md)."""

    preset: Preset = field(default_factory=_default_preset)
    host_cpus: int | None = None
    seed: int | None = None

    @property
    def name(self) -> str:
        return self.preset.name

    @property
    def interleaving(self) -> Interleaving:
        return LOCKSTEP if self.seed is None else Interleaving(self.seed)

    @property
    def contention_free(self) -> bool:
        return (
            self.preset.contention_free and self.host_cpus is None and self.preset.host_cpus is None
        )

    @property
    def costs(self) -> np.ndarray:
        """ns by outcome code: the sum of each outcome's path (contention-free models)."""
        return np.array(
            [round(self.preset.path_ns(_PATH_OF_CODE[c])) for c in range(N_OUTCOMES)],
            dtype=np.int64,
        )

    def latencies(self, injectors, outcomes, vcpus, its, keys):
        """(latency_ns, wait_ns, spent) for MSIs in trace order, each given its injector,
        real outcome code, target vCPU, ITS index and cache key: int64 arrays, and where
        the time went (Simulation.time_spent)."""
        if self.contention_free:
            codes = np.asarray(outcomes, dtype=np.intp)
            lat = self.costs[codes]
            spent = self.spent_by_outcome(np.bincount(codes, minlength=N_OUTCOMES))
            return lat, np.zeros(len(lat), dtype=np.int64), spent
        return simulate_events(
            self.preset,
            injectors,
            outcomes,
            self.host_cpus,
            vcpus=vcpus,
            its=its,
            keys=keys,
            interleaving=self.interleaving,
        )

    def spent_by_outcome(self, counts) -> dict:
        """Where the time of MSIs went, given their count per outcome code, when nobody
        waits (contention-free): each step of each path, counted."""
        steps: dict = {}
        for code, k in enumerate(np.asarray(counts).tolist()):
            for name in self.preset.path_of(_PATH_OF_CODE[code]) if k else ():
                steps[name] = steps.get(name, 0.0) + self.preset.steps[name].ns * k
        return {"steps": steps, "locks": {}, "cpu_wait": 0.0}

    def metadata(self) -> dict:
        """What a replay's output records about its latency model."""
        return {
            "latency_preset": self.name,
            "latency_parameters": self.preset.as_dict(),
            "latency_seed": self.seed,
            "latency_interleaving": "lock-step" if self.seed is None else "stochastic",
            "latency_host_cpus": self.host_cpus,
        }
