"""The latency model of one replay: which preset, on how many host CPUs."""

from dataclasses import dataclass

from gictools.latency.presets import Preset


@dataclass(frozen=True)
class LatencyModel:
    """preset None: the fixed placeholder costs (gictools.latency.fixed)."""

    preset: Preset | None = None
    host_cpus: int | None = None
