"""The Feb 2024 series v2 cache (patches 12-16/23, never merged).

Entries are allocated lazily up to 16 x vCPUs and linked at the head; a hit
only increments the entry's usage counter (no move: the list is an rculist).
When full, the victim is found scanning from the head: the first invalidated
(empty) entry wins at once, else the smallest counter, ties to the tail. The
new entry starts at the largest counter seen in that scan. Unlinking a victim
waits for synchronize_rcu() (the cost the latency model charges). Invalidation
empties entries but keeps them linked, so the count does not drop.
"""

from operator import attrgetter

from gictools.model.cache.base import BlockOutcome, VmWidePolicy
from gictools.model.cache.keys import split_vm_key, translation_key
from gictools.model.cache.outcome import Outcome

_M64 = (1 << 64) - 1


class _Entry:
    __slots__ = ("key", "lpi", "usage")

    def __init__(self, key, lpi, usage):
        self.key, self.lpi, self.usage = key, lpi, usage


_usage = attrgetter("usage")


class UsageV2(VmWidePolicy):
    name = "usage-v2"
    kernel = "v6.8-rc1 + 'Improvements to LPI injection' v2"
    mainline = None  # never merged

    def __init__(self, nr_vcpus):
        super().__init__(nr_vcpus)
        self.order = []  # tail first, head last
        self.map = {}  # vm_key -> _Entry (valid entries only)
        self.empties = 0  # invalidated entries still linked

    def lookup(self, db, device_id, event_id):
        e = self.map.get(self.key(db, device_id, event_id))
        if e is None:
            return None
        e.usage += 1
        return e.lpi

    def add_hits(self, db, device_id, event_id, n):
        e = self.map.get(self.key(db, device_id, event_id))
        if e is not None:
            e.usage += n

    def fill(self, db, device_id, event_id, lpi):
        return self.fill_key(self.key(db, device_id, event_id), lpi)

    def fill_key(self, key, lpi):
        """fill() for a VM key (the block path's form)."""
        self.last_victim = None
        if key in self.map:
            return Outcome.MISS
        order = self.order
        usage = 0
        outcome = Outcome.MISS
        if len(order) >= self.capacity:
            if self.capacity == 0:
                return Outcome.MISS
            if self.empties:
                victim, usage = self._scan_from_head()
            else:
                # no empty entry: the scan sees every entry; min() returns the first
                # smallest from the tail, which is the "ties to the tail" rule
                victim = min(order, key=_usage)
                usage = max(order, key=_usage).usage
            order.remove(victim)
            if victim.lpi is None:
                self.empties -= 1
                outcome = Outcome.RECYCLE
            else:
                del self.map[victim.key]
                self.last_victim = split_vm_key(victim.key)[1:]
                outcome = Outcome.EVICT
        e = _Entry(key, lpi, usage)
        order.append(e)
        self.map[key] = e
        return outcome

    def _scan_from_head(self):
        """The kernel's scan: the first empty entry wins at once, else the least used."""
        usage = 0
        victim = None
        for e in reversed(self.order):
            if e.lpi is None:
                return e, usage
            if e.usage > usage:
                usage = e.usage
            if victim is None or e.usage <= victim.usage:
                victim = e
        return victim, usage

    def invalidate(self):
        for e in self.order:
            e.lpi = None
            e.key = None
        self.empties = len(self.order)
        self.map.clear()

    def __len__(self):
        return len(self.map)

    def entries(self):
        return [
            (*self.decode_key(e.key), e.lpi.intid)
            for e in reversed(self.order)
            if e.lpi is not None
        ]

    def resident(self):
        return ((k, e.lpi) for k, e in self.map.items())

    def _run_block_python(self, keys, block):
        import numpy as np

        get = self.map.get
        fill = self.fill_key
        lpis = block.lpis
        inverse = block.inverse.tolist()
        out = bytearray(len(inverse))
        vidx, vkey = [], []
        for i, j in enumerate(inverse):
            k = keys[j]
            e = get(k)
            if e is not None:
                e.usage += 1
                continue
            lpi = lpis[j]
            if lpi is None:
                out[i] = Outcome.MISS_NOFILL
                continue
            o = fill(k, lpi)
            out[i] = o
            if o == Outcome.EVICT:
                vd, ve = self.last_victim
                vidx.append(i)
                vkey.append(translation_key(vd, ve))
        return BlockOutcome.build(np.frombuffer(bytes(out), dtype=np.int8), vidx, vkey)

    def _run_block_jit(self, kern, keys, block):
        import numpy as np

        ids = {k: j for j, k in enumerate(keys)}
        all_keys = list(keys)
        all_lpis = list(block.lpis)
        ent_id, ent_use = [], []
        for e in self.order:  # tail first
            if e.lpi is None:
                j = -1
            else:
                j = ids.get(e.key)
                if j is None:
                    j = len(all_keys)
                    all_keys.append(e.key)
                    all_lpis.append(e.lpi)
            ent_id.append(j)
            ent_use.append(e.usage)
        fillable = np.fromiter(
            (x is not None for x in all_lpis), dtype=np.bool_, count=len(all_lpis)
        )
        n = len(block.inverse)
        out = np.empty(n, dtype=np.int8)
        victim = np.full(n, -1, dtype=np.int64)
        fid, fuse = kern.usage_block(
            block.inverse.astype(np.int64),
            fillable,
            np.asarray(ent_id, dtype=np.int64),
            np.asarray(ent_use, dtype=np.int64),
            self.capacity,
            out,
            victim,
        )
        order, m = [], {}
        empties = 0
        for j, u in zip(fid.tolist(), fuse.tolist()):
            if j < 0:
                order.append(_Entry(None, None, u))
                empties += 1
            else:
                e = _Entry(all_keys[j], all_lpis[j], u)
                order.append(e)
                m[e.key] = e
        self.order, self.map, self.empties = order, m, empties
        self.last_victim = None
        vidx = np.flatnonzero(victim >= 0)
        tkeys = np.fromiter((k & _M64 for k in all_keys), dtype=np.uint64, count=len(all_keys))
        vkeys = tkeys[victim[vidx]]
        return BlockOutcome.build(out, vidx, vkeys)
