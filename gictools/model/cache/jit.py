"""Compiled block kernels for the order-dependent policies, loaded only when they pay off.

Building the kernels (_kernels.py: LLVM IR compiled in a child process) takes ~0.15 s and
~1 MB of RSS; they then run the block loops 3-35x faster than Python. So blocks run in
Python until the Python block loops of this process have taken PYTHON_BUDGET_S (rent until
the cost of buying), and only blocks of at least MIN_EVENTS MSIs count or go compiled.
Small traces, per-event injection, `gictools --help` and `info` never build them.
GICTOOLS_JIT=0 keeps everything in Python. The Python run_block of each policy stays the
reference (tests compare both); which one runs never changes a result.
"""

import os
import time

MIN_EVENTS = 2048  # below this, the Python loop beats the array conversions
PYTHON_BUDGET_S = 0.15  # Python block time after which building the kernels pays off

_loaded = None  # the kernel module, or False once llvmlite proved unusable
_python_s = 0.0  # time spent in Python block loops of >= MIN_EVENTS MSIs


def kernels(n_events: int, use_jit: bool | None = None):
    """The kernel module if a block of n_events should run compiled, else None.

    use_jit: None decides (size and the Python time spent so far), True forces compiled
    (if llvmlite is usable), False Python.
    """
    global _loaded
    if use_jit is None:
        use_jit = n_events >= MIN_EVENTS and (_loaded is not None or _python_slow())
    if not use_jit:
        return None
    if _loaded is None:
        _loaded = _load() or False
    return _loaded or None


def _python_slow() -> bool:
    """The Python block loops have had their budget."""
    return _python_s >= PYTHON_BUDGET_S


class python_loop:
    """Times a Python block loop of n_events toward PYTHON_BUDGET_S (a context manager)."""

    def __init__(self, n_events: int):
        self.counts = n_events >= MIN_EVENTS

    def __enter__(self):
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        global _python_s
        if self.counts:
            _python_s += time.perf_counter() - self.t0


def available() -> bool:
    return kernels(0, True) is not None


unavailable_reason = None  # why the kernels could not be loaded, if they could not


def _load():
    global unavailable_reason
    if os.environ.get("GICTOOLS_JIT", "1") == "0":
        unavailable_reason = "disabled by GICTOOLS_JIT=0"
        return None
    try:
        from gictools.model.cache import _kernels
    except Exception as e:  # llvmlite missing or unusable here: stay in Python
        unavailable_reason = f"{type(e).__name__}: {e}"
        return None
    return _kernels
