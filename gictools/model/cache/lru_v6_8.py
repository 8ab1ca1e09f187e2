"""The v5.4..v6.9 per-VM LRU list (vgic_its_check_cache / vgic_its_cache_translation).

One list shared by every ITS of the VM, 16 entries per vCPU online at init
(LPI_DEFAULT_PCPU_CACHE_SIZE), keyed on the exact doorbell address plus
DeviceID/EventID, hit moves to the head, fill reuses the tail. Every
invalidation empties the whole list (vgic_its_invalidate_cache, VM-wide).
"""

from collections import OrderedDict

from gictools.model.cache.base import BlockOutcome, VmWidePolicy
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

    def invalidate(self):
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

    def _run_block_jit(self, kern, keys, block):
        import numpy as np

        # ids: the block's keys first, then resident entries the block does not name
        ids = {k: j for j, k in enumerate(keys)}
        all_keys = list(keys)
        all_lpis = list(block.lpis)
        order = []
        for k, lpi in self.map.items():  # LRU first
            j = ids.get(k)
            if j is None:
                j = len(all_keys)
                all_keys.append(k)
                all_lpis.append(lpi)
            order.append(j)
        fillable = np.fromiter(
            (x is not None for x in all_lpis), dtype=np.bool_, count=len(all_lpis)
        )
        n = len(block.inverse)
        out = np.empty(n, dtype=np.int8)
        victim = np.full(n, -1, dtype=np.int64)
        final = kern.lru_block(
            block.inverse.astype(np.int64),
            fillable,
            np.asarray(order, dtype=np.int64),
            self.capacity,
            out,
            victim,
        )
        od = self.map
        od.clear()
        for j in final.tolist():
            od[all_keys[j]] = all_lpis[j]
        vidx = np.flatnonzero(victim >= 0)
        tkeys = np.fromiter((k & _M64 for k in all_keys), dtype=np.uint64, count=len(all_keys))
        vkeys = tkeys[victim[vidx]]
        return BlockOutcome.build(out, vidx, vkeys)
