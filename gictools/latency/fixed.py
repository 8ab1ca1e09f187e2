"""The latency used when no preset is given: a fixed cost per cache outcome, no contention."""

import numpy as np

# Named like the presets: a fixed cost (ns) per cache outcome (entry + lookup (+ slow path
# translation + fill / eviction)) and per command. A placeholder scale, not a calibrated
# model (README "Latency").
FIXED_PRESET = "fixed-v0"
FIXED_COST_NS = np.array([250, 750, 900, 600, 650, 750], dtype=np.int64)  # by outcome code
FIXED_COST = FIXED_COST_NS.tolist()
FIXED_COMMAND_NS = 1000
