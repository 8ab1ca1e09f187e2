"""The translation-cache interface every policy implements.

A policy caches (doorbell, DeviceID, EventID) -> LPI. Its contents are
semantically invisible (a hit delivers what the slow path would, because the
model invalidates wherever the kernel does); they change only statistics and
modelled latency. A policy owns all of its behaviour: the per-event rules
(lookup, fill, empty), the block rules (run_block, same result as the
per-event rules event by event) and what "consistent with the slow path" means
for its entries (cached). A new policy is one module registered in POLICIES.
"""

from typing import TYPE_CHECKING, NamedTuple

from gictools.model.cache import native
from gictools.model.cache.keys import (
    block_vm_keys,
    split_translation_key,
    split_vm_key,
    translation_key,
    vm_key,
)
from gictools.model.cache.outcome import Outcome

if TYPE_CHECKING:  # numpy is imported where blocks run, not with the model
    import numpy as np


LPI_DEFAULT_PCPU_CACHE_SIZE = 16


class Block(NamedTuple):
    """One MSI run at one ITS, as the block path hands it to a policy.

    keys: sorted distinct translation keys (uint64); lpis: the slow path's LPI for each
    key (None where it fails); inverse: per event, the index of its key; first: per key,
    its first event. Precondition: every entry the ITS can hit is its key's LPI here
    (CachePolicy.consistent), as the block path checks first.
    """

    keys: "np.ndarray"
    lpis: list
    inverse: "np.ndarray"
    first: "np.ndarray"


class BlockOutcome(NamedTuple):
    """outcome: int8 Outcome code per event; victim_index: events that evicted a valid
    entry; victim_keys: that entry's translation key (uint64), in event order."""

    outcome: "np.ndarray"
    victim_index: "np.ndarray"
    victim_keys: "np.ndarray"

    @classmethod
    def build(cls, outcome, vidx, vkeys):
        import numpy as np

        return cls(
            np.asarray(outcome, dtype=np.int8),
            np.asarray(vidx, dtype=np.int64),
            np.asarray(vkeys, dtype=np.uint64) if len(vkeys) else np.zeros(0, np.uint64),
        )


class CachePolicy:
    """Base: a policy's facts are class attributes, asked by everything else (the latency
    model, the CLI's choices, each kernel's default cache), never restated there."""

    name = "?"
    scope = "vm"  # 'vm': one cache per VM (keys carry the ITS index); 'its': one per ITS
    kernel = ""  # the kernels it mirrors, in words (docs, listings)
    # (first, end): the mainline (X, Y) releases whose KVM has this cache, end exclusive
    # (None: still current); the cache of no mainline release (a series never merged, or
    # none) has None. Each kernel version's default cache is the one range holding it.
    mainline: tuple[tuple[int, int], tuple[int, int] | None] | None = None
    caches = True  # False: nothing is ever cached, every injection bypasses
    moves_on_hit = False  # a hit relinks its entry at the head (LRU): it dirties the list
    # Under a periodic workload at steady rates the state does not drift (a recency order, a
    # map that only fills): the latency model may leap over a steady stretch and keep the
    # state as it is (gictools.latency.fastforward.FastForward.leap).
    stationary = True

    def __init__(self, nr_vcpus: int):
        self.nr_vcpus = nr_vcpus
        self.last_victim = None  # (DeviceID, EventID) evicted by the last fill
        self.doorbells: dict[int, int] = {}  # GITS_TRANSLATER address -> ITS index (VM-scoped keys)
        self.invalidations = 0  # invalidate() calls: vgic_its_invalidate_cache calls

    def key(self, db: int, device_id: int, event_id: int):
        """VM key of (doorbell, DeviceID, EventID); None for a doorbell no ITS has (never hits)."""
        idx = self.doorbells.get(db)
        if idx is None:
            return None
        return vm_key(idx, device_id, event_id)

    def key_of(self, db: int, device_id: int, event_id: int):
        """The key a fill stores this translation under (None: no entry can hold it)."""
        return self.key(db, device_id, event_id)

    def contains(self, db: int, device_id: int, event_id: int) -> bool:
        """Would lookup() hit? Without a lookup's side effects (usage count, LRU order)."""
        raise NotImplementedError

    def add_hits(self, db: int, device_id: int, event_id: int, n: int) -> None:
        """The counters n hits of a cached translation would bump, without reordering (a
        policy that moves_on_hit is reordered by calling lookup() in order)."""

    def decode_key(self, key: int):
        its_index = key >> 64
        d, e = split_translation_key(key)
        for db, idx in self.doorbells.items():
            if idx == its_index:
                return db, d, e
        return None, d, e

    # --- per-event rules ---------------------------------------------------------------------
    def lookup(self, db: int, device_id: int, event_id: int):
        raise NotImplementedError

    def fill(self, db: int, device_id: int, event_id: int, lpi) -> Outcome:
        raise NotImplementedError

    def invalidate(self) -> None:
        """vgic_its_invalidate_cache: empty the cache and count the call, as the kernel's
        own count does (a call, not entries dropped: an empty cache's invalidation counts).
        Policies implement empty(); register() refuses one that overrides this."""
        self.invalidations += 1
        self.empty()

    def empty(self) -> None:
        """Drop every valid entry (the policy's own invalidation, uncounted)."""
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def entries(self):
        """(doorbell, DeviceID, EventID, INTID) of each valid entry: list order, head first, or key order."""
        raise NotImplementedError

    def cached(self, its):
        """(DeviceID, EventID, LPI) of every entry a lookup at this ITS can return."""
        raise NotImplementedError

    # --- block rules -------------------------------------------------------------------------
    def consistent(self, its) -> bool:
        """True if every entry this ITS can hit is what the slow path gives now.

        Only a KVM quirk breaks this (collection BASER invalidated without a cache
        invalidation); the block path then falls back to per-event injection.
        """
        resolve = its.resolve_lpi
        return all(resolve(d, e)[1] is lpi for d, e, lpi in self.cached(its))

    def run_block(self, its, block: Block) -> BlockOutcome | None:
        """Each event's outcome, applying the cache side effects per-event injection would;
        None (nothing changed) if the block must take the per-event path.

        This generic form calls lookup/fill per event; policies override it with faster
        forms that give the same result.
        """
        import numpy as np

        db = its.doorbell
        keys = block.keys.tolist()
        lpis = block.lpis
        out = bytearray(len(block.inverse))
        vidx: list[int] = []
        vkeys: list[int] = []
        lookup, fill = self.lookup, self.fill
        for i, j in enumerate(block.inverse.tolist()):
            d, e = split_translation_key(keys[j])
            if lookup(db, d, e) is not None:
                continue  # HIT == 0
            lpi = lpis[j]
            if lpi is None:
                out[i] = Outcome.MISS_NOFILL
                continue
            out[i] = fill(db, d, e, lpi)
            if self.last_victim is not None and out[i] == Outcome.EVICT:
                vidx.append(i)
                vkeys.append(translation_key(*self.last_victim))
        return BlockOutcome.build(np.frombuffer(bytes(out), dtype=np.int8), vidx, vkeys)


class VmWidePolicy(CachePolicy):
    """A cache shared by every ITS of the VM (keys carry the ITS index) whose block rules
    have a Python reference loop and a C loop (native.py) for all but small blocks."""

    scope = "vm"

    def __init__(self, nr_vcpus: int):
        super().__init__(nr_vcpus)
        # 16 entries per vCPU online at init (vgic_its_cache_translation's sizing)
        self.capacity = LPI_DEFAULT_PCPU_CACHE_SIZE * nr_vcpus

    map: dict  # vm_key -> the policy's entry, valid entries only

    def contains(self, db, device_id, event_id):
        return self.key(db, device_id, event_id) in self.map

    def resident(self):
        """(vm_key, LPI) of every valid entry."""
        raise NotImplementedError

    def cached(self, its):
        for k, lpi in self.resident():
            i, d, e = split_vm_key(k)
            if i == its.index:
                yield d, e, lpi

    def run_block(self, its, block, native_loop=None):
        """native_loop: None decides (native.use), True forces C where built, False Python."""
        keys = block_vm_keys(its.index, block.keys)
        if native.use(len(block.inverse), native_loop, len(self)):
            return self._run_block_native(keys, block)
        return self._run_block_python(keys, block)

    def _run_block_python(self, keys, block):
        raise NotImplementedError

    def _run_block_native(self, keys, block):
        raise NotImplementedError


class NativeIds:
    """The entries of one C block run (native.py) as small ints: the block's keys first (id =
    their index), then each resident entry the block does not name, as the policy names
    them (of()); then the buffers the loop writes, and its result as a BlockOutcome."""

    def __init__(self, keys, block):
        self._id = {k: j for j, k in enumerate(keys)}
        self.keys = list(keys)
        self.lpis = list(block.lpis)
        self.inverse = block.inverse

    def of(self, key, lpi) -> int:
        j = self._id.get(key)
        if j is None:
            j = self._id[key] = len(self.keys)
            self.keys.append(key)
            self.lpis.append(lpi)
        return j

    def buffers(self):
        """(inverse, fillable, out, victim) for native.lru_block / usage_block."""
        import numpy as np

        lpis, n = self.lpis, len(self.inverse)
        fillable = np.fromiter((x is not None for x in lpis), dtype=np.bool_, count=len(lpis))
        out = np.empty(n, dtype=np.int8)
        victim = np.full(n, -1, dtype=np.int64)
        return self.inverse.astype(np.int64), fillable, out, victim

    def outcome(self, out, victim) -> BlockOutcome:
        import numpy as np

        vidx = np.flatnonzero(victim >= 0)
        m64 = (1 << 64) - 1  # a VM key's translation key
        tkeys = np.fromiter((k & m64 for k in self.keys), dtype=np.uint64, count=len(self.keys))
        return BlockOutcome.build(out, vidx, tkeys[victim[vidx]])
