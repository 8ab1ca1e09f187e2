"""usage-v2's O(log n) fill gives the kernel scan's answers: the policy against a plain
list that scans from the head on every fill (series v2 patch 13/23, as the policy's
docstring states it), over random lookups, fills, invalidations, counted hits and
capacities, comparing every outcome, every victim and the whole list after each step."""

from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import examples

from gictools.model.cache import EVICT, MISS, RECYCLE
from gictools.model.cache.keys import translation_key
from gictools.model.cache.usage_v2 import UsageV2


class ListReference:
    """The list as the kernel keeps it: [key, lpi, usage] per entry, head first."""

    def __init__(self, capacity):
        self.capacity, self.entries = capacity, []

    def _valid(self, key):
        return next((x for x in self.entries if x[1] is not None and x[0] == key), None)

    def lookup(self, key, n=1):
        x = self._valid(key)
        if x is not None:
            x[2] += n
        return x

    def fill(self, key, lpi):
        """(outcome, evicted key or None)"""
        if self.lookup(key) is not None:  # the fill-time lookup counts a use
            return MISS, None
        usage, outcome, evicted = 0, MISS, None
        if len(self.entries) >= self.capacity:
            if self.capacity == 0:
                return MISS, None
            pick = None
            for i, x in enumerate(self.entries):  # from the head
                usage = max(usage, x[2])  # read before the empty check
                if x[1] is None:
                    pick = i
                    break
                if pick is None or x[2] <= self.entries[pick][2]:  # ties: toward the tail
                    pick = i
            v = self.entries.pop(pick)
            if v[1] is None:
                outcome = RECYCLE
            else:
                outcome, evicted = EVICT, v[0]
        self.entries.insert(0, [key, lpi, usage])
        return outcome, evicted

    def invalidate(self):
        for x in self.entries:
            x[0] = x[1] = None

    def linked(self):
        return [(k, u) for k, _, u in reversed(self.entries)]


_op = st.one_of(
    st.tuples(st.just("msi"), st.integers(0, 9)),
    st.tuples(st.just("msi"), st.integers(0, 3)),  # hot keys
    st.tuples(st.just("fill"), st.integers(0, 9)),  # a fill that may find its key cached
    st.tuples(st.just("hits"), st.integers(0, 9), st.integers(1, 5)),
    st.just(("invalidate",)),
)


@settings(max_examples=examples(5))
@given(capacity=st.integers(0, 6), ops=st.lists(_op, max_size=80))
def test_fast_fill_equals_the_kernel_scan(capacity, ops):
    pol = UsageV2(1)
    pol.capacity = capacity
    pol.doorbells[0] = 0
    ref = ListReference(capacity)
    lpis = [SimpleNamespace(intid=8192 + k) for k in range(10)]
    for op in ops:
        if op[0] == "invalidate":
            pol.invalidate()
            ref.invalidate()
        elif op[0] == "hits":
            pol.add_hits(0, 0, op[1], op[2])
            ref.lookup(translation_key(0, op[1]), op[2])
        else:
            k = op[1]
            hit = pol.lookup(0, 0, k) if op[0] == "msi" else None
            assert (hit is not None) == (op[0] == "msi" and ref.lookup(k) is not None)
            if hit is None:
                outcome, evicted = ref.fill(k, lpis[k])
                assert pol.fill(0, 0, k, lpis[k]) == outcome
                assert pol.last_victim == (None if evicted is None else (0, evicted))
        assert pol.linked() == ref.linked()
        assert len(pol) == sum(x[1] is not None for x in ref.entries)
