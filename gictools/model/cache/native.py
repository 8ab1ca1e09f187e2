"""The C block loops of lru-v6.8 and usage-v2 (_blocks.c), where the install built them.

The extension is optional (setup.py): without a C compiler the install succeeds and the
Python run_block of each policy runs, which is also the reference the tests compare the C
loops with; which one runs never changes a result. Small blocks stay in Python (use()).
GICTOOLS_NATIVE=0 keeps Python.
Entries are small ints (ids) chosen by the caller: the block's distinct keys, then the
resident entries the block does not name; the C side checks every id and every buffer.
Loading the extension costs nothing measurable, so nothing waits for it to pay off.
"""

import os
from types import ModuleType

from gictools.model.cache.outcome import Outcome

# A C call costs ~20 us plus ~0.5-1 us per cached entry (the id arrays are built from the
# cache and the cache rebuilt from them); the Python loops take ~0.1-2 us per event. So a
# block runs in C from MIN_EVENTS events and twice as many events as the cache holds
# (measured on 100 random blocks per size, lru-v6.8 and usage-v2 at 16 and 256 entries).
MIN_EVENTS = 256

_c: ModuleType | None = None
unavailable_reason: str | None = "disabled by GICTOOLS_NATIVE=0"
if os.environ.get("GICTOOLS_NATIVE", "1") != "0":
    try:
        import gictools.model.cache._blocks as _blocks
    except ModuleNotFoundError:  # no C compiler at install time: Python loops
        unavailable_reason = "the C extension was not built when gictools was installed"
    except ImportError as e:  # built for another Python, say
        unavailable_reason = f"the C extension does not load: {e}"
    else:
        _blocks.set_codes(
            Outcome.HIT, Outcome.MISS, Outcome.EVICT, Outcome.MISS_NOFILL, Outcome.RECYCLE
        )
        _c, unavailable_reason = _blocks, None


def available() -> bool:
    return _c is not None


def use(n_events: int, native: bool | None = None, cached: int = 0) -> bool:
    """Should a block of n_events run in C, with `cached` entries in the cache? native:
    None decides by size, True forces C (where built), False Python."""
    if native is None:
        native = n_events >= max(MIN_EVENTS, 2 * cached)
    return native and _c is not None


def lru_block(inverse, fillable, order, cap, out, victim):
    """lru-v6.8 over one block. inverse: int64 id per event; fillable: bool per id; order:
    the cache's ids, LRU first. Writes out (int8 Outcome) and victim (int64 id of the
    evicted entry) per event; returns the final order, LRU first (int64 array)."""
    import numpy as np

    final = _loops().lru_block(_i64(inverse), _u8(fillable), _i64(order), cap, out, victim)
    return np.frombuffer(final, dtype=np.int64)


def usage_block(inverse, fillable, ent_id, ent_use, cap, out, victim):
    """usage-v2 over one block. ent_id/ent_use: the list, tail first (id -1 = an
    invalidated entry still linked). Writes out/victim per event; returns the final
    (ent_id, ent_use), tail first."""
    import numpy as np

    ids, uses = _loops().usage_block(
        _i64(inverse), _u8(fillable), _i64(ent_id), _i64(ent_use), cap, out, victim
    )
    return np.frombuffer(ids, dtype=np.int64), np.frombuffer(uses, dtype=np.int64)


def _loops():
    if _c is None:
        raise RuntimeError(f"no C block loops: {unavailable_reason}")
    return _c


def _i64(a):
    import numpy as np

    return np.ascontiguousarray(a, dtype=np.int64)


def _u8(a):
    import numpy as np

    return np.ascontiguousarray(a, dtype=np.uint8)
