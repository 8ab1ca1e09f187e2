"""The v6.10+ per-ITS xarray cache (vgic_its_cache_key, vgic_its_check_cache).

Keyed by (DeviceID << 16) | EventID after rejecting IDs above 0xFFFF; any
doorbell inside the ITS frame resolves to the ITS; no capacity limit, no
reordering; invalidation empties only this ITS's map, except EnableLPIs 1->0,
which empties every ITS's (vgic_its_invalidate_all_caches).
"""

from gictools.model.cache.base import MISS, CachePolicy
from gictools.regs import VITS_MAX_DEVID, VITS_MAX_EVENTID


class PerItsV610(CachePolicy):
    name = "per-its-v6.10"
    scope = "its"
    kernel = "v6.10+"

    def __init__(self, nr_vcpus):
        super().__init__(nr_vcpus)
        self.map = {}

    def lookup(self, db, device_id, event_id):
        if device_id > VITS_MAX_DEVID or event_id > VITS_MAX_EVENTID:
            return None
        return self.map.get(device_id << 16 | event_id)

    def fill(self, db, device_id, event_id, lpi):
        self.last_victim = None
        if device_id <= VITS_MAX_DEVID and event_id <= VITS_MAX_EVENTID:
            self.map[device_id << 16 | event_id] = lpi
        return MISS

    def invalidate(self):
        self.map.clear()

    def __len__(self):
        return len(self.map)

    def entries(self):
        return [(None, k >> 16, k & 0xFFFF, lpi.intid) for k, lpi in sorted(self.map.items())]
