"""No translation cache: every injection takes the slow path (capacity 0 in vgic-its.c)."""

from gictools.model.cache.base import BlockOutcome, CachePolicy
from gictools.model.cache.outcome import Outcome


class NoCache(CachePolicy):
    name = "none"
    scope = "vm"
    kernel = "any (cache disabled)"
    caches = False

    def key_of(self, db, device_id, event_id):
        return None

    def contains(self, db, device_id, event_id):
        return False

    def lookup(self, db, device_id, event_id):
        return None

    def fill(self, db, device_id, event_id, lpi):
        self.last_victim = None
        return Outcome.BYPASS

    def empty(self):
        pass

    def __len__(self):
        return 0

    def entries(self):
        return []

    def cached(self, its):
        return ()

    def run_block(self, its, block):
        import numpy as np

        # every event bypasses, the failed slow paths included (vm.signal_msi says "bypass")
        return BlockOutcome.build(np.full(len(block.inverse), Outcome.BYPASS, np.int8), [], [])
