"""No translation cache: every injection takes the slow path (capacity 0 in vgic-its.c)."""

from gictools.model.cache.base import BYPASS, CachePolicy


class NoCache(CachePolicy):
    name = "none"
    scope = "vm"
    kernel = "any (cache disabled)"

    def lookup(self, db, device_id, event_id):
        return None

    def fill(self, db, device_id, event_id, lpi):
        self.last_victim = None
        return BYPASS

    def invalidate(self):
        pass

    def __len__(self):
        return 0

    def entries(self):
        return []
