"""Compiled block kernels for the order-dependent policies, loaded only when they pay off.

numba is imported on the first block of at least MIN_EVENTS MSIs (never for small
blocks or per-event injection, so `gictools --help` and `info` never load it). Set
GICTOOLS_JIT=0 to keep everything in Python. Compiled code is cached on disk
(numba cache=True): beside the package if that is writable, else NUMBA_CACHE_DIR, which
is pointed at the user cache directory (or a per-user temp directory) when unset.
The pure-Python run_block of each policy stays the reference (tests compare both).
"""

import os
import tempfile

MIN_EVENTS = 2048  # below this, the Python loop beats the array conversions

_loaded = None  # the kernel module, or False once numba proved unusable


def kernels(n_events: int, use_jit: bool | None = None):
    """The kernel module if a block of n_events should run compiled, else None.

    use_jit: None decides by size, True forces compiled (if numba is usable), False Python.
    """
    if use_jit is None:
        use_jit = n_events >= MIN_EVENTS
    if not use_jit:
        return None
    global _loaded
    if _loaded is None:
        _loaded = _load() or False
    return _loaded or None


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
