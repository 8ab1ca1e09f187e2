"""The v5.4..v6.9 per-VM LRU list (vgic_its_check_cache / vgic_its_cache_translation).

One list shared by every ITS of the VM, 16 entries per vCPU online at init
(LPI_DEFAULT_PCPU_CACHE_SIZE), keyed on the exact doorbell address plus
DeviceID/EventID, hit moves to the head, fill reuses the tail. Every
invalidation empties the whole list (vgic_its_invalidate_cache, VM-wide).
"""

from collections import OrderedDict

from gictools.model.cache.base import EVICT, MISS, CachePolicy

LPI_DEFAULT_PCPU_CACHE_SIZE = 16


class LruV68(CachePolicy):
    name = "lru-v6.8"
    scope = "vm"
    kernel = "v5.4..v6.9"

    def __init__(self, nr_vcpus):
        super().__init__(nr_vcpus)
        self.capacity = LPI_DEFAULT_PCPU_CACHE_SIZE * nr_vcpus
        self.map = OrderedDict()  # key(db, devid, evid) -> LPI; last = head (MRU)

    def lookup(self, db, device_id, event_id):
        # vgic_its_check_cache: only the exact GITS_TRANSLATER doorbell can match
        key = self.key(db, device_id, event_id)
        lpi = self.map.get(key)
        if lpi is not None:
            self.map.move_to_end(key)
        return lpi

    def fill(self, db, device_id, event_id, lpi):
        # vgic_its_cache_translation: the doorbell stored is always GITS_TRANSLATER.
        key = self.key(db, device_id, event_id)
        m = self.map
        self.last_victim = None
        if key in m:
            m.move_to_end(key)
            return MISS
        outcome = MISS
        if len(m) >= self.capacity:
            if self.capacity == 0:
                return MISS
            vkey, _ = m.popitem(last=False)
            self.last_victim = ((vkey >> 32) & 0xFFFF_FFFF, vkey & 0xFFFF_FFFF)
            outcome = EVICT
        m[key] = lpi
        return outcome

    def invalidate(self):
        self.map.clear()

    def __len__(self):
        return len(self.map)

    def entries(self):
        return [(*self.decode_key(k), lpi.intid) for k, lpi in reversed(self.map.items())]
