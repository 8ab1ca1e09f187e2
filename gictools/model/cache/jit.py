"""Compiled block kernels for the order-dependent policies, loaded only when they pay off.

Loading numba costs about 1 s per process (import + compiled code from the on-disk
cache; the first compile on a machine, 2-4 s). So blocks run in Python until the
Python block loops of this process have taken PYTHON_BUDGET_S (rent until the cost of
buying: never worse than twice the better choice), and only blocks of at least
MIN_EVENTS MSIs count or go compiled. Small traces, per-event injection, `gictools
--help` and `info` never import numba. GICTOOLS_JIT=0 keeps everything in Python.
Compiled code is cached (numba cache=True) beside the package if that is writable,
else in NUMBA_CACHE_DIR, pointed at the user cache directory (or a per-user temp
directory) when unset. The Python run_block of each policy stays the reference (tests
compare both); which one runs never changes a result.
"""

import os
import tempfile
import time

MIN_EVENTS = 2048  # below this, the Python loop beats the array conversions
PYTHON_BUDGET_S = 0.5  # Python block time after which loading numba pays off
# ... unless the Python loops run this fast (a workload of hits): then the model is not the
# limit of the replay, and loading numba would only add its ~100 MB of runtime to the RSS
FAST_PYTHON_RATE = 5e6  # events/s

_loaded = None  # the kernel module, or False once numba proved unusable
_python_s = 0.0  # time spent in Python block loops of >= MIN_EVENTS MSIs
_python_events = 0  # the events of those loops


def kernels(n_events: int, use_jit: bool | None = None):
    """The kernel module if a block of n_events should run compiled, else None.

    use_jit: None decides (size and the Python time spent so far), True forces compiled
    (if numba is usable), False Python.
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
    """The Python block loops have had their budget and run slower than FAST_PYTHON_RATE."""
    return _python_s >= PYTHON_BUDGET_S and _python_events <= FAST_PYTHON_RATE * _python_s


class python_loop:
    """Times a Python block loop of n_events toward PYTHON_BUDGET_S (a context manager)."""

    def __init__(self, n_events: int):
        self.counts = n_events >= MIN_EVENTS
        self.n_events = n_events

    def __enter__(self):
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        global _python_s, _python_events
        if self.counts:
            _python_s += time.perf_counter() - self.t0
            _python_events += self.n_events


def available() -> bool:
    return kernels(0, True) is not None


unavailable_reason = None  # why the kernels could not be loaded, if they could not


def _load():
    global unavailable_reason
    if os.environ.get("GICTOOLS_JIT", "1") == "0":
        unavailable_reason = "disabled by GICTOOLS_JIT=0"
        return None
    _ensure_cache_dir()
    try:
        from gictools.model.cache import _kernels
    except Exception as e:  # not installed, or no usable cache/compiler: stay in Python
        unavailable_reason = f"{type(e).__name__}: {e}"
        return None
    return _kernels


def _writable(d: str) -> bool:
    try:
        os.makedirs(d, mode=0o700, exist_ok=True)
        with tempfile.TemporaryFile(dir=d):
            return True
    except OSError:
        return False


def _ensure_cache_dir():
    """numba caches beside the source (__pycache__); a read-only install needs another place."""
    here = os.path.join(os.path.dirname(__file__), "__pycache__")
    if os.environ.get("NUMBA_CACHE_DIR") or _writable(here):
        return
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    for d in (
        os.path.join(xdg, "gictools", "numba"),
        os.path.join(tempfile.gettempdir(), f"gictools-numba-{os.getuid()}"),
    ):
        if _writable(d):
            os.environ["NUMBA_CACHE_DIR"] = d
            return
