"""The Feb 2024 series v2 cache (patches 12-16/23, never merged).

Entries are allocated lazily up to 16 x vCPUs and linked at the head; a hit
only increments the entry's usage counter (no move: the list is an rculist).
When full, the victim is found scanning from the head: the first invalidated
(empty) entry wins at once, else the smallest counter, ties to the tail. The
new entry starts at the largest counter seen in that scan. Unlinking a victim
waits for synchronize_rcu() (the cost the latency model charges). Invalidation
empties entries but keeps them linked, so the count does not drop.
"""

from gictools.model.cache.base import EVICT, MISS, RECYCLE, CachePolicy
from gictools.model.cache.lru_v6_8 import LPI_DEFAULT_PCPU_CACHE_SIZE


class _Entry:
    __slots__ = ("key", "lpi", "usage")

    def __init__(self, key, lpi, usage):
        self.key, self.lpi, self.usage = key, lpi, usage


class UsageV2(CachePolicy):
    name = "usage-v2"
    scope = "vm"
    kernel = "v6.8-rc1 + 'Improvements to LPI injection' v2"

    def __init__(self, nr_vcpus):
        super().__init__(nr_vcpus)
        self.capacity = LPI_DEFAULT_PCPU_CACHE_SIZE * nr_vcpus
        self.order = []      # tail first, head last
        self.map = {}        # key -> _Entry (valid entries only)

    def lookup(self, db, device_id, event_id):
        e = self.map.get(self.key(db, device_id, event_id))
        if e is None:
            return None
        e.usage += 1
        return e.lpi

    def fill(self, db, device_id, event_id, lpi):
        key = self.key(db, device_id, event_id)
        self.last_victim = None
        if key in self.map:
            return MISS
        order = self.order
        usage = 0
        outcome = MISS
        if len(order) >= self.capacity:
            if self.capacity == 0:
                return MISS
            victim = None
            vi = -1
            for i in range(len(order) - 1, -1, -1):       # scan from the head
                e = order[i]
                if e.lpi is None:                        # an empty entry wins at once
                    victim, vi = e, i
                    break
                if e.usage > usage:
                    usage = e.usage
                if victim is None or e.usage <= victim.usage:
                    victim, vi = e, i
            del order[vi]
            if victim.lpi is None:
                outcome = RECYCLE
            else:
                del self.map[victim.key]
                self.last_victim = ((victim.key >> 32) & 0xFFFF_FFFF, victim.key & 0xFFFF_FFFF)
                outcome = EVICT
        e = _Entry(key, lpi, usage)
        order.append(e)
        self.map[key] = e
        return outcome

    def invalidate(self):
        for e in self.order:
            e.lpi = None
            e.key = None
        self.map.clear()

    def __len__(self):
        return len(self.map)

    def entries(self):
        return [(*self.decode_key(e.key), e.lpi.intid) for e in reversed(self.order)
                if e.lpi is not None]
