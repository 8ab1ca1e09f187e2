"""What the injectors contend for, as a kernel developer would name it.

- `Lock`: a spinlock (queued: FIFO hand-off, waiters spin on their CPU) or a
  mutex (kernel/locking/mutex.c: optimistic spinning while the owner runs,
  sleeping waiters woken with a wake-up latency, lock stealing by a running
  task, hand-off to a starving first waiter).
- `HostCpus`: the CPUs the injector threads run on; a thread gives its CPU up
  while it sleeps (synchronize_rcu(), a mutex wait list).
- `GracePeriod`: the duration of one synchronize_rcu() (HZ and normal or
  expedited RCU; see docs/latency-model.md).
- `ListModel`: positions in a list cache, for the list-walk cost.
- `Interleaving`: what the real machine randomises (or the lock-step run).
- `Injector`: one device thread and where it is.
"""

import math
from collections import deque
from dataclasses import dataclass

STEADY_WINDOW = 256  # consecutive hits per thread before its rate is trusted for fast-forward


@dataclass(frozen=True)
class Interleaving:
    """What the real machine randomises. seed None: the deterministic lock-step run.

    start_spread_ns: the device threads leave pthread_barrier_wait() one futex wake-up
    after another (a few us each), so their first MSIs spread over tens of us. How much
    every step cost jitters is the preset's `jitter` (a property of the machine modelled).
    """

    seed: int | None = 0
    start_spread_ns: float = 20_000.0

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


class ListModel:
    """Positions in a list cache, for the walk cost: a Fenwick tree over stamps.

    moves_on_hit (LRU): a key's stamp is its last use, so its position from the head
    is 1 + the number of keys used since (the LRU stack distance). Otherwise (usage-v2,
    entries linked at the head and never moved) the stamp is the insertion.
    """

    def __init__(self, capacity):
        """capacity: stamps before the first renumbering (it grows with the keys held)."""
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
        """Out of stamps: the keys get 1..count in order (positions are relative, so the
        same), in a tree at least 4x the keys present (so renumbering stays rare)."""
        order = sorted(self.stamp.items(), key=lambda kv: kv[1])
        self.n = max(self.n, 4 * len(order) + 2)
        self.tree = [0] * (self.n + 1)
        self.present = bytearray(self.n + 1)
        self.stamp = {}
        self.count = 0
        self.next = self.oldest = 1
        for k, _ in order:
            self.touch(k)
