"""Translation-cache policies by name (DESIGN.md): each mirrors one kernel's cache.

A new policy is one module: a CachePolicy subclass, registered with register() (the
bundled ones are in POLICIES from the start).
"""

from gictools.errors import ConfigError
from gictools.model.cache.base import Block, BlockOutcome, CachePolicy
from gictools.model.cache.outcome import COLUMN_INDEX, COLUMN_VALUES, N_OUTCOMES, Outcome

HIT = Outcome.HIT
MISS = Outcome.MISS
EVICT = Outcome.EVICT
BYPASS = Outcome.BYPASS
MISS_NOFILL = Outcome.MISS_NOFILL
RECYCLE = Outcome.RECYCLE

POLICIES: dict[str, type[CachePolicy]] = {}


def register(cls: type) -> type:
    """Make a CachePolicy subclass selectable by its name (usable as a class decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, CachePolicy)) or cls.scope not in (
        "vm",
        "its",
    ):
        raise ConfigError(f"{cls!r} is not a CachePolicy with scope 'vm' or 'its'")
    POLICIES[cls.name] = cls
    return cls


def policy_class(name: str):
    try:
        return POLICIES[name]
    except KeyError:
        raise ConfigError(f"unknown cache policy {name!r} (known: {', '.join(POLICIES)})") from None


from gictools.model.cache.lru_v6_8 import LruV68  # noqa: E402
from gictools.model.cache.none import NoCache  # noqa: E402
from gictools.model.cache.per_its_v6_10 import PerItsV610  # noqa: E402
from gictools.model.cache.usage_v2 import UsageV2  # noqa: E402

for _cls in (NoCache, LruV68, UsageV2, PerItsV610):
    register(_cls)

__all__ = [
    "Block",
    "BlockOutcome",
    "CachePolicy",
    "COLUMN_INDEX",
    "COLUMN_VALUES",
    "N_OUTCOMES",
    "Outcome",
    "POLICIES",
    "policy_class",
    "register",
    "HIT",
    "MISS",
    "EVICT",
    "BYPASS",
    "MISS_NOFILL",
    "RECYCLE",
]
