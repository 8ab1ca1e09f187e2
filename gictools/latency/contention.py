"""Closed-loop discrete-event simulation of concurrent MSI injectors.

Each injector issues its next MSI when its previous one completes. An injection
walks its preset's path (gictools.latency.presets): each step costs its `ns`,
plus a list-walk cost for list caches, while holding the serialized sections
(locks) it names. A lock is a FIFO resource (a queued spinlock or a mutex): a
waiter queues, and when the lock passes to it the waiter pays the lock's
handoff_ns inside the section. Host CPUs are a pool: an injector holds a CPU
from issue to completion (a spinning waiter burns its CPU) except while a step
sleeps (synchronize_rcu), then queues for one again.

Two drivers share the engine:
- `Simulation` with a cache policy object (predict): the cache outcome of each
  injection is computed by calling the policy at the simulated time of the
  lookup and fill steps, so the interleaving of injectors (which depends on
  timing) decides hits and evictions, as on the real machine.
- `simulate_events` (replay with --preset): the outcomes are given (the trace's
  recorded order already decided them: open loop with respect to the cache);
  time is still closed loop: each injector's next event starts when its
  previous one ends, and the locks, CPUs and grace periods are simulated.

Deterministic: no randomness; ties are broken by a sequence number.
"""

import heapq
from collections import deque

import numpy as np

from gictools.errors import ConfigError
from gictools.model.cache import BYPASS, EVICT, HIT, MISS, RECYCLE, Outcome
from gictools.model.cache.keys import translation_key

DOORBELL = 0x0801_0040  # the selftest's GITS_TRANSLATER (any value works)
OUTCOME_PATH = {o: o.path for o in Outcome}
_NONE, _LOOKUP, _FILL = 0, 1, 2
_SCOPE_INDEX = {"vm": 0, "its": 1, "vcpu": 2}


class _Res:
    """A serialized section instance (FIFO)."""

    __slots__ = ("holder", "waiters", "handoff", "stat")

    def __init__(self, handoff, stat):
        self.holder = -1
        self.waiters = deque()
        self.handoff = handoff
        self.stat = stat


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
        s = self.stamp.get(key)
        if s is not None:
            self._add(s, -1)
            self.present[s] = 0
            self.count -= 1
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
            s = self.next
            self.next += 1
            self.stamp[k] = s
            self.present[s] = 1
            self._add(s, 1)
            self.count += 1


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
    ):
        self.p = preset
        self.per_inj = per_injector
        self.dev, self.ev, self.its, self.vcpu = dev, ev, its, vcpu
        self.forced = outcome
        self.policy = policy
        self.keys = keys
        n = len(dev)
        self.n = n
        ninj = len(per_injector)
        cpus = preset.host_cpus if host_cpus is None else int(host_cpus)
        if cpus < 1:
            raise ConfigError(f"host CPUs must be >= 1, got {cpus}")
        # vCPU threads that spin in the guest (the stress test's never WFI) time-share the
        # host with the injectors: injectors get their fair share of the CPUs
        if vcpus_busy and ninj + vcpus_busy > cpus:
            cpus = max(1, (cpus * ninj) // (ninj + vcpus_busy))
        self.cpus = cpus
        self.cpu_limited = cpus < ninj
        # compile the preset
        self.step_names = list(preset.steps)
        self.lock_names = list(preset.locks)
        sidx = {s: i for i, s in enumerate(self.step_names)}
        lidx = {s: i for i, s in enumerate(self.lock_names)}
        comp = {}
        for name, s in preset.steps.items():
            act = {"lookup": _LOOKUP, "fill": _FILL}.get(s.action, _NONE)
            comp[name] = (
                sidx[name],
                s.ns,
                tuple((lidx[lk], _SCOPE_INDEX[preset.locks[lk].scope]) for lk in s.locks),
                s.walk,
                act,
                s.sleeps,
            )
        self.paths = {o: tuple(comp[s] for s in seq) for o, seq in preset.paths.items()}
        self.handoff = [preset.locks[x].handoff_ns for x in self.lock_names]
        self.walk_s = preset.walk_per_entry_ns
        self.walk_m = preset.walk_remote_line_ns
        self.moves = preset.walk_moves_on_hit
        self.needs_walk = any(s.walk for s in preset.steps.values())
        # results
        self.t_issue = np.zeros(n, dtype=np.float64)
        self.t_done = np.zeros(n, dtype=np.float64)
        self.wait = np.zeros(n, dtype=np.float64)
        self.out = np.zeros(n, dtype=np.int8)
        self.step_time = [0.0] * len(self.step_names)
        self.step_count = [0] * len(self.step_names)
        self.lock_wait = [0.0] * len(self.lock_names)
        self.lock_handoff = [0.0] * len(self.lock_names)
        self.cpu_wait = 0.0
        self.sleep_time = 0.0

    # ------------------------------------------------------------------------------------
    def run(self):
        p = self.p
        paths = self.paths
        hit_path = paths["hit"]
        miss_path = paths["miss"]
        bypass_path = paths.get("bypass", miss_path)
        per_inj = self.per_inj
        ninj = len(per_inj)
        dev, ev, its, vcpu = self.dev, self.ev, self.its, self.vcpu
        forced = self.forced
        policy = self.policy
        no_cache = policy is not None and policy.name == "none"
        keys = self.keys
        t_issue, t_done, waitv, outv = self.t_issue, self.t_done, self.wait, self.out
        step_time, step_count = self.step_time, self.step_count
        lock_wait, lock_handoff = self.lock_wait, self.lock_handoff
        handoff = self.handoff
        walk_s, walk_m, moves = self.walk_s, self.walk_m, self.moves
        lm = _ListModel(self.n + 1) if (self.needs_walk and keys is not None) else None
        lpi_of = self._lpi_of
        outcome_path = {c: paths.get(o) for c, o in OUTCOME_PATH.items()}

        res = {}  # (lock index, instance) -> _Res

        def resource(lk, scope, e):
            inst = 0 if scope == 0 else (int(its[e]) if scope == 1 else int(vcpu[e]))
            r = res.get((lk, inst))
            if r is None:
                r = res[(lk, inst)] = _Res(handoff[lk], lk)
            return r

        path = [hit_path] * ninj
        si = [0] * ninj
        held = [[] for _ in range(ninj)]
        cur = [-1] * ninj  # current event index
        nxt = [0] * ninj  # position in per_inj list
        t_block = [0.0] * ninj
        wacc = [0.0] * ninj
        has_cpu = [False] * ninj
        last_walk = [-1] * ninj
        gwalk = 0
        cpu_free = self.cpus
        cpu_limited = self.cpu_limited
        cpu_q = deque()
        heap = []
        seq = 0
        push = heapq.heappush
        pop = heapq.heappop

        def release(r, t):
            nonlocal seq
            if r.waiters:
                w = r.waiters.popleft()
                r.holder = w
                held[w].append(r)
                h = r.handoff
                waited = t - t_block[w]
                lock_wait[r.stat] += waited
                lock_handoff[r.stat] += h
                wacc[w] += waited + h
                seq += 1
                push(heap, (t + h, seq, w))
            else:
                r.holder = -1

        def free_cpu(t):
            """The injector gives up its CPU: the longest-waiting runnable one takes it."""
            nonlocal cpu_free, seq
            cpu_free += 1
            if cpu_q:
                w = cpu_q.popleft()
                cpu_free -= 1
                has_cpu[w] = True
                wt = t - t_block[w]
                self.cpu_wait += wt
                wacc[w] += wt
                seq += 1
                push(heap, (t, seq, w))

        def walk_cost(inj, pos):
            nonlocal gwalk
            lw = last_walk[inj]
            others = gwalk - lw - 1 if lw >= 0 else gwalk
            last_walk[inj] = gwalk
            gwalk += 1
            if moves:
                dirty = pos if others > pos else others
            else:
                length = lm.count if lm is not None and lm.count else 1
                dirty = others * pos / length
                if dirty > pos:
                    dirty = pos
            return pos * walk_s + dirty * walk_m

        def start(inj, t):
            """Begin the injector's next event; False when it has none left."""
            k = nxt[inj]
            lst = per_inj[inj]
            if k >= len(lst):
                return False
            nxt[inj] = k + 1
            e = lst[k]
            cur[inj] = e
            si[inj] = 0
            wacc[inj] = 0.0
            t_issue[e] = t
            if forced is not None:
                o = int(forced[e])
                pth = outcome_path.get(o)
                if pth is None:
                    pth = miss_path if o != HIT else hit_path
                path[inj] = pth
                outv[e] = o
            else:
                path[inj] = hit_path
            return True

        # every injector starts at t = 0, in injector order
        for inj in range(ninj):
            if start(inj, 0.0):
                seq += 1
                push(heap, (0.0, seq, inj))

        while heap:
            t, _, inj = pop(heap)
            while True:
                if not has_cpu[inj]:
                    if not cpu_limited or cpu_free > 0:
                        cpu_free -= 1
                        has_cpu[inj] = True
                    else:
                        t_block[inj] = t
                        cpu_q.append(inj)
                        break
                pth = path[inj]
                i = si[inj]
                e = cur[inj]
                if i == len(pth):
                    hl = held[inj]
                    while hl:
                        release(hl.pop(), t)
                    t_done[e] = t
                    waitv[e] = wacc[inj]
                    has_cpu[inj] = False
                    free_cpu(t)
                    if not start(inj, t):
                        break
                    continue
                sidx, ns, locks, walk, action, sleeps = pth[i]
                hl = held[inj]
                if locks:
                    need = [resource(lk, sc, e) for lk, sc in locks]
                else:
                    need = ()
                if hl:
                    for r in list(reversed(hl)):
                        if r not in need:
                            hl.remove(r)
                            release(r, t)
                blocked = False
                for r in need:
                    if r.holder == inj:
                        continue
                    if r.holder < 0:
                        r.holder = inj
                        hl.append(r)
                    else:
                        r.waiters.append(inj)
                        t_block[inj] = t
                        blocked = True
                        break
                if blocked:
                    break
                cost = ns
                if action == _LOOKUP:
                    pos = 1
                    if forced is None:
                        if no_cache:
                            path[inj] = bypass_path
                            outv[e] = BYPASS
                        else:
                            lpi = policy.lookup(DOORBELL, int(dev[e]), int(ev[e]))
                            k = keys[e] if keys is not None else None
                            if lm is not None:
                                pos = lm.position(k) if lpi is not None else lm.count
                                pos = pos or 1
                            if lpi is not None:
                                path[inj] = hit_path
                                outv[e] = HIT
                                if lm is not None and moves:
                                    lm.touch(k)
                            else:
                                path[inj] = miss_path
                                outv[e] = MISS
                    elif lm is not None:
                        k = keys[e]
                        if outv[e] == HIT:
                            pos = lm.position(k) or 1
                            if moves:
                                lm.touch(k)
                        else:
                            pos = lm.count or 1
                    if walk:
                        cost += walk_cost(inj, pos)
                elif action == _FILL:
                    pos = lm.count if lm is not None else 1
                    if forced is None:
                        d_, v_ = int(dev[e]), int(ev[e])
                        o = policy.fill(DOORBELL, d_, v_, lpi_of(e))
                        outv[e] = o
                        pth2 = outcome_path.get(o)
                        if pth2 is None:
                            raise ConfigError(
                                f"preset {p.name!r} has no path for cache outcome "
                                f"{OUTCOME_PATH[o]!r} (policy {policy.name})"
                            )
                        path[inj] = pth2
                        if lm is not None:
                            vic = policy.last_victim
                            if vic is not None:
                                lm.remove(translation_key(*vic))
                            k = keys[e]
                            if o != MISS or moves or lm.position(k) is None:
                                lm.touch(k)
                    elif lm is not None:
                        o = outv[e]
                        if o in (EVICT, RECYCLE):
                            lm.remove_oldest()
                        if o in (MISS, EVICT, RECYCLE):
                            lm.touch(keys[e])
                    if walk:
                        cost += walk_cost(inj, max(pos, 1))
                elif walk:
                    cost += walk_cost(inj, 1)
                step_time[sidx] += cost
                step_count[sidx] += 1
                si[inj] = i + 1
                if sleeps:
                    has_cpu[inj] = False
                    self.sleep_time += cost
                    wacc[inj] += cost
                    free_cpu(t)
                seq += 1
                push(heap, (t + cost, seq, inj))
                break
        return self

    def _lpi_of(self, e):
        # the policy only stores and returns it; an INTID-like int is enough
        return 8192 + (int(self.dev[e]) << 16 | int(self.ev[e]))

    # ------------------------------------------------------------------------------------
    def breakdown(self):
        """Where the time went: injector-time per step, per lock (wait + handoff), CPU wait."""
        total = float((self.t_done - self.t_issue).sum())
        steps = {}
        for i, name in enumerate(self.step_names):
            if self.step_count[i]:
                steps[name] = self.step_time[i]
        locks = {}
        for i, name in enumerate(self.lock_names):
            w = self.lock_wait[i] + self.lock_handoff[i]
            if w:
                locks[name] = {"wait_ns": self.lock_wait[i], "handoff_ns": self.lock_handoff[i]}
        return total, steps, locks

    def summary(self, lo=None, hi=None):
        lat = self.t_done - self.t_issue
        total, steps, locks = self.breakdown()
        span = float(self.t_done.max()) if self.n else 0.0
        out = {
            "events": int(self.n),
            "elapsed_ns": span,
            "lpis_per_sec": (self.n / span * 1e9) if span > 0 else None,
            "hits": int((self.out == HIT).sum()),
            "evictions": int(((self.out == EVICT) | (self.out == RECYCLE)).sum()),
            "latency_p50_ns": float(np.percentile(lat, 50)) if self.n else None,
            "latency_p99_ns": float(np.percentile(lat, 99)) if self.n else None,
            "latency_max_ns": float(lat.max()) if self.n else None,
            "host_cpus_for_injectors": self.cpus,
            "time_share": shares(total, steps, locks, self.cpu_wait),
        }
        return out


def shares(total, steps, locks, cpu_wait):
    """Fractions of all injector-time: per step (work), per lock (waiting + handoff), CPU."""
    if total <= 0:
        return {"steps": {}, "locks": {}, "cpu_wait": 0.0}
    st = {k: v / total for k, v in steps.items()}
    # the sleeping step's time is in its step share (e.g. rcu_wait)
    lk = {k: (v["wait_ns"] + v["handoff_ns"]) / total for k, v in locks.items()}
    return {"steps": st, "locks": lk, "cpu_wait": cpu_wait / total}


def simulate_events(
    preset, injectors, outcomes, host_cpus=None, *, vcpus=None, its=None, keys=None
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
    # events of each injector in trace order
    uniq, inv = np.unique(inj, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    bounds = np.searchsorted(inv[order], np.arange(len(uniq) + 1))
    per_inj = [order[bounds[j] : bounds[j + 1]].tolist() for j in range(len(uniq))]
    zeros = np.zeros(n, dtype=np.int64)
    vc = zeros if vcpus is None else np.asarray(vcpus)
    it = zeros if its is None else np.asarray(its)
    kk = None if keys is None else np.asarray(keys).tolist()
    sim = Simulation(
        preset,
        per_inj,
        dev=zeros,
        ev=zeros,
        its=it,
        vcpu=vc,
        outcome=outc,
        keys=kk,
        host_cpus=host_cpus,
    ).run()
    lat = np.rint(sim.t_done - sim.t_issue).astype(np.int64)
    wait = np.minimum(np.rint(sim.wait).astype(np.int64), lat)
    return lat, wait, sim.summary()
