"""The v5.4..v6.9 per-VM LRU list (vgic_its_check_cache / vgic_its_cache_translation).

One list shared by every ITS of the VM, 16 entries per vCPU online at init
(LPI_DEFAULT_PCPU_CACHE_SIZE), keyed on the exact doorbell address plus
DeviceID/EventID, hit moves to the head, fill reuses the tail. Every
invalidation empties the whole list (vgic_its_invalidate_cache, VM-wide).
"""

from collections import OrderedDict

from gictools.model.cache import native
from gictools.model.cache.base import BlockOutcome, NativeIds, VmWidePolicy
from gictools.model.cache.keys import split_vm_key
from gictools.model.cache.outcome import Outcome

_M64 = (1 << 64) - 1


class LruV68(VmWidePolicy):
    name = "lru-v6.8"
    kernel = "v5.4..v6.9"
    mainline = ((5, 4), (6, 10))
    moves_on_hit = (
        True  # vgic_its_check_cache: list_move(&cte->entry, &dist->lpi_translation_cache)
    )

    def __init__(self, nr_vcpus):
        super().__init__(nr_vcpus)
        self.map = OrderedDict()  # vm_key -> LPI; last = head (MRU)

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
            return Outcome.MISS
        outcome = Outcome.MISS
        if len(m) >= self.capacity:
            if self.capacity == 0:
                return Outcome.MISS
            vkey, _ = m.popitem(last=False)
            self.last_victim = split_vm_key(vkey)[1:]
            outcome = Outcome.EVICT
        m[key] = lpi
        return outcome

    def empty(self):
        self.map.clear()

    def __len__(self):
        return len(self.map)

    def entries(self):
        return [(*self.decode_key(k), lpi.intid) for k, lpi in reversed(self.map.items())]

    def resident(self):
        return self.map.items()

    def _run_block_python(self, keys, block):
        import numpy as np

        inverse = block.inverse.tolist()
        lpis = block.lpis
        od = self.map
        get, move, popitem = od.get, od.move_to_end, od.popitem
        cap = self.capacity
        out = bytearray(len(inverse))  # HIT == 0
        vidx, vkey = [], []
        size = len(od)
        for i, j in enumerate(inverse):
            k = keys[j]
            if get(k) is not None:
                move(k)
                continue
            lpi = lpis[j]
            if lpi is None:
                out[i] = Outcome.MISS_NOFILL
            elif size >= cap:
                if cap == 0:
                    out[i] = Outcome.MISS
                    continue
                vk, _ = popitem(False)
                vidx.append(i)
                vkey.append(vk & _M64)
                out[i] = Outcome.EVICT
                od[k] = lpi
            else:
                out[i] = Outcome.MISS
                od[k] = lpi
                size += 1
        return BlockOutcome.build(np.frombuffer(bytes(out), dtype=np.int8), vidx, vkey)

    def _run_block_native(self, keys, block):
        import numpy as np

        ids = NativeIds(keys, block)
        order = [ids.of(k, lpi) for k, lpi in self.map.items()]  # LRU first
        inverse, fillable, out, victim = ids.buffers()
        final = native.lru_block(
            inverse, fillable, np.asarray(order, dtype=np.int64), self.capacity, out, victim
        )
        od = self.map
        od.clear()
        for j in final.tolist():
            od[ids.keys[j]] = ids.lpis[j]
        return ids.outcome(out, victim)
