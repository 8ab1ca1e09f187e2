"""Positions in a list whose entries are linked at its head: the one LRU stack.

Each entry carries a stamp (a clock value) from when it was last linked; a Fenwick tree
over stamps counts the live ones, so an entry's position from the head is 1 + the entries
linked since, in O(log n). For an LRU list (touch on every use, lru-v6.8) that is the LRU
stack distance: a cache of C entries hits exactly the uses at distance <= C (Mattson et
al., 1970), which gives `gictools mrc` its exact curve in one pass. For usage-v2's list
(entries linked once, never moved) it is where a walk finds the entry; the latency model
prices its list walks with it.

Keys are dense ints (0, 1, ...; an array of stamps, 8 bytes per key, grown on demand);
when the clock runs out of room the live stamps are renumbered 1..live in order.
numpy is imported by the renumbering only (the model imports no numpy).
"""

from array import array


class RecencyList:
    def __init__(self, room: int = 1 << 16, keys: int = 0):
        self.room = max(2, room)  # stamps before a renumbering
        self.tree = [0] * (self.room + 1)
        self.stamp = array("q", bytes(8 * keys))  # per key: its stamp, 0 = not in the list
        self.who = array("q", bytes(8 * (self.room + 1)))  # per stamp: key + 1, 0 = none
        self.next = 1  # the next stamp
        self.oldest = 1  # no live stamp below this
        self.count = 0  # entries in the list

    def position(self, key: int) -> int | None:
        """1 + the entries linked since key was (1 = the head); None if not in the list."""
        return self._position(key)

    def remove(self, key: int) -> None:
        self._remove(key)

    def _position(self, key: int) -> int | None:
        s = self.stamp[key] if key < len(self.stamp) else 0
        if not s:
            return None
        tree, i, before = self.tree, s, 0
        while i > 0:
            before += tree[i]
            i -= i & -i
        return self.count - before + 1

    def touch(self, key: int) -> int:
        """Link key at the head (unlinking it first); returns its position before, 0 if it
        was not in the list (for LRU: its stack distance, 0 = a cold miss)."""
        if key >= len(self.stamp):
            self.stamp.extend(bytes(8 * (key + 1 - len(self.stamp))))
        d = 0
        if self.stamp[key]:
            d = self._position(key) or 0
            self._remove(key)
        if self.next > self.room:
            self._renumber()
        s = self.next
        self.next += 1
        self.stamp[key] = s
        self.who[s] = key + 1
        tree, room, i = self.tree, self.room, s
        while i <= room:
            tree[i] += 1
            i += i & -i
        self.count += 1
        return d

    def _remove(self, key: int) -> None:
        s = self.stamp[key] if key < len(self.stamp) else 0
        if not s:
            return
        self.stamp[key] = 0
        self.who[s] = 0
        tree, room, i = self.tree, self.room, s
        while i <= room:
            tree[i] -= 1
            i += i & -i
        self.count -= 1

    def remove_oldest(self) -> None:
        """Unlink the entry linked longest ago (the tail)."""
        who = self.who
        while self.oldest < self.next and not who[self.oldest]:
            self.oldest += 1
        if self.oldest < self.next:
            self._remove(who[self.oldest] - 1)

    def _renumber(self) -> None:
        """Stamps 1..live in the same order; the room doubles if the live half-fill it."""
        import numpy as np

        times = np.frombuffer(self.stamp, dtype=np.int64).copy()
        used = np.flatnonzero(times)
        order = used[np.argsort(times[used], kind="stable")]
        live = len(order)
        self.room = max(self.room, 2 * live)
        times[order] = np.arange(1, live + 1)
        self.stamp = array("q", times.tobytes())
        who = np.zeros(self.room + 1, dtype=np.int64)
        who[1 : live + 1] = order + 1
        self.who = array("q", who.tobytes())
        i = np.arange(self.room + 1, dtype=np.int64)
        marks = np.clip(np.minimum(i, live) - (i - (i & -i)), 0, None)  # live in (i - low, i]
        marks[0] = 0
        self.tree = marks.tolist()
        self.next, self.oldest = live + 1, 1


class KeyedRecencyList(RecencyList):
    """A RecencyList of any hashable keys (a cache's own keys), each given a dense int on
    first sight: the list model of the latency simulation (room for a cache of capacity)."""

    def __init__(self, capacity: int):
        super().__init__(2 * (capacity + 2))
        self.ids: dict = {}

    def position(self, key) -> int | None:
        i = self.ids.get(key)
        return None if i is None else super().position(i)

    def touch(self, key) -> int:
        return super().touch(self.ids.setdefault(key, len(self.ids)))

    def remove(self, key) -> None:
        i = self.ids.get(key)
        if i is not None:
            super().remove(i)
