"""Translation-cache policies by name: each mirrors one kernel's cache.

The registry (POLICIES) is what everything asks: policy_class() validates a name,
policy_names() lists them (CLI choices), default_policy() picks a kernel version's cache
from the policies' mainline ranges. Importing it loads no numpy. A new policy is one
module: a CachePolicy subclass, registered with register() (the bundled ones are in
POLICIES from the start).
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
    if cls.invalidate is not CachePolicy.invalidate:  # the base counts each call
        raise ConfigError(f"{cls!r} overrides invalidate(): implement empty() instead")
    POLICIES[cls.name] = cls
    return cls


def policy_class(name: str) -> type[CachePolicy]:
    """The policy registered as name; ConfigError naming the known ones otherwise."""
    try:
        return POLICIES[name]
    except KeyError:
        raise ConfigError(f"unknown cache policy {name!r} (known: {', '.join(POLICIES)})") from None


def policy_names() -> tuple[str, ...]:
    """The registered names, in registration order (the CLI's choices)."""
    return tuple(POLICIES)


def default_policy(version: tuple) -> str:
    """The name of the cache mainline kernel `version` ((X, Y, ...)) has: the one policy
    whose mainline range holds it."""
    xy = tuple(version[:2])
    found = [
        c.name
        for c in POLICIES.values()
        if c.mainline is not None
        and c.mainline[0] <= xy
        and (c.mainline[1] is None or xy < c.mainline[1])
    ]
    if len(found) != 1:
        raise ConfigError(
            f"kernel {'.'.join(map(str, xy))}: {len(found)} cache policies claim it "
            f"({', '.join(found) or 'none'}), expected one"
        )
    return found[0]


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
    "default_policy",
    "policy_class",
    "policy_names",
    "register",
    "HIT",
    "MISS",
    "EVICT",
    "BYPASS",
    "MISS_NOFILL",
    "RECYCLE",
]
