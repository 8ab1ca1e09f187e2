"""The translation-cache interface every policy implements, and the outcome codes.

A policy caches (doorbell, DeviceID, EventID) -> LPI. Its contents are
semantically invisible (a hit delivers what the slow path would, because the
model invalidates wherever the kernel does); they change only statistics and
modelled latency.
"""

# Outcome of one injection's cache interaction (per-event `cache` column).
HIT = 0  # lookup hit
MISS = 1  # miss; translation filled into free capacity (or already present)
EVICT = 2  # miss; a valid entry was evicted to make room
BYPASS = 3  # the policy has no cache (none)
MISS_NOFILL = 4  # miss; slow path failed, nothing cached
RECYCLE = 5  # miss; an invalidated (empty) entry was unlinked to make room (usage-v2: RCU wait)

OUTCOME_NAMES = {
    HIT: "hit",
    MISS: "miss",
    EVICT: "miss-evict",
    BYPASS: "bypass",
    MISS_NOFILL: "miss",
    RECYCLE: "miss",
}
CACHE_COLUMN_VALUES = ("hit", "miss", "miss-evict", "bypass")

DOORBELL_OFFSET = 0x10040  # GITS_TRANSLATER


class CachePolicy:
    """Base: subclasses set name, scope ('vm' = one cache per VM, 'its' = one per ITS)."""

    name = "?"
    scope = "vm"
    kernel = ""

    def __init__(self, nr_vcpus: int):
        self.nr_vcpus = nr_vcpus
        self.last_victim = None  # (DeviceID, EventID) evicted by the last fill
        self.doorbells = {}  # GITS_TRANSLATER address -> ITS index (VM-scoped keys)

    def key(self, db: int, device_id: int, event_id: int):
        """One int per (doorbell, DeviceID, EventID); None for a doorbell no ITS has (never hits)."""
        idx = self.doorbells.get(db)
        if idx is None:
            return None
        return idx << 64 | device_id << 32 | event_id

    def decode_key(self, key: int):
        its_index = key >> 64
        for db, idx in self.doorbells.items():
            if idx == its_index:
                return db, (key >> 32) & 0xFFFF_FFFF, key & 0xFFFF_FFFF
        return None, (key >> 32) & 0xFFFF_FFFF, key & 0xFFFF_FFFF

    def lookup(self, db: int, device_id: int, event_id: int):
        raise NotImplementedError

    def fill(self, db: int, device_id: int, event_id: int, lpi) -> int:
        raise NotImplementedError

    def invalidate(self) -> None:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def entries(self):
        """(doorbell, DeviceID, EventID, INTID) of each valid entry: list order, head first, or key order."""
        raise NotImplementedError
