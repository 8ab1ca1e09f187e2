"""Closed-loop discrete-event simulation of concurrent MSI injectors: the engine.

Each injector (a selftest device thread) issues its next MSI when its previous
one completes. An injection walks its preset's path (gictools.latency.presets):
each step costs its `ns` (plus a list-walk cost for list caches) while holding
the locks it names (gictools.latency.resources; lock queueing in
gictools.latency.locks). The target vCPU's queue section (irq_lock, request,
kick) is a spinlock of scope "vcpu", one per target vCPU.

Interleaving is stochastic by default (`Interleaving(seed)`): the injectors
leave the start barrier spread over microseconds, step costs jitter, grace
periods are drawn. `Interleaving(None)` is the deterministic lock-step run
(every injector at t = 0, fixed costs): an adversarial schedule, the worst case
for list caches. Same seed, same run.

Two drivers share the engine:
- `Simulation` with a cache policy object (predict, compare_events): the cache
  outcome of each injection is decided by calling the policy at the simulated
  time of the lookup and fill steps.
- `simulate_events` (gictools.latency.events; replay with --preset): outcomes are
  given (open loop with respect to the cache), time is closed loop.

Runs of hits fast-forward, and a driver may leap over a steady stretch
(gictools.latency.fastforward).
"""

import heapq
import random
from collections import Counter
from dataclasses import dataclass

import numpy as np

from gictools.errors import ConfigError
from gictools.latency.fastforward import DOORBELL, FastForward
from gictools.latency.locks import LockQueues
from gictools.latency.resources import (
    LOCKSTEP,
    GracePeriod,
    HostCpus,
    Injector,
    Interleaving,
    ListModel,
)
from gictools.model.cache import BYPASS, EVICT, HIT, MISS, RECYCLE, Outcome
from gictools.model.cache.keys import translation_key

OUTCOME_PATH = {o: o.path for o in Outcome}
_EVICTING = (EVICT, RECYCLE)
_NONE, _LOOKUP, _FILL = 0, 1, 2
_SCOPE_INDEX = {"vm": 0, "its": 1, "vcpu": 2}
LIST_STAMPS = 1 << 12  # the list model's first tree (it grows with the keys it holds)


@dataclass
class Injections:
    """What is simulated: per injector, its events in issue order (indices into the flat
    per-event arrays dev, ev, its, vcpu). keys: per event cache key for the list-walk model
    (None: no walk model); outcome: per event forced outcome code (None: the policy
    decides); period: see below."""

    per_injector: list
    dev: np.ndarray
    ev: np.ndarray
    its: np.ndarray
    vcpu: np.ndarray
    keys: np.ndarray | None = None  # uint64 (8 B an event; a list of ints takes ~40)
    outcome: np.ndarray | None = None
    # every injector's key sequence repeats with this period (the selftest's -e): a leap
    # (FastForward.leap) skips whole periods; None: the workload has no period, no leap
    period: int | None = None


@dataclass(frozen=True)
class RunOptions:
    """host_cpus: the host's CPUs (None: the preset's); vcpus_busy: vCPU threads spinning
    in the guest that share them; fast_forward: runs of hits advance in one step."""

    host_cpus: int | None = None
    vcpus_busy: int = 0
    interleaving: Interleaving = LOCKSTEP
    fast_forward: bool = True
    acked: bool = False  # the guest takes and EOIs its LPIs (selftest 2025): see VcpuLoop


class VcpuLoop:
    """The target vCPUs' own loops (host profile `flush_ns`, `nr_lr`, `handoff_ns`).

    Each kick makes the target vCPU exit and rerun vgic_flush_lr_state: it walks its
    pending LPIs under their irq_locks and, above nr_lr of them, sorts them first
    (vgic_sort_ap_list). While it does, the injectors' atomics on its lines wait. With
    every injector kicking, one flush passes between two turns of each injector at the
    target, so each injection carries flush_ns x flush_work(pending) / injectors of that
    target. Selftest 2024: the guest never takes an LPI (IRQs masked), every injected LPI
    stays pending. Selftest 2025 (acked): the guest takes and EOIs them, so about one per
    injector is pending, and a re-injection queues the LPI again under the target's
    ap_list_lock (vgic_queue_irq_unlock: one hand-off of the line from the vCPU)."""

    def __init__(self, host, vcpu, per_injector, acked):
        self.host = host
        self.acked = acked
        self.pending: dict = {}  # target vCPU -> set of its pending LPIs
        self.active: Counter = Counter()  # target vCPU -> injectors not done
        self.targets = []  # per injector: the vCPUs its events target
        for events in per_injector:
            idx = np.asarray(events, dtype=np.int64)
            tv = np.unique(vcpu[idx]).tolist() if len(idx) else []
            self.targets.append(tv)
            self.active.update(tv)

    def done(self, injector_id):
        self.active.subtract(self.targets[injector_id])

    def share(self, v, lpi) -> float:
        """ns this injection waits for the target's flush (and, acked, re-queues)."""
        h = self.host
        pend = self.pending.get(v)
        if pend is None:
            pend = self.pending[v] = set()
        pend.add(lpi)
        m = max(self.active[v], 1)
        n = min(len(pend), m) if self.acked else len(pend)
        extra = h.flush_ns * h.flush_work(n) / m if h.flush_ns else 0.0
        return extra + (h.handoff_ns if self.acked else 0.0)


class _Step:
    __slots__ = ("index", "ns", "locks", "walk", "action", "sleeps", "grace_period", "flush")

    def __init__(self, index, spec, locks):
        self.index = index
        self.ns = spec.ns
        self.locks = locks  # ((lock index, scope index), ...), outer first
        self.walk = spec.walk
        self.action = {"lookup": _LOOKUP, "fill": _FILL}.get(spec.action, _NONE)
        self.sleeps = spec.sleeps
        self.grace_period = spec.grace_period
        self.flush = spec.flush


class Simulation(LockQueues, FastForward):
    """The engine: `work` (Injections) under `preset`, the cache outcome forced by
    work.outcome or decided by `policy` (a gictools.model.cache policy object)."""

    def __init__(self, preset, work: Injections, policy=None, options: RunOptions = RunOptions()):
        self.p = preset
        self.dev, self.ev, self.its, self.vcpu = work.dev, work.ev, work.its, work.vcpu
        self.forced = work.outcome
        self.policy = policy
        self.period = work.period
        self.keys = None if work.keys is None else np.asarray(work.keys, dtype=np.uint64)
        self.n = n = len(work.dev)
        self._host(preset, len(work.per_injector), options)
        self.injectors = [
            Injector(i, lst if isinstance(lst, (list, range)) else list(lst))
            for i, lst in enumerate(work.per_injector)
        ]
        self._compile(preset)
        host = getattr(preset, "host", None)
        uses_loop = any(s.flush for s in preset.steps.values())
        self.vcpu_loop = (
            VcpuLoop(host, self.vcpu, self.injectors_events(work), options.acked)
            if host is not None and uses_loop and (host.flush_ns or options.acked)
            else None
        )
        self.walk_s = preset.walk_per_entry_ns
        self.walk_m = preset.walk_remote_line_ns
        self.moves = preset.walk_moves_on_hit
        needs_walk = any(s.walk for s in preset.steps.values())
        walked = needs_walk and self.keys is not None
        self.list_model = ListModel(min(n + 1, LIST_STAMPS)) if walked else None
        self.walks = 0  # list walks so far, by anyone (for the dirty-line count)
        self.no_cache = policy is not None and not policy.caches
        self.locks = {}  # (lock index, instance) -> Lock (typed in LockQueues)
        self._results(n)
        self._ff_countdown = len(self.injectors)
        self._ff_due = False
        self._forced_runs = self._hit_runs() if self.forced is not None else None
        self._keysets = None
        for j in self.injectors:
            if self._start(j, 0.0):
                t0 = 0.0 if self.rng is None else self.rng.random() * self.mix.start_spread_ns
                self.t_issue[j.event] = t0  # issued when it leaves the barrier, not at 0
                self.schedule(j, t0)

    @staticmethod
    def injectors_events(work):
        return work.per_injector

    def _host(self, preset, ninj, options):
        host_cpus, vcpus_busy = options.host_cpus, options.vcpus_busy
        cpus = preset.host_cpus if host_cpus is None else int(host_cpus)
        if cpus is None:  # unlimited: a CPU for every injector
            cpus = ninj
        elif cpus < 1:
            raise ConfigError(f"host CPUs must be >= 1, got {cpus}")
        # vCPU threads that spin in the guest (the stress test's never WFI) time-share the
        # host with the injectors: injectors get their fair share of the CPUs
        elif vcpus_busy and ninj + vcpus_busy > cpus:
            cpus = max(1, (cpus * ninj) // (ninj + vcpus_busy))
        self.cpus = cpus
        self.host = HostCpus(self, cpus, cpus < ninj)
        self.jitter = preset.jitter
        self.mix = options.interleaving
        self.rng = None if self.mix.lockstep else random.Random(self.mix.seed)
        self.grace = GracePeriod(preset.rcu, self.rng)
        self.fast_forward = options.fast_forward

    def _compile(self, preset):
        """The preset's steps and paths as objects the loop walks."""
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

    def _results(self, n):
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
        self.leaped = 0  # injections placed by leaps (FastForward.leap)
        self.leaps = 0
        self.epoch = 0.0  # end of the last leap: steadiness is measured after it
        self.ff_rejects = Counter()  # why fast-forward checks declined (diagnostics)
        self.now = 0.0
        self._heap = []
        self._seq = 0

    # --- time ------------------------------------------------------------------------------
    def schedule(self, j, t):
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, j.id))

    def _cost(self, ns):
        rng = self.rng
        if rng is None or not ns:
            return ns
        return ns * (1.0 + self.jitter * 1.7320508 * (2.0 * rng.random() - 1.0))

    def run(self, until_completed=None):
        """Simulate until every injector is done (True) or until_completed injections
        have completed (False: call run again to go on)."""
        heap, pop, inj = self._heap, heapq.heappop, self.injectors
        while heap:
            t, _, i = pop(heap)
            self.now = t
            self._advance(inj[i], t)
            if self._ff_due:
                # only here, between two events, is every thread where a jump expects it:
                # in flight (scheduled), queued or asleep. A check from inside _complete saw
                # the completing thread between two MSIs: its finished MSI was moved by the
                # jump and its next one started at the old time (latency ~ the whole run).
                self._ff_due = False
                self._try_fast_forward(t)
            if until_completed is not None and self.completed >= until_completed:
                return not heap
        return True

    # --- one injector ------------------------------------------------------------------------
    def _start(self, j, t) -> bool:
        """Begin the injector's next event; False when it has none left."""
        if j.pos >= len(j.events):
            if not j.done and self.vcpu_loop is not None:
                self.vcpu_loop.done(j.id)
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
                self._ff_due = True

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
        if step.flush and self.vcpu_loop is not None:
            lpi = int(self.its[e]) << 48 | int(self.dev[e]) << 16 | int(self.ev[e])
            cost += self._cost(self.vcpu_loop.share(int(self.vcpu[e]), lpi))
        return cost

    def _lookup(self, j, e):
        lm = self.list_model
        k = int(self.keys[e]) if self.keys is not None else None
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
                    lm.touch(int(self.keys[e]))
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
            k = int(self.keys[e])
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

    def time_spent(self) -> dict:
        """Injector-time (ns) by where it went: steps (work), locks (waiting + hand-off),
        host CPU queueing; sums, so that windows of a replay add up."""
        _, steps, locks = self.breakdown()
        return {
            "steps": steps,
            "locks": {k: v["wait_ns"] + v["handoff_ns"] for k, v in locks.items()},
            "cpu_wait": self.cpu_wait,
        }


def shares(total, steps, locks, cpu_wait):
    """Fractions of all injector-time: per step (work), per lock (waiting + handoff), CPU.
    locks: name -> {"wait_ns", "handoff_ns"} or name -> ns."""
    if total <= 0:
        return {"steps": {}, "locks": {}, "cpu_wait": 0.0}
    st = {k: v / total for k, v in steps.items()}
    lk = {k: (v["wait_ns"] + v["handoff_ns"]) / total for k, v in locks.items()}
    return {"steps": st, "locks": lk, "cpu_wait": cpu_wait / total}


def share_of(spent: dict) -> dict:
    """time_spent()'s sums as fractions of all injector-time."""
    locks = {k: {"wait_ns": v, "handoff_ns": 0.0} for k, v in spent["locks"].items()}
    total = sum(spent["steps"].values()) + sum(spent["locks"].values()) + spent["cpu_wait"]
    return shares(total, spent["steps"], locks, spent["cpu_wait"])
