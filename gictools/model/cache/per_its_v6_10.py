"""The v6.10+ per-ITS xarray cache (vgic_its_cache_key, vgic_its_check_cache,
vgic_its_cache_translation).

Keyed by vgic_its_cache_key = (DeviceID << 16) | EventID; any doorbell inside the
ITS frame resolves to the ITS; no capacity limit, no reordering; invalidation
empties only this ITS's map, except EnableLPIs 1->0, which empties every ITS's
(vgic_its_invalidate_all_caches).

Lookups reject IDs above 0xFFFF, but the fill does not: it stores under the packed
key, so a translation of (0, 0x10000) lands on (1, 0)'s slot and a later MSI to
(1, 0) hits it and delivers (0, 0x10000)'s LPI. Only a restored DTE with more than
16 EventID bits can map such an event; the 2026 restore check (9ce754ed8e7a,
KernelProfile.restore_checks_dte_size) makes that state unreachable, the cache code
itself never changed.
"""

from gictools.model.cache.base import BlockOutcome, CachePolicy
from gictools.model.cache.keys import its_key, split_its_key, split_translation_keys
from gictools.model.cache.outcome import Outcome
from gictools.regs import VITS_MAX_DEVID, VITS_MAX_EVENTID


class PerItsV610(CachePolicy):
    name = "per-its-v6.10"
    scope = "its"
    kernel = "v6.10+"
    mainline = ((6, 10), None)

    def __init__(self, nr_vcpus):
        super().__init__(nr_vcpus)
        self.map = {}  # its_key -> LPI

    def lookup(self, db, device_id, event_id):
        if device_id > VITS_MAX_DEVID or event_id > VITS_MAX_EVENTID:
            return None
        return self.map.get(its_key(device_id, event_id))

    def key_of(self, db, device_id, event_id):
        return its_key(device_id, event_id)  # unchecked, as the fill stores it

    def contains(self, db, device_id, event_id):
        if device_id > VITS_MAX_DEVID or event_id > VITS_MAX_EVENTID:
            return False
        return its_key(device_id, event_id) in self.map

    def fill(self, db, device_id, event_id, lpi):
        self.last_victim = None
        self.map[its_key(device_id, event_id)] = lpi  # xa_store replaces an aliased entry
        return Outcome.MISS

    def empty(self):
        self.map.clear()

    def __len__(self):
        return len(self.map)

    def entries(self):
        return [(None, *split_its_key(k), lpi.intid) for k, lpi in sorted(self.map.items())]

    def cached(self, its):
        return ((*split_its_key(k), lpi) for k, lpi in self.map.items())

    def run_block(self, its, block):
        # order does not matter: a key is a hit if cached at block start or filled by its
        # first event, except where a fill aliases (an ID above 0xFFFF): per-event path
        import numpy as np

        dev, ev = split_translation_keys(block.keys)
        lpis = block.lpis
        wide = np.flatnonzero((dev > VITS_MAX_DEVID) | (ev > VITS_MAX_EVENTID)).tolist()
        if any(lpis[j] is not None for j in wide):
            return None
        m = self.map
        nu = len(lpis)
        uniq_out = np.full(nu, Outcome.HIT, dtype=np.int8)
        first_miss = np.zeros(nu, dtype=bool)
        for j, (d, e) in enumerate(zip(dev.tolist(), ev.tolist())):
            if d <= VITS_MAX_DEVID and e <= VITS_MAX_EVENTID:
                k = its_key(d, e)
                if k in m:
                    continue
            lpi = lpis[j]
            if lpi is None:
                uniq_out[j] = Outcome.MISS_NOFILL
            else:
                first_miss[j] = True
                m[k] = lpi
        out = uniq_out[block.inverse]
        out[block.first[first_miss]] = Outcome.MISS
        return BlockOutcome.build(out, [], [])
