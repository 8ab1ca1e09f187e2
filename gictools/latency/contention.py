"""Closed-loop discrete-event simulation of concurrent MSI injectors.

Each injector (a selftest device thread) issues its next MSI when its previous
one completes. An injection walks its preset's path (gictools.latency.presets):
each step costs its `ns` (plus a list-walk cost for list caches) while holding
the locks it names. The resources a kernel developer would name:

- `Lock`: a spinlock (queued: FIFO hand-off, waiters spin on their CPU) or a
  mutex (kernel/locking/mutex.c: optimistic spinning while the owner runs,
  sleeping waiters woken with a wake-up latency, lock stealing by a running
  task, hand-off to a starving first waiter).
- `HostCpus`: the CPUs the injector threads run on; a thread gives its CPU up
  while it sleeps (synchronize_rcu(), a mutex wait list).
- `GracePeriod`: the duration of one synchronize_rcu() (HZ and normal or
  expedited RCU; see docs/latency-model.md).
- the target vCPU's queue section (irq_lock, request, kick) is a spinlock of
  scope "vcpu", one per target vCPU.

Interleaving is stochastic by default (`Interleaving(seed)`): the injectors
leave the start barrier spread over microseconds, step costs jitter, grace
periods are drawn. `Interleaving(None)` is the deterministic lock-step run
(every injector at t = 0, fixed costs): an adversarial schedule, the worst case
for list caches. Same seed, same run.

Two drivers share the engine:
- `Simulation` with a cache policy object (predict, compare_events): the cache
  outcome of each injection is decided by calling the policy at the simulated
  time of the lookup and fill steps.
- `simulate_events` (replay with --preset): outcomes are given (open loop with
  respect to the cache), time is closed loop.

Fast-forward: when every thread that can run is hitting steadily and the
others are parked (asleep in a grace period or on a mutex wait list), nothing
in the cache can change until the next wake-up or the first upcoming miss; the
hitting threads are then advanced at their measured rates to that horizon in
one step (`Simulation.fast_forwarded` counts the injections so placed).
"""

import heapq
import math
import random
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np

from gictools.errors import ConfigError
from gictools.model.cache import BYPASS, EVICT, HIT, MISS, RECYCLE, Outcome
from gictools.model.cache.keys import split_translation_key, translation_key, translation_keys

DOORBELL = 0x0801_0040  # the selftest's GITS_TRANSLATER (any value works)
OUTCOME_PATH = {o: o.path for o in Outcome}
_EVICTING = (EVICT, RECYCLE)
_NONE, _LOOKUP, _FILL = 0, 1, 2
_SCOPE_INDEX = {"vm": 0, "its": 1, "vcpu": 2}
PROGRESS_EVENTS = 50_000  # simulate_events reports progress this often
STEADY_WINDOW = 256  # consecutive hits per thread before its rate is trusted for fast-forward
STEADY_HALVES = 0.02  # and the rates of its window's two halves must agree this well
YOUNG_STREAK = 8  # a thread back from a wait joins a jump at the steady threads' pace


@dataclass(frozen=True)
class Interleaving:
    """What the real machine randomises. seed None: the deterministic lock-step run.

    start_spread_ns: the device threads leave pthread_barrier_wait() one futex wake-up
    after another (a few us each), so their first MSIs spread over tens of us.
    jitter: relative standard deviation of every step cost (cache-line transfers,
    interrupts, frequency changes): uniform, so bounded.
    """

    seed: int | None = 0
    start_spread_ns: float = 20_000.0
    jitter: float = 0.05

    @property
    def lockstep(self) -> bool:
        return self.seed is None


LOCKSTEP = Interleaving(None)


class GracePeriod:
    """Duration of one synchronize_rcu(), drawn per call.

    Normal RCU: the caller waits for a new grace period to start and for every CPU to
    report a quiescent state; both advance at scheduler ticks. Modelled as
    tick x (U(0,1) + 1 + Poisson(extra_ticks)): the phase to the next tick, one tick
    for the grace-period kthread's first quiescent-state scan, and extra force-quiescent
    scans for CPUs that did not report. Expedited RCU (rcupdate.rcu_expedited=1):
    IPIs to every CPU, expedited_ns x U(0.5, 1.5). Lock-step: the mean.
    """

    def __init__(self, rcu, rng):
        self.hz = rcu.hz
        self.expedited = rcu.expedited
        self.extra = rcu.extra_ticks
        self.exp_ns = rcu.expedited_ns
        self.tick = 1e9 / rcu.hz
        self.rng = rng

    @property
    def mean_ns(self) -> float:
        if self.expedited:
            return self.exp_ns
        return self.tick * (1.5 + self.extra)

    def draw(self) -> float:
        rng = self.rng
        if rng is None:
            return self.mean_ns
        if self.expedited:
            return self.exp_ns * (0.5 + rng.random())
        # Poisson(extra) by inversion; extra is small (about 1)
        k, p, u = 0, math.exp(-self.extra), rng.random()
        c = p
        while u > c and k < 50:
            k += 1
            p *= self.extra / k
            c += p
        return self.tick * (rng.random() + 1 + k)


class Lock:
    """One instance of a preset lock (per VM, per ITS or per target vCPU).

    spinlock: waiters spin in FIFO order (qspinlock); the lock passes to the first
    waiter, who pays handoff_ns (the lock and protected lines move to its CPU).
    mutex (kernel/locking/mutex.c, v4.10+): a contender spins while the owner runs
    (mutex_optimistic_spin; osq is FIFO), else sleeps on the FIFO wait list.
    mutex_unlock wakes the first sleeper (wake_ns later it runs) but leaves the lock
    free, so a running task can take it first (stealing); a woken first waiter that
    finds it taken sets MUTEX_FLAG_HANDOFF (__mutex_trylock_or_handoff) and the next
    unlock hands the lock straight to it (__mutex_handoff).
    """

    __slots__ = (
        "stat",
        "mutex",
        "handoff_ns",
        "wake_ns",
        "owner",
        "owner_running",
        "spinners",
        "sleepers",
        "handoff_to",
        "waking",
    )

    def __init__(self, stat, spec):
        self.stat = stat
        self.mutex = spec.kind == "mutex"
        self.handoff_ns = spec.handoff_ns
        self.wake_ns = spec.wake_ns
        self.owner = None
        self.owner_running = True
        self.spinners = deque()
        self.sleepers = deque()
        self.handoff_to = None
        self.waking = None


class Injector:
    """One device thread: its events (indices into the flat arrays) and where it is."""

    __slots__ = (
        "id",
        "events",
        "pos",
        "event",
        "path",
        "step",
        "held",
        "has_cpu",
        "t_block",
        "waiting",
        "wait",
        "asleep",
        "wake_at",
        "last_walk",
        "streak",
        "recent",
        "done",
    )

    def __init__(self, i, events):
        self.id = i
        self.events = events
        self.pos = 0
        self.event = -1
        self.path = ()
        self.step = 0
        self.held = []
        self.has_cpu = False
        self.t_block = 0.0
        self.waiting = None  # the Lock it queues on
        self.wait = 0.0
        self.asleep = False  # in a sleeping step (synchronize_rcu)
        self.wake_at = 0.0
        self.last_walk = -1
        self.streak = 0  # consecutive hits
        self.recent = deque(maxlen=STEADY_WINDOW)  # (t_issue, t_done, wait) of the last hits
        self.done = False


class HostCpus:
    """The host CPUs the injector threads share (first come, first served)."""

    def __init__(self, sim, n, limited):
        self.sim = sim
        self.free = n
        self.limited = limited
        self.queue = deque()
        self.wait_ns = 0.0

    def take(self, j, t) -> bool:
        if not self.limited or self.free > 0:
            self.free -= 1
            j.has_cpu = True
            return True
        j.t_block = t
        self.queue.append(j)
        return False

    def give(self, j, t):
        j.has_cpu = False
        self.free += 1
        if self.queue:
            w = self.queue.popleft()
            self.free -= 1
            w.has_cpu = True
            waited = t - w.t_block
            self.wait_ns += waited
            w.wait += waited
            self.sim.schedule(w, t)


class _ListModel:
    """Positions in a list cache, for the walk cost: a Fenwick tree over stamps.

    moves_on_hit (LRU): a key's stamp is its last use, so its position from the head
    is 1 + the number of keys used since (the LRU stack distance). Otherwise (usage-v2,
    entries linked at the head and never moved) the stamp is the insertion.
    """

    def __init__(self, capacity):
        self.n = capacity + 2
        self.tree = [0] * (self.n + 1)
        self.stamp = {}
        self.present = bytearray(self.n + 1)
        self.next = 1
        self.oldest = 1
        self.count = 0

    def _add(self, i, d):
        tree, n = self.tree, self.n
        while i <= n:
            tree[i] += d
            i += i & -i

    def _prefix(self, i):
        s, tree = 0, self.tree
        while i > 0:
            s += tree[i]
            i -= i & -i
        return s

    def position(self, key):
        s = self.stamp.get(key)
        if s is None:
            return None
        return self.count - self._prefix(s) + 1

    def touch(self, key):
        self.remove(key)
        if self.next > self.n:  # out of stamps: renumber in order
            self._renumber()
        s = self.next
        self.next += 1
        self.stamp[key] = s
        self.present[s] = 1
        self._add(s, 1)
        self.count += 1

    def remove(self, key):
        s = self.stamp.pop(key, None)
        if s is not None:
            self._add(s, -1)
            self.present[s] = 0
            self.count -= 1

    def remove_oldest(self):
        while self.oldest < self.next and not self.present[self.oldest]:
            self.oldest += 1
        if self.oldest >= self.next:
            return
        for k, s in self.stamp.items():
            if s == self.oldest:
                self.remove(k)
                return

    def _renumber(self):
        order = sorted(self.stamp.items(), key=lambda kv: kv[1])
        self.tree = [0] * (self.n + 1)
        self.present = bytearray(self.n + 1)
        self.stamp = {}
        self.count = 0
        self.next = self.oldest = 1
        for k, _ in order:
            self.touch(k)


class _Step:
    __slots__ = ("index", "ns", "locks", "walk", "action", "sleeps", "grace_period")

    def __init__(self, index, spec, locks):
        self.index = index
        self.ns = spec.ns
        self.locks = locks  # ((lock index, scope index), ...), outer first
        self.walk = spec.walk
        self.action = {"lookup": _LOOKUP, "fill": _FILL}.get(spec.action, _NONE)
        self.sleeps = spec.sleeps
        self.grace_period = spec.grace_period


class Simulation:
    """The engine. Events are given per injector as lists of indices into flat arrays.

    dev, ev, its, vcpu: per event; outcome: per event forced outcome code or None (then
    `policy` decides); keys: per event cache key for the walk model (None: no walk model).
    """

    def __init__(
        self,
        preset,
        per_injector,
        *,
        dev,
        ev,
        its,
        vcpu,
        outcome=None,
        policy=None,
        keys=None,
        host_cpus=None,
        vcpus_busy=0,
        interleaving=LOCKSTEP,
        fast_forward=True,
    ):
        self.p = preset
        self.dev, self.ev, self.its, self.vcpu = dev, ev, its, vcpu
        self.forced = outcome
        self.policy = policy
        self.keys = keys
        self.n = n = len(dev)
        ninj = len(per_injector)
        cpus = preset.host_cpus if host_cpus is None else int(host_cpus)
        if cpus < 1:
            raise ConfigError(f"host CPUs must be >= 1, got {cpus}")
        # vCPU threads that spin in the guest (the stress test's never WFI) time-share the
        # host with the injectors: injectors get their fair share of the CPUs
        if vcpus_busy and ninj + vcpus_busy > cpus:
            cpus = max(1, (cpus * ninj) // (ninj + vcpus_busy))
        self.cpus = cpus
        self.host = HostCpus(self, cpus, cpus < ninj)
        self.mix = interleaving
        self.rng = None if interleaving.lockstep else random.Random(interleaving.seed)
        self.grace = GracePeriod(preset.rcu, self.rng)
        self.fast_forward = fast_forward
        self.injectors = [
            Injector(i, lst if isinstance(lst, (list, range)) else list(lst))
            for i, lst in enumerate(per_injector)
        ]
        # the preset, compiled
        self.step_names = list(preset.steps)
        self.lock_names = list(preset.locks)
        self.lock_specs = [preset.locks[x] for x in self.lock_names]
        lidx = {s: i for i, s in enumerate(self.lock_names)}
        steps = {}
        for i, (name, s) in enumerate(preset.steps.items()):
            locks = tuple((lidx[lk], _SCOPE_INDEX[preset.locks[lk].scope]) for lk in s.locks)
            steps[name] = _Step(i, s, locks)
        self.paths = {o: tuple(steps[s] for s in seq) for o, seq in preset.paths.items()}
        self.hit_path = self.paths["hit"]
        self.miss_path = self.paths["miss"]
        self.bypass_path = self.paths.get("bypass", self.miss_path)
        self.outcome_path = {c: self.paths.get(o) for c, o in OUTCOME_PATH.items()}
        self.walk_s = preset.walk_per_entry_ns
        self.walk_m = preset.walk_remote_line_ns
        self.moves = preset.walk_moves_on_hit
        needs_walk = any(s.walk for s in preset.steps.values())
        self.list_model = _ListModel(n + 1) if (needs_walk and keys is not None) else None
        self.walks = 0  # list walks so far, by anyone (for the dirty-line count)
        self.no_cache = policy is not None and not policy.caches
        self.locks = {}  # (lock index, instance) -> Lock
        # results
        self.t_issue = np.zeros(n, dtype=np.float64)
        self.t_done = np.zeros(n, dtype=np.float64)
        self.wait = np.zeros(n, dtype=np.float64)
        self.out = np.zeros(n, dtype=np.int8)
        self.step_time = [0.0] * len(self.step_names)
        self.step_count = [0] * len(self.step_names)
        self.lock_wait = [0.0] * len(self.lock_names)
        self.lock_handoff = [0.0] * len(self.lock_names)
        self.completed = 0
        self.fast_forwarded = 0
        self.fast_forward_phases = 0
        self.ff_rejects = Counter()  # why fast-forward checks declined (diagnostics)
        self.now = 0.0
        self._heap = []
        self._seq = 0
        self._ff_countdown = ninj
        self._forced_runs = self._hit_runs() if outcome is not None else None
        self._keysets = None
        for j in self.injectors:
            if self._start(j, 0.0):
                t0 = 0.0 if self.rng is None else self.rng.random() * interleaving.start_spread_ns
                self.schedule(j, t0)

    # --- time ------------------------------------------------------------------------------
    def schedule(self, j, t):
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, j.id))

    def _cost(self, ns):
        rng = self.rng
        if rng is None or not ns:
            return ns
        return ns * (1.0 + self.mix.jitter * 1.7320508 * (2.0 * rng.random() - 1.0))

    def run(self, until_completed=None):
        """Simulate until every injector is done (True) or until_completed injections
        have completed (False: call run again to go on)."""
        heap, pop, inj = self._heap, heapq.heappop, self.injectors
        while heap:
            t, _, i = pop(heap)
            self.now = t
            self._advance(inj[i], t)
            if until_completed is not None and self.completed >= until_completed:
                return not heap
        return True

    # --- one injector ------------------------------------------------------------------------
    def _start(self, j, t) -> bool:
        """Begin the injector's next event; False when it has none left."""
        if j.pos >= len(j.events):
            j.done = True
            return False
        e = j.events[j.pos]
        j.pos += 1
        j.event = e
        j.step = 0
        j.wait = 0.0
        self.t_issue[e] = t
        if self.forced is not None:
            o = int(self.forced[e])
            pth = self.outcome_path.get(o)
            if pth is None:
                pth = self.miss_path if o != HIT else self.hit_path
            j.path = pth
            self.out[e] = o
        else:
            j.path = self.hit_path
        return True

    def _complete(self, j, t):
        e = j.event
        while j.held:
            self._release(j.held.pop(), t)
        self.t_done[e] = t
        self.wait[e] = j.wait
        self.completed += 1
        if self.out[e] == HIT:
            j.streak += 1
            j.recent.append((self.t_issue[e], t, j.wait))
        else:
            j.streak = 0
            j.recent.clear()
        self.host.give(j, t)
        if self.fast_forward:
            self._ff_countdown -= 1
            if self._ff_countdown <= 0:
                self._ff_countdown = 2 * len(self.injectors)
                self._try_fast_forward(t)

    def _advance(self, j, t):
        """Run the injector from t until it blocks, sleeps or starts a timed step."""
        while True:
            if not j.has_cpu:
                if not self.host.take(j, t):
                    return
                j.asleep = False
                for lk in j.held:  # its mutexes' owner runs again
                    lk.owner_running = True
            if j.step == len(j.path):
                self._complete(j, t)
                if not self._start(j, t):
                    return
                continue
            step = j.path[j.step]
            e = j.event
            need = [self._lock(li, sc, e) for li, sc in step.locks] if step.locks else ()
            if j.held:
                for lk in list(reversed(j.held)):
                    if lk not in need:
                        j.held.remove(lk)
                        self._release(lk, t)
            for lk in need:
                if lk.owner is not j and not self._acquire(lk, j, t):
                    return
            cost = self._execute(j, step, e)
            self.step_time[step.index] += cost
            self.step_count[step.index] += 1
            j.step += 1
            if step.sleeps:
                self._sleep(j, t, cost)
            self.schedule(j, t + cost)
            return

    def _sleep(self, j, t, cost):
        """A sleeping step (synchronize_rcu): the CPU goes; mutex spinners give up."""
        j.asleep = True
        j.wake_at = t + cost
        j.wait += cost
        for lk in j.held:
            if lk.mutex:
                lk.owner_running = False
                self._spinners_sleep(lk, t)
        self.host.give(j, t)

    # --- locks -----------------------------------------------------------------------------
    def _lock(self, li, scope, e):
        inst = 0 if scope == 0 else (int(self.its[e]) if scope == 1 else int(self.vcpu[e]))
        lk = self.locks.get((li, inst))
        if lk is None:
            lk = self.locks[(li, inst)] = Lock(li, self.lock_specs[li])
        return lk

    def _granted(self, lk, j, t, handoff):
        """j owns lk from t (+ handoff inside the section)."""
        lk.owner = j
        j.held.append(lk)
        j.waiting = None
        waited = t - j.t_block
        self.lock_wait[lk.stat] += waited
        self.lock_handoff[lk.stat] += handoff
        j.wait += waited + handoff

    def _acquire(self, lk, j, t) -> bool:
        """True when j holds lk now; else j is queued (spinning or asleep)."""
        if lk.owner is None and (lk.handoff_to is None or lk.handoff_to is j):
            if j.waiting is lk:  # a woken sleeper takes the free lock
                lk.sleepers.remove(j)
                if lk.waking is j:
                    lk.waking = None
                if lk.handoff_to is j:
                    lk.handoff_to = None
                self._granted(lk, j, t, 0.0)
            else:  # free, or stolen from a waking sleeper (mutex_trylock by a running task)
                lk.owner = j
                j.held.append(lk)
            lk.owner_running = True
            return True
        if j.waiting is lk:  # woken, but the lock was stolen: ask for the hand-off
            if lk.waking is j:
                lk.waking = None
            if lk.sleepers and lk.sleepers[0] is j:
                lk.handoff_to = j
            self.host.give(j, t)
            return False
        j.t_block = t
        j.waiting = lk
        if not lk.mutex:
            lk.spinners.append(j)
        elif lk.owner_running:
            lk.spinners.append(j)  # mutex_optimistic_spin: the owner is on a CPU
        else:
            lk.sleepers.append(j)
            self.host.give(j, t)
        return False

    def _release(self, lk, t):
        if not lk.mutex:
            if lk.spinners:
                w = lk.spinners.popleft()
                h = self._cost(lk.handoff_ns)
                self._granted(lk, w, t, h)
                self.schedule(w, t + h)
            else:
                lk.owner = None
            return
        if lk.handoff_to is not None:  # __mutex_handoff: straight to the starving waiter
            w = lk.handoff_to
            lk.handoff_to = None
            lk.sleepers.remove(w)
            self._granted(lk, w, t, 0.0)
            lk.owner_running = False
            self._spinners_sleep(lk, t)
            if lk.waking is w:  # already being woken: that wake-up picks the lock up
                lk.waking = None
            else:
                self.schedule(w, t + self._cost(lk.wake_ns))
        elif lk.spinners:
            w = lk.spinners.popleft()
            h = self._cost(lk.handoff_ns)
            self._granted(lk, w, t, h)
            lk.owner_running = True
            self.schedule(w, t + h)
            if lk.sleepers and lk.waking is None:  # woken anyway; will find it taken
                s = lk.waking = lk.sleepers[0]
                self.schedule(s, t + self._cost(lk.wake_ns))
        else:
            lk.owner = None
            if lk.sleepers and lk.waking is None:
                w = lk.waking = lk.sleepers[0]
                self.schedule(w, t + self._cost(lk.wake_ns))

    def _spinners_sleep(self, lk, t):
        """The owner stopped running: optimistic spinners go to the wait list."""
        while lk.spinners:
            w = lk.spinners.popleft()
            lk.sleepers.append(w)
            self.host.give(w, t)

    # --- the work of a step --------------------------------------------------------------------
    def _execute(self, j, step, e):
        """The step's cost; at lookup and fill steps, the cache decides the path."""
        if step.grace_period:
            return self.grace.draw()
        cost = self._cost(step.ns)
        if step.action == _LOOKUP:
            pos = self._lookup(j, e)
        elif step.action == _FILL:
            pos = self._fill(j, e)
        else:
            pos = 1
        if step.walk:
            cost += self._walk_cost(j, max(pos, 1))
        return cost

    def _lookup(self, j, e):
        lm = self.list_model
        k = self.keys[e] if self.keys is not None else None
        if self.forced is not None:
            if lm is None:
                return 1
            if self.out[e] == HIT:
                pos = lm.position(k) or 1
                if self.moves:
                    lm.touch(k)
                return pos
            return lm.count or 1
        if self.no_cache:
            j.path = self.bypass_path
            self.out[e] = BYPASS
            return 1
        lpi = self.policy.lookup(DOORBELL, int(self.dev[e]), int(self.ev[e]))
        pos = 1
        if lm is not None:
            pos = (lm.position(k) if lpi is not None else lm.count) or 1
        if lpi is not None:
            j.path = self.hit_path
            self.out[e] = HIT
            if lm is not None and self.moves:
                lm.touch(k)
        else:
            j.path = self.miss_path
            self.out[e] = MISS
        return pos

    def _fill(self, j, e):
        lm = self.list_model
        pos = lm.count if lm is not None else 1
        if self.forced is not None:
            if lm is not None:
                o = self.out[e]
                if o in _EVICTING:
                    lm.remove_oldest()
                if o in (MISS, EVICT, RECYCLE):
                    lm.touch(self.keys[e])
            return pos
        policy = self.policy
        o = policy.fill(DOORBELL, int(self.dev[e]), int(self.ev[e]), self._lpi_of(e))
        self.out[e] = o
        pth = self.outcome_path.get(o)
        if pth is None:
            raise ConfigError(
                f"preset {self.p.name!r} has no path for cache outcome "
                f"{OUTCOME_PATH[o]!r} (policy {policy.name})"
            )
        j.path = pth
        if lm is not None:
            vic = policy.last_victim
            if vic is not None:
                lm.remove(translation_key(*vic))
            k = self.keys[e]
            if o != MISS or self.moves or lm.position(k) is None:
                lm.touch(k)
        return pos

    def _walk_cost(self, j, pos):
        """pos entries passed; those another CPU dirtied since j's last walk cost more."""
        lw = j.last_walk
        others = self.walks - lw - 1 if lw >= 0 else self.walks
        j.last_walk = self.walks
        self.walks += 1
        if self.moves:  # LRU: every hit by another moved one entry to the head
            dirty = pos if others > pos else others
        else:  # usage counters bumped in place, anywhere in the list
            lm = self.list_model
            length = lm.count if lm is not None and lm.count else 1
            dirty = min(pos, others * pos / length)
        return pos * self.walk_s + dirty * self.walk_m

    def _lpi_of(self, e):
        # the policy only stores and returns it; an INTID-like int is enough
        return 8192 + (int(self.dev[e]) << 16 | int(self.ev[e]))

    # --- fast-forward ----------------------------------------------------------------------------
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
                idx = np.asarray(i.events, dtype=np.int64)
                u = np.unique(translation_keys(dev[idx], ev[idx])).tolist()
                self._keysets.append([split_translation_key(k) for k in u])
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
            lat = sum(r[1] - r[0] for r in j.recent) / len(j.recent)
            wt = sum(r[2] for r in j.recent) / len(j.recent)
            start = self.t_issue[j.event]
            issue = start + period * np.arange(n, dtype=np.float64)
            self.t_issue[evs] = issue
            self.t_done[evs] = issue + lat
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
                packed, cnt = np.unique(
                    translation_keys(self.dev[evs], self.ev[evs]), return_counts=True
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
                    lm.touch(self.keys[x])

    # --- results -------------------------------------------------------------------------------
    @property
    def cpu_wait(self):
        return self.host.wait_ns

    def breakdown(self):
        """Where the time went (simulated injections only): per step, per lock, CPU wait."""
        steps = {
            name: self.step_time[i] for i, name in enumerate(self.step_names) if self.step_count[i]
        }
        locks = {}
        for i, name in enumerate(self.lock_names):
            if self.lock_wait[i] + self.lock_handoff[i]:
                locks[name] = {"wait_ns": self.lock_wait[i], "handoff_ns": self.lock_handoff[i]}
        total = (
            sum(steps.values())
            + sum(v["wait_ns"] + v["handoff_ns"] for v in locks.values())
            + self.cpu_wait
        )
        return total, steps, locks

    def summary(self):
        lat = self.t_done - self.t_issue
        total, steps, locks = self.breakdown()
        span = float(self.t_done.max()) if self.n else 0.0
        return {
            "events": int(self.n),
            "elapsed_ns": span,
            "lpis_per_sec": (self.n / span * 1e9) if span > 0 else None,
            "hits": int((self.out == HIT).sum()),
            "evictions": int(np.isin(self.out, _EVICTING).sum()),
            "latency_p50_ns": float(np.percentile(lat, 50)) if self.n else None,
            "latency_p99_ns": float(np.percentile(lat, 99)) if self.n else None,
            "latency_max_ns": float(lat.max()) if self.n else None,
            "host_cpus_for_injectors": self.cpus,
            "fast_forwarded": self.fast_forwarded,
            "time_share": shares(total, steps, locks, self.cpu_wait),
        }


def shares(total, steps, locks, cpu_wait):
    """Fractions of all injector-time: per step (work), per lock (waiting + handoff), CPU."""
    if total <= 0:
        return {"steps": {}, "locks": {}, "cpu_wait": 0.0}
    st = {k: v / total for k, v in steps.items()}
    lk = {k: (v["wait_ns"] + v["handoff_ns"]) / total for k, v in locks.items()}
    return {"steps": st, "locks": lk, "cpu_wait": cpu_wait / total}


def per_injector_lists(injectors):
    """Event indices per injector id (in order of first appearance of sorted ids)."""
    inj = np.asarray(injectors)
    uniq, inv = np.unique(inj, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    bounds = np.searchsorted(inv[order], np.arange(len(uniq) + 1))
    return [order[bounds[j] : bounds[j + 1]].tolist() for j in range(len(uniq))]


def simulate_events(
    preset,
    injectors,
    outcomes,
    host_cpus=None,
    *,
    vcpus=None,
    its=None,
    keys=None,
    interleaving=LOCKSTEP,
    fast_forward=False,
    progress=None,
):
    """Per-event modelled latency for replay with --preset.

    injectors, outcomes: per event (in trace order) the injector id and the cache outcome
    code (gictools.model.cache: HIT, MISS, EVICT, BYPASS, MISS_NOFILL, RECYCLE), as the
    replay's model computed them in the recorded order: open loop with respect to the
    cache. Time is closed loop: each injector issues its next event (its next one in trace
    order) when its previous one completes; locks, host CPUs and RCU grace periods are
    simulated. Optional per-event arrays: vcpus (target vCPU, for the per-vCPU section;
    default all vCPU 0, which is what the as-measured stress test does), its (ITS index,
    for its_lock; default 0), keys (a cache key per event, e.g. device << 32 | event, for
    the list-walk cost of list caches; without them a hit walks one entry).
    interleaving: lock-step by default (a replay is reproducible); Interleaving(seed)
    for a stochastic run. fast_forward: runs of hits advance in one step at the thread's
    measured rate (exact per-event latencies lost inside them; summaries kept).
    progress(done, total) is called every PROGRESS_EVENTS simulated MSIs.

    Returns (latency_ns, wait_ns, summary): int64 arrays in event order; wait_ns is the part
    of the latency not spent executing steps (lock queueing, handoffs, CPU queueing, RCU
    grace periods); summary as Simulation.summary().
    """
    inj = np.asarray(injectors)
    outc = np.asarray(outcomes)
    n = len(inj)
    if len(outc) != n:
        raise ConfigError(f"{n} injectors but {len(outc)} outcomes")
    if n == 0:
        z = np.zeros(0, dtype=np.int64)
        return z, z.copy(), {"events": 0}
    zeros = np.zeros(n, dtype=np.int64)
    sim = Simulation(
        preset,
        per_injector_lists(inj),
        dev=zeros,
        ev=zeros,
        its=zeros if its is None else np.asarray(its),
        vcpu=zeros if vcpus is None else np.asarray(vcpus),
        outcome=outc,
        keys=None if keys is None else np.asarray(keys).tolist(),
        host_cpus=host_cpus,
        interleaving=interleaving,
        fast_forward=fast_forward,
    )
    if progress is None:
        sim.run()
    else:
        while not sim.run(until_completed=sim.completed + PROGRESS_EVENTS):
            progress(sim.completed, n)
        progress(n, n)
    lat = np.rint(sim.t_done - sim.t_issue).astype(np.int64)
    wait = np.minimum(np.rint(sim.wait).astype(np.int64), lat)
    return lat, wait, sim.summary()
