"""Fast-forward: when every thread that can run is hitting steadily and the others are
parked (asleep in a grace period or on a mutex wait list), nothing in the cache can
change until the next wake-up or the first upcoming miss; the hitting threads are then
advanced at their measured rates to that horizon in one step (`fast_forwarded` counts
the injections so placed). A leap (`leap`, asked by a driver that has measured every
thread steady) does the same for a steady state that mixes hits and misses, up to just
before the first thread would finish (`leaped` counts those). Methods the engine
(Simulation) mixes in."""

import heapq
import math
from collections import Counter, deque
from typing import Any

import numpy as np

from gictools.latency.resources import STEADY_WINDOW
from gictools.model.cache import HIT
from gictools.model.cache.keys import split_translation_key, translation_keys

DOORBELL = 0x0801_0040  # the selftest's GITS_TRANSLATER (any value works)
STEADY_HALVES = 0.02  # the rates of a thread's window's two halves must agree this well
YOUNG_STREAK = 8  # a thread back from a wait joins a jump at the steady threads' pace


LEAP_MIN_PERIODS = 16  # a leap moves every thread by at least this many periods of its keys
CHUNK = 1 << 20  # events handled at once in a jump's array work (bounds its temporaries)


def event_array(events, a, b):
    """events[a:b] of an injector (a range, list or array) as an int64 index array (a range
    without a Python loop)."""
    part = events[a:b]
    if isinstance(part, range):
        return np.arange(part.start, part.stop, part.step, dtype=np.int64)
    return np.asarray(part, dtype=np.int64)


def _chunks(events):
    """An injector's events (a range, list or array) as int64 index arrays of <= CHUNK."""
    for k in range(0, len(events), CHUNK):
        yield event_array(events, k, k + CHUNK)


class FastForward:
    """Mixed into Simulation: reads its injectors, policy, forced outcomes and results."""

    injectors: list
    policy: Any
    forced: np.ndarray | None
    period: int | None
    t_issue: np.ndarray
    t_done: np.ndarray
    wait: np.ndarray
    out: np.ndarray
    walks: int
    completed: int
    leaped: int
    leaps: int
    now: float
    epoch: float
    _heap: list

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
            evs = event_array(j.events, j.pos, j.pos + n)
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

    # --- leaps over a steady state ------------------------------------------------------------
    def can_leap(self) -> bool:
        """A leap needs a periodic workload and a cache whose state does not drift."""
        return (
            self.period is not None
            and self.forced is None
            and self.policy is not None
            and self.policy.stationary
        )

    def leap(self, rates, min_events) -> int:
        """Advance every running thread at its own steady rate to just before the first of
        them would finish, the cache, locks and queues kept as they are.

        rates: injector id -> (events per ns, events the rate was measured on), for every
        running thread, each measured steady by the driver. Fast-forward needs every thread
        hitting; a cache too small for the keys can still settle into a steady mix of hits
        and misses in which threads progress at different rates. They then finish at
        different times and the rest speed up, so no extrapolation to the end is right; a
        leap stops one window of the first finisher short of its end, and the simulation
        goes on through the change. Sound when the cache state does not drift
        (policy.stationary) and each thread skips whole periods of its keys, so its next key
        is the one the state expects. Each skipped injection repeats the one a whole number
        of periods before it in its thread's window (outcome, latency, wait, gap to the
        next; _repeat_window). Returns the injections placed; 0 (declined) when that is under
        min_events, when the slowest thread would make under LEAP_MIN_PERIODS periods, or
        when there is no room before the first finish."""
        p = self.period
        if p is None or not self.can_leap():
            return 0
        live = [j for j in self.injectors if not j.done]
        if not live or any(j.id not in rates for j in live):
            return 0
        plan, dt = [], math.inf
        for j in live:
            rate, seen = rates[j.id]
            w = min(int(seen), j.pos - 1) // p * p  # the window: whole periods, completed
            if w < p or not rate > 0:
                return 0
            dt = min(dt, (len(j.events) - j.pos - w) / rate)
            plan.append((j, rate, w))
        # whole periods, rounded down: a thread runs up to one period slow in a leap, so the
        # slowest must make LEAP_MIN_PERIODS of them (else that error is not small)
        if not dt > 0 or min(dt * rate for _, rate, _ in plan) < LEAP_MIN_PERIODS * p:
            return 0
        counts = [(j, int(dt * rate) // p * p, w) for j, rate, w in plan]
        total = sum(n for _, n, _ in counts)
        if total < min_events:
            return 0
        for j, n, w in counts:
            if n > 0:
                self._repeat_window(j, n, w, dt)
            self.t_issue[j.event] += dt
            j.t_block += dt
            if j.asleep:
                j.wake_at += dt
            j.recent = deque(((a + dt, b + dt, x) for a, b, x in j.recent), maxlen=STEADY_WINDOW)
            if j.last_walk >= 0:  # the walks others made since its last one stay as many
                j.last_walk += total
        self.walks += total
        self.completed += total
        self.leaped += total
        self.leaps += 1
        self._heap[:] = [(tt + dt, s, i) for tt, s, i in self._heap]  # order unchanged
        self.now += dt
        self.epoch = self.now
        return total

    def _repeat_window(self, j, n, w, dt):
        """Place j's next n events (after its in-flight one) over dt: the k-th repeats event
        (k + 1) mod w of its window of the last w completed ones, with that event's outcome,
        latency, wait and the gap to the MSI after it, the gaps scaled to fill dt (by about
        1 + period / n). A latency never outgrows its gap, so the MSIs of a thread keep
        disjoint slots as in the closed loop."""
        win = event_array(j.events, j.pos - 1 - w, j.pos - 1)
        start = float(self.t_issue[j.event])
        t_win = self.t_issue[win]
        gaps = np.diff(np.append(t_win, start))  # to the next issue (the last: in flight)
        lat = self.t_done[win] - t_win
        wait, out = self.wait[win], self.out[win]
        r = n % w
        scale = dt / ((n // w) * float(gaps.sum()) + float(gaps[1 : r + 1].sum()))
        before = 0.0
        for k in range(0, n, CHUNK):
            m = min(CHUNK, n - k)
            part = event_array(j.events, j.pos + k, j.pos + k + m)
            src = (np.arange(k, k + m, dtype=np.int64) + 1) % w
            g = gaps[src] * scale
            issue = start + before + (np.cumsum(g) - g)
            before += float(g.sum())
            took = np.minimum(lat[src], g)
            self.t_issue[part] = issue
            self.t_done[part] = issue + took
            self.wait[part] = np.minimum(wait[src], took)
            self.out[part] = out[src]
        j.pos += n
