"""The Feb 2024 series v2 cache (patches 12-16/23, never merged).

Entries are allocated lazily up to 16 x vCPUs and linked at the head; a hit
only increments the entry's usage counter (no move: the list is an rculist).
When full, the victim is found scanning from the head: the first invalidated
(empty) entry wins at once, else the smallest counter, ties to the tail. The
new entry starts at the largest counter seen in that scan, the empty entry's
stale counter (kept through invalidation) included. The fill's own check for
an existing translation is a lookup, so finding one counts a use. Unlinking a victim
waits for synchronize_rcu() (the cost the latency model charges). Invalidation
empties entries but keeps them linked, so the count does not drop.
"""

import heapq

from gictools.model.cache import native
from gictools.model.cache.base import BlockOutcome, NativeIds, VmWidePolicy
from gictools.model.cache.keys import split_vm_key, translation_key
from gictools.model.cache.outcome import Outcome


class _Entry:
    __slots__ = ("key", "lpi", "usage")

    def __init__(self, key, lpi, usage):
        self.key, self.lpi, self.usage = key, lpi, usage


class UsageV2(VmWidePolicy):
    """The kernel's list, kept so that a fill costs O(log n) instead of a scan (mrc runs it at
    a million entries). Entries never move and only the least used one or an invalidation
    removes a valid entry, so the list is always: the empty entries (stale counters, `stale`),
    then the valid ones in `map`'s insertion order, tail first. The scan's answers follow:
    - with an empty entry, the first from the head is the newest empty one, after every
      valid entry: the new counter is max(top, its stale counter);
    - else the victim is the least used, ties to the tail (the oldest): the top of a heap of
      (usage, sequence) whose keys may lag (counters only grow, so a lagging key is a lower
      bound: it is refreshed when it reaches the top); the new counter is top;
    - top, the largest valid counter, only grows until an invalidation: the evicted entry is
      the least used, and its replacement starts at top.
    tests/model/test_usage_v2.py checks all of this against a plain list and the scan.
    """

    name = "usage-v2"
    stationary = False  # its usage counters grow with every hit: a later state is not this one
    kernel = "v6.8-rc1 + 'Improvements to LPI injection' v2"
    mainline = None  # never merged

    def __init__(self, nr_vcpus):
        super().__init__(nr_vcpus)
        self.map = {}  # vm_key -> _Entry: the valid entries, tail first
        self.stale = []  # the empty entries' counters, tail first (all below the valid ones)
        self.top = 0  # the largest counter of a valid entry (0: none)
        self._heap = []  # (usage, seq, _Entry) per valid entry; usage may lag the entry's
        self._seq = 0

    def _hit(self, e, n=1):
        u = e.usage = e.usage + n
        if u > self.top:
            self.top = u

    def lookup(self, db, device_id, event_id):
        e = self.map.get(self.key(db, device_id, event_id))
        if e is None:
            return None
        self._hit(e)
        return e.lpi

    def add_hits(self, db, device_id, event_id, n):
        e = self.map.get(self.key(db, device_id, event_id))
        if e is not None:
            self._hit(e, n)

    def fill(self, db, device_id, event_id, lpi):
        return self.fill_key(self.key(db, device_id, event_id), lpi)

    def fill_key(self, key, lpi):
        """fill() for a VM key (the block path's form)."""
        self.last_victim = None
        e = self.map.get(key)
        if e is not None:  # the fill-time lookup is a hit: it counts a use
            self._hit(e)
            return Outcome.MISS
        usage = 0
        outcome = Outcome.MISS
        if len(self.map) + len(self.stale) >= self.capacity:
            if self.capacity == 0:
                return Outcome.MISS
            if self.stale:  # the scan passes every valid entry, then reads the empty one
                usage = max(self.top, self.stale.pop())
                outcome = Outcome.RECYCLE
            else:
                victim = self._least_used()
                usage = self.top
                del self.map[victim.key]
                self.last_victim = split_vm_key(victim.key)[1:]
                outcome = Outcome.EVICT
        self._link(key, lpi, usage)
        return outcome

    def _least_used(self):
        """Pop the least used valid entry, ties to the tail (smallest sequence)."""
        heap = self._heap
        while True:
            u, s, e = heap[0]
            if u == e.usage:
                heapq.heappop(heap)
                return e
            heapq.heapreplace(heap, (e.usage, s, e))  # lagging key: refresh, look again

    def _link(self, key, lpi, usage):
        e = _Entry(key, lpi, usage)
        self.map[key] = e
        self._seq += 1
        heapq.heappush(self._heap, (usage, self._seq, e))
        if usage > self.top:
            self.top = usage

    def empty(self):
        self.stale.extend(e.usage for e in self.map.values())
        self.map.clear()
        self._heap.clear()
        self.top = 0

    def __len__(self):
        return len(self.map)

    def entries(self):
        return [(*self.decode_key(k), e.lpi.intid) for k, e in reversed(self.map.items())]

    def linked(self):
        """(vm_key, usage) of every linked entry, tail first; key None: an empty entry."""
        return [(None, u) for u in self.stale] + [(k, e.usage) for k, e in self.map.items()]

    def _relink(self, linked):
        """Rebuild from (vm_key, LPI, usage), tail first (key None: an empty entry)."""
        self.map, self.stale, self._heap, self.top = {}, [], [], 0
        for k, lpi, u in linked:
            if k is None:
                if self.map:
                    raise ValueError("an empty entry above a valid one")
                self.stale.append(u)
            else:
                self._link(k, lpi, u)

    def resident(self):
        return ((k, e.lpi) for k, e in self.map.items())

    def _run_block_python(self, keys, block):
        import numpy as np

        get = self.map.get
        fill, hit = self.fill_key, self._hit
        lpis = block.lpis
        inverse = block.inverse.tolist()
        out = bytearray(len(inverse))
        vidx, vkey = [], []
        for i, j in enumerate(inverse):
            k = keys[j]
            e = get(k)
            if e is not None:
                hit(e)
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

    def _run_block_native(self, keys, block):
        import numpy as np

        ids = NativeIds(keys, block)
        ent_id, ent_use = [], []
        for k, u in self.linked():  # tail first
            ent_id.append(-1 if k is None else ids.of(k, self.map[k].lpi))
            ent_use.append(u)
        inverse, fillable, out, victim = ids.buffers()
        fid, fuse = native.usage_block(
            inverse,
            fillable,
            np.asarray(ent_id, dtype=np.int64),
            np.asarray(ent_use, dtype=np.int64),
            self.capacity,
            out,
            victim,
        )
        self._relink(
            (None, None, u) if j < 0 else (ids.keys[j], ids.lpis[j], u)
            for j, u in zip(fid.tolist(), fuse.tolist())
        )
        self.last_victim = None
        return ids.outcome(out, victim)
