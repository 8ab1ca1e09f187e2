"""Lock queueing of the simulation: spinlock hand-off and mutex spin, sleep, steal and
hand-off (kernel/locking/mutex.c), as methods the engine (Simulation) mixes in."""

from gictools.latency.resources import HostCpus, Lock


class LockQueues:
    """Mixed into Simulation: its locks dict, lock_specs, host, schedule and statistics."""

    host: HostCpus
    locks: dict[tuple[int, int], Lock]
    lock_specs: list
    lock_wait: list[float]
    lock_handoff: list[float]

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
