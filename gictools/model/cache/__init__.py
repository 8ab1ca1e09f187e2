"""Translation-cache policies by name (DESIGN.md): each mirrors one kernel's cache."""

from gictools.errors import ConfigError
from gictools.model.cache.base import (  # noqa: F401
    BYPASS,
    CACHE_COLUMN_VALUES,
    EVICT,
    HIT,
    MISS,
    MISS_NOFILL,
    OUTCOME_NAMES,
    RECYCLE,
    CachePolicy,
)
from gictools.model.cache.lru_v6_8 import LruV68
from gictools.model.cache.none import NoCache
from gictools.model.cache.per_its_v6_10 import PerItsV610
from gictools.model.cache.usage_v2 import UsageV2

POLICIES = {p.name: p for p in (NoCache, LruV68, UsageV2, PerItsV610)}


def policy_class(name: str):
    try:
        return POLICIES[name]
    except KeyError:
        raise ConfigError(f"unknown cache policy {name!r} (known: {', '.join(POLICIES)})") from None
