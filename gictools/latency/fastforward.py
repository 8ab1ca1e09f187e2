"""Fast-forward: when every thread that can run is hitting steadily and the others are
parked (asleep in a grace period or on a mutex wait list), nothing in the cache can
change until the next wake-up or the first upcoming miss; the hitting threads are then
advanced at their measured rates to that horizon in one step (`fast_forwarded` counts
the injections so placed). Methods the engine (Simulation) mixes in."""

import heapq
import math
from collections import Counter, deque

import numpy as np

from gictools.latency.resources import STEADY_WINDOW
from gictools.model.cache import HIT
from gictools.model.cache.keys import split_translation_key, translation_keys

DOORBELL = 0x0801_0040  # the selftest's GITS_TRANSLATER (any value works)
STEADY_HALVES = 0.02  # the rates of a thread's window's two halves must agree this well
YOUNG_STREAK = 8  # a thread back from a wait joins a jump at the steady threads' pace


CHUNK = 1 << 20  # events handled at once in a jump's array work (bounds its temporaries)


def _chunks(events):
    """An injector's events (a range, list or array) as int64 index arrays of <= CHUNK."""
    for k in range(0, len(events), CHUNK):
        part = events[k : k + CHUNK]
        if isinstance(part, range):
            yield np.arange(part.start, part.stop, part.step, dtype=np.int64)
        else:
            yield np.asarray(part, dtype=np.int64)


class FastForward:
    """Mixed into Simulation: reads its injectors, policy, forced outcomes and results."""

    def _hit_runs(self):
        """Per event: how many consecutive forced hits start there in its injector's order."""
        runs = np.zeros(self.n, dtype=np.int64)
        for j in self.injectors:
            c = 0
            for e in reversed(j.events):
                c = c + 1 if self.forced[e] == HIT else 0
                runs[e] = c
        return runs

    def _hits_ahead(self, j):
        """How many of j's next events are certain hits (the in-flight one is checked too)."""
        rest = len(j.events) - j.pos
        if self._forced_runs is not None:
            if self.out[j.event] != HIT:
                return -1
            return 0 if rest == 0 else min(rest, int(self._forced_runs[j.events[j.pos]]))
        policy, dev, ev = self.policy, self.dev, self.ev
        cached = policy.contains
        e = j.event
        if not cached(DOORBELL, int(dev[e]), int(ev[e])):
            return -1
        if self._keysets is None:
            self._keysets = []
            for i in self.injectors:
                u = set()
                for idx in _chunks(i.events):
                    u.update(np.unique(translation_keys(dev[idx], ev[idx])).tolist())
                self._keysets.append([split_translation_key(k) for k in sorted(u)])
        if all(cached(DOORBELL, d, v) for d, v in self._keysets[j.id]):
            return rest
        n = 0
        for x in j.events[j.pos :]:
            if not cached(DOORBELL, int(dev[x]), int(ev[x])):
                break
            n += 1
        return n

    def _try_fast_forward(self, t):
        """Advance every steadily hitting thread to the next moment anything can change."""
        if self.policy is not None and self.no_cache:
            self.ff_rejects["policy"] += 1
            return
        hitting, horizon = [], math.inf
        for j in self.injectors:
            if j.done:
                continue
            if j.asleep:
                horizon = min(horizon, j.wake_at)
                continue
            lk = j.waiting
            if lk is not None and lk.mutex and j in lk.sleepers and lk.waking is not j:
                if lk.handoff_to is j or lk.owner is None:
                    self.ff_rejects["about to run"] += 1
                    return  # about to run
                continue  # parked behind a sleeping owner
            if j.path is not self.hit_path or j.streak < YOUNG_STREAK:
                self.ff_rejects["not hitting"] += 1
                return
            hitting.append(j)
        if not hitting:
            self.ff_rejects["nobody hitting"] += 1
            return
        plan, young = [], []
        lag = 0.0
        for j in hitting:
            ahead = self._hits_ahead(j)
            if ahead < 0:
                self.ff_rejects["miss in flight"] += 1
                return
            if j.streak < STEADY_WINDOW:
                young.append((j, ahead))
                continue
            first, last = j.recent[0], j.recent[-1]
            span = last[1] - first[1]
            h = len(j.recent) // 2
            first_half = j.recent[h][1] - first[1]
            second_half = last[1] - j.recent[h][1]
            if span <= 0 or first_half <= 0:
                self.ff_rejects["unsteady rate"] += 1
                return
            if abs(second_half / first_half * h / (len(j.recent) - 1 - h) - 1) > STEADY_HALVES:
                self.ff_rejects["unsteady rate"] += 1
                return
            period = span / (len(j.recent) - 1)
            lag = max(lag, 3 * period)
            plan.append((j, period, ahead))
        if len(plan) < len(young):
            self.ff_rejects["mostly resumed threads"] += 1
            return
        if young:  # threads that just resumed run as fast as the steady ones around them
            typical = sorted(x[1] for x in plan)[len(plan) // 2]
            plan += [(j, typical, ahead) for j, ahead in young]
        if horizon < math.inf:
            horizon -= t + lag
        for _, period, ahead in plan:
            horizon = min(horizon, ahead * period)
        if not horizon > 0 or horizon == math.inf:
            self.ff_rejects["no horizon"] += 1
            return
        counts = [(j, period, int(horizon / period)) for j, period, _ in plan]
        total = sum(c for _, _, c in counts)
        if total < 2 * len(hitting) * YOUNG_STREAK:
            self.ff_rejects["too short"] += 1
            return
        self._jump(t, horizon, counts)

    def _jump(self, t, dt, counts):
        shifted = set()
        touched = Counter()
        order = []
        for j, period, n in counts:
            if n <= 0:
                continue
            ev_slice = j.events[j.pos : j.pos + n]
            evs = (
                np.arange(ev_slice.start, ev_slice.stop, ev_slice.step, dtype=np.int64)
                if isinstance(ev_slice, range)
                else np.asarray(ev_slice, dtype=np.int64)
            )
            # closed loop: the next MSI is issued when one completes, so a skipped MSI's
            # latency is at most the period (the window's mean can exceed it by rounding)
            lat = min(sum(r[1] - r[0] for r in j.recent) / len(j.recent), period)
            wt = sum(r[2] for r in j.recent) / len(j.recent)
            start = self.t_issue[j.event]
            for k in range(0, n, CHUNK):  # bounded temporaries: a jump can skip millions
                part = evs[k : k + CHUNK]
                issue = start + period * np.arange(k, k + len(part), dtype=np.float64)
                self.t_issue[part] = issue
                self.t_done[part] = issue + lat
            self.wait[evs] = wt
            self.out[evs] = HIT
            j.pos += n
            self.completed += n
            self.fast_forwarded += n
            shifted.add(j.id)
            self.t_issue[j.event] += dt
            j.t_block += dt
            j.recent = deque(((a + dt, b + dt, w) for a, b, w in j.recent), maxlen=STEADY_WINDOW)
            if self.forced is None:
                for part in _chunks(evs):
                    packed, cnt = np.unique(
                        translation_keys(self.dev[part], self.ev[part]), return_counts=True
                    )
                    for k, c in zip(packed.tolist(), cnt.tolist()):
                        touched[split_translation_key(k)] += c
                tail = evs[-min(n, 4096) :].tolist()
                order.append([(int(self.dev[x]), int(self.ev[x]), x) for x in tail])
            elif self.list_model is not None and self.moves:
                order.append([(0, 0, x) for x in evs[-min(n, 4096) :].tolist()])
            self.walks += n
            j.last_walk = self.walks - len(counts)
        self._bulk_hits(touched, order)
        self._heap[:] = [(tt + dt if i in shifted else tt, s, i) for tt, s, i in self._heap]
        heapq.heapify(self._heap)
        self.fast_forward_phases += 1

    def _bulk_hits(self, counts, order):
        """The cache side effects of the skipped hits: usage counters, LRU order."""
        policy, lm = self.policy, self.list_model
        if policy is not None:
            for (d, v), c in counts.items():
                policy.add_hits(DOORBELL, d, v, c)
        if not order or not self.moves:
            return
        # interleave the threads' last hits, oldest first, as they would have happened
        longest = max(len(o) for o in order)
        for k in range(longest):
            for o in order:
                i = k - (longest - len(o))
                if i < 0:
                    continue
                d, v, x = o[i]
                if policy is not None:
                    policy.lookup(DOORBELL, d, v)
                if lm is not None:
                    lm.touch(int(self.keys[x]))
