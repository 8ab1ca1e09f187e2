"""The Feb 2024 series v2 cache (patches 12-16/23, never merged).

Entries are allocated lazily up to 16 x vCPUs and linked at the head; a hit
only increments the entry's usage counter (no move: the list is an rculist).
When full, the victim is found scanning from the head: the first invalidated
(empty) entry wins at once, else the smallest counter, ties to the tail. The
new entry starts at the largest counter seen in that scan. Unlinking a victim
waits for synchronize_rcu() (the cost the latency model charges). Invalidation
empties entries but keeps them linked, so the count does not drop.
"""

from operator import attrgetter

from gictools.model.cache.base import EVICT, MISS, RECYCLE, CachePolicy
from gictools.model.cache.lru_v6_8 import LPI_DEFAULT_PCPU_CACHE_SIZE


class _Entry:
    __slots__ = ("key", "lpi", "usage")

    def __init__(self, key, lpi, usage):
        self.key, self.lpi, self.usage = key, lpi, usage


_usage = attrgetter("usage")


class UsageV2(CachePolicy):
    name = "usage-v2"
    scope = "vm"
    kernel = "v6.8-rc1 + 'Improvements to LPI injection' v2"

    def __init__(self, nr_vcpus):
        super().__init__(nr_vcpus)
        self.capacity = LPI_DEFAULT_PCPU_CACHE_SIZE * nr_vcpus
        self.order = []  # tail first, head last
        self.map = {}  # key -> _Entry (valid entries only)
        self.empties = 0  # invalidated entries still linked

    def lookup(self, db, device_id, event_id):
        e = self.map.get(self.key(db, device_id, event_id))
        if e is None:
            return None
        e.usage += 1
        return e.lpi

    def fill(self, db, device_id, event_id, lpi):
        return self.fill_key(self.key(db, device_id, event_id), lpi)

    def fill_key(self, key, lpi):
        """fill() for a packed key (the block path's form)."""
        self.last_victim = None
        if key in self.map:
            return MISS
        order = self.order
        usage = 0
        outcome = MISS
        if len(order) >= self.capacity:
            if self.capacity == 0:
                return MISS
            if self.empties:
                victim, usage = self._scan_from_head()
            else:
                # no empty entry: the scan sees every entry; min() returns the first
                # smallest from the tail, which is the "ties to the tail" rule
                victim = min(order, key=_usage)
                usage = max(order, key=_usage).usage
            order.remove(victim)
            if victim.lpi is None:
                self.empties -= 1
                outcome = RECYCLE
            else:
                del self.map[victim.key]
                self.last_victim = ((victim.key >> 32) & 0xFFFF_FFFF, victim.key & 0xFFFF_FFFF)
                outcome = EVICT
        e = _Entry(key, lpi, usage)
        order.append(e)
        self.map[key] = e
        return outcome

    def _scan_from_head(self):
        """The kernel's scan: the first empty entry wins at once, else the least used."""
        usage = 0
        victim = None
        for e in reversed(self.order):
            if e.lpi is None:
                return e, usage
            if e.usage > usage:
                usage = e.usage
            if victim is None or e.usage <= victim.usage:
                victim = e
        return victim, usage

    def invalidate(self):
        for e in self.order:
            e.lpi = None
            e.key = None
        self.empties = len(self.order)
        self.map.clear()

    def __len__(self):
        return len(self.map)

    def entries(self):
        return [
            (*self.decode_key(e.key), e.lpi.intid)
            for e in reversed(self.order)
            if e.lpi is not None
        ]
