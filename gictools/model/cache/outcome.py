"""Cache outcome of one injection: the one table every consumer derives its names from.

Each member carries its code (the int8 stored in outcome arrays), the Parquet `cache`
column value (several outcomes share "miss") and the latency preset path it takes
(gictools.latency.presets: hit, miss, evict, bypass, nofill, recycle).
"""

from enum import IntEnum


class Outcome(IntEnum):
    column: str
    path: str

    def __new__(cls, code: int, column: str, path: str):
        obj = int.__new__(cls, code)
        obj._value_ = code
        obj.column = column
        obj.path = path
        return obj

    HIT = 0, "hit", "hit"  # lookup hit
    MISS = 1, "miss", "miss"  # slow path; translation cached into free capacity (or present)
    EVICT = 2, "miss-evict", "evict"  # slow path; a valid entry evicted to make room
    BYPASS = 3, "bypass", "bypass"  # the policy has no cache (none)
    MISS_NOFILL = 4, "miss", "nofill"  # slow path failed; nothing cached
    RECYCLE = 5, "miss", "recycle"  # an invalidated entry unlinked to make room (usage-v2: RCU)

    @property
    def grows(self) -> bool:
        """True if the outcome adds one valid entry to the cache."""
        return self in (Outcome.MISS, Outcome.RECYCLE)

    @classmethod
    def of_column(cls, value: str, error: int = 0) -> "Outcome":
        """The outcome a `cache` value (Parquet, MsiResult.cache) stands for; a "miss" with an
        error is the slow path failing (MISS_NOFILL)."""
        if value == "miss" and error:
            return cls.MISS_NOFILL
        return _BY_COLUMN[value]


N_OUTCOMES = len(Outcome)
# Parquet `cache` dictionary, in dictionary-index order
COLUMN_VALUES = tuple(dict.fromkeys(o.column for o in Outcome))
# outcome code -> index in COLUMN_VALUES (np.asarray(COLUMN_INDEX)[codes] maps arrays)
COLUMN_INDEX = tuple(COLUMN_VALUES.index(o.column) for o in Outcome)
_BY_COLUMN: dict[str, Outcome] = {}
for _o in Outcome:
    _BY_COLUMN.setdefault(_o.column, _o)
