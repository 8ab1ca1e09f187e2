"""The latency model: kernel injection paths as data (presets) and a closed-loop simulation
of concurrent injectors (contention), for per-event latency and predicted LPIs/s."""

from gictools.latency.presets import BUNDLED, Preset, load_preset  # noqa: F401
