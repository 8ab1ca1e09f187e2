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


def _load():
    if os.environ.get("GICTOOLS_JIT", "1") == "0":
        return None
    _ensure_cache_dir()
    try:
        from gictools.model.cache import _kernels
    except ImportError:
        return None
    return _kernels


def _ensure_cache_dir():
    """numba writes its cache beside the source; a read-only install needs another place."""
    if os.environ.get("NUMBA_CACHE_DIR") or os.access(os.path.dirname(__file__), os.W_OK):
        return
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    for d in (
        os.path.join(xdg, "gictools", "numba"),
        os.path.join(tempfile.gettempdir(), f"gictools-numba-{os.getuid()}"),
    ):
        try:
            os.makedirs(d, mode=0o700, exist_ok=True)
        except OSError:
            continue
        if os.access(d, os.W_OK):
            os.environ["NUMBA_CACHE_DIR"] = d
            return
