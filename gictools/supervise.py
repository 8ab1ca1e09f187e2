"""The one place gictools runs work in other processes (replay --jobs, sweep's local
workers, predict's seeds): start, collect, cancel, clean up.

    with Supervisor(fn, tasks, names=names, jobs=cpu_count()) as sup:
        for i, status, value in sup.results():   # "ok" | "error" | "died", as they end
            ...
    results = run_all(fn, tasks, names=names)      # the first failure stops the rest

A worker may call report_progress(done) with its work done so far (events replayed...);
given on_progress, the supervisor hands it every worker's latest count (a list in task
order) at most every PROGRESS_S and as each task ends, from its results() loop.

Each task runs as fn(*task) in a process of its own (at most `jobs` at a time) that
sends its result back through a pipe. What it guarantees:
- a worker that dies (a signal: SIGKILL, SIGTERM, SIGXCPU from RLIMIT_CPU...; an exit
  without a result) is reported as ("died", "killed by SIGKILL"); run_all turns it, and
  a worker's MemoryError, into WorkerFailed: one line naming the work item and the cause
  (a GictoolsError: the CLI prints it, exit 2), after stopping the other workers;
- leaving the block (normally, by an exception, or by SIGTERM/SIGINT/SIGHUP to this
  process, which raise Stopped here) stops every worker still running: SIGTERM, which
  makes a worker remove its temporary files and die, then SIGKILL after GRACE_S; temporary
  files of dead workers in the directories `temp_dirs` are then removed
  (outputs.remove_stale_temps; not below them);
- a process stopped by SIGTERM or SIGHUP still dies by that signal (so its parent sees
  it), once the exception has unwound and every cleanup has run;
- a worker whose supervising process dies, even by SIGKILL, notices (the parent-death
  signal, and a pidfd watch that also covers workers started by a fork server) and
  ends, removing its temporary files.

The progress counts are shared memory (one 8-byte slot per task, MAP_SHARED: inherited by a
forked worker, passed by its fd to one a fork server starts): a worker's report is one
store, never a write it could block on, and the counts coalesce by themselves (the latest
wins); the supervisor holds no fd for them under fork, and closes the mapping in stop().

ONE CPU-count rule: cpu_count() is the CPUs this process may run on (its affinity mask,
as taskset or a container sets it), and 1 inside a worker (its supervisor already spread
the work over the CPUs: a worker starting its own pool would oversubscribe them).
"""

from __future__ import annotations

import atexit
import contextlib
import mmap
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from gictools.errors import GictoolsError

GRACE_S = 0.5  # from SIGTERM to SIGKILL when stopping workers
PROGRESS_S = 0.1  # on_progress at most this often (rich redraws a bar 10 times a second)
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_in_worker = False
_my_slot: tuple[Any, int] | None = None  # a worker's progress slot: (the counts' view, index)


def cpu_count() -> int:
    """The default number of worker processes (see the module doc)."""
    if _in_worker:
        return 1
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


_HINTS: dict[int, str] = {
    signal.SIGKILL: " (by a user, or by the kernel out of memory)",
    signal.SIGXCPU: " (its CPU time limit, RLIMIT_CPU)",
    signal.SIGXFSZ: " (its file size limit, RLIMIT_FSIZE)",
    signal.SIGSEGV: " (a crash)",
}


_EXIT_UNREPORTED = 121  # a worker that could not send its result (out of memory)


def exit_cause(exitcode: int | None) -> str:
    """How a worker ended without a result, in words."""
    if exitcode is None:
        return "did not exit"
    if exitcode == _EXIT_UNREPORTED:
        return "could not send its result back (out of memory?)"
    if exitcode < 0:
        return f"killed by {signal_name(-exitcode)}{_HINTS.get(-exitcode, '')}"
    return f"exited with code {exitcode} without a result"


class WorkerFailed(GictoolsError):
    """A worker died or ran out of memory: one line naming the work item and the cause."""

    def __init__(self, item: str, cause: str):
        super().__init__(f"{item}: worker {cause}")
        self.item, self.cause = item, cause


class Stopped(KeyboardInterrupt):
    """SIGTERM/SIGINT/SIGHUP reached a supervising process: unwinds like Ctrl-C (every
    `except KeyboardInterrupt` and `finally` runs), then the process dies by the signal."""

    def __init__(self, signum: int):
        super().__init__(signal_name(signum))
        self.signum = signum


# --- progress counts ------------------------------------------------------------------------------


class _Counts:
    """One int64 per task in memory shared with the workers: each stores its own slot, the
    supervisor reads them all (no lock: a slot has one writer, an aligned 8-byte store is
    whole). Under fork an anonymous shared mapping (no fd); for a fork server a memfd
    whose descriptor travels with the worker's arguments (multiprocessing's DupFd)."""

    def __init__(self, n: int, by_fd: bool, fd: int = -1):
        self.n, self.fd = n, fd
        size = 8 * max(1, n)
        if by_fd and fd == -1:
            self.fd = os.memfd_create("gictools-progress", os.MFD_CLOEXEC)
            os.ftruncate(self.fd, size)
        self.map = mmap.mmap(self.fd, size)
        self.view: Any = memoryview(self.map).cast("q")

    def __reduce__(self):  # pickled only to start a worker by a fork server (or spawn)
        from multiprocessing.reduction import DupFd

        return _attach_counts, (self.n, DupFd(self.fd))

    def read(self) -> list[int]:
        return self.view.tolist()[: self.n]

    def close(self) -> None:
        self.view.release()
        self.map.close()
        if self.fd != -1:
            os.close(self.fd)
            self.fd = -1


def _attach_counts(n: int, dupfd: Any) -> _Counts:
    """A fork server's worker: map its supervisor's counts, keep no descriptor."""
    counts = _Counts(n, True, dupfd.detach())
    os.close(counts.fd)
    counts.fd = -1
    return counts


def report_progress(done: int) -> None:
    """In a supervised worker: its work done so far (a running count in its own unit,
    e.g. events replayed), for the supervisor's on_progress. One store into shared memory:
    it never waits for the supervisor, however slow. Does nothing outside a worker or when
    the supervisor asked for no progress, so a function may call it either way."""
    if _my_slot is not None:
        _my_slot[0][_my_slot[1]] = done


# --- the worker side ----------------------------------------------------------------------------


def _worker_signal(signum: int, frame: Any) -> None:
    """SIGTERM/SIGHUP in a worker: remove its temporary files, die by the signal."""
    from gictools.outputs import _remove_live_temps

    _remove_live_temps()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _watch_parent(pid: int) -> None:
    """End this worker when its supervisor ends: the parent-death signal covers a direct
    child (Linux prctl), a pidfd watch also a worker forked by a fork server."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    try:
        fd = os.pidfd_open(pid)  # Linux >= 5.3
    except ProcessLookupError:  # already gone
        _worker_signal(signal.SIGTERM, None)
        return
    except (AttributeError, OSError):
        return

    def watch():
        select.select([fd], [], [])
        os.kill(os.getpid(), signal.SIGTERM)  # cleans up, once the main thread can run it
        time.sleep(2 * GRACE_S + 1)  # stuck in native code: leave anyway
        from gictools.outputs import _remove_live_temps

        _remove_live_temps()
        os._exit(128 + signal.SIGTERM)

    threading.Thread(target=watch, name="gictools-parent-watch", daemon=True).start()


def _bootstrap(
    conn: Any, parent: int, fn: Callable, task: Sequence, slot: tuple[Any, int] | None = None
) -> None:
    """A worker's whole life: signals and the parent watch first, then fn(*task), whose
    result (or exception) goes back through conn. slot: (the supervisor's _Counts, this
    task's index) when it wants progress, for report_progress."""
    global _in_worker, _my_slot, _holding
    _in_worker = True
    _my_slot = None if slot is None else (slot[0].view, slot[1])
    _holding = 0  # a forked worker's copy of its supervisor's section is not its own
    _deferred.clear()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _worker_signal)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # held while it was forked
    _watch_parent(parent)
    try:
        result: tuple = ("ok", fn(*task))
    except BaseException as e:  # handed to the supervisor
        result = ("error", e)
    try:
        try:
            conn.send(result)
        except MemoryError:  # no room to pickle it: say so in as few bytes as possible
            result = ()  # let it go
            conn.send(("error", MemoryError()))
        except Exception as e:  # a result or exception that does not pickle
            conn.send(("error", RuntimeError(f"{type(result[1]).__name__}: {result[1]} ({e})")))
        conn.close()
    except BaseException:  # not even that: the exit code says it, no traceback
        os._exit(_EXIT_UNREPORTED)


# --- the supervising side -----------------------------------------------------------------------

_die_by: int | None = None
_holding = 0  # > 0: the main thread is in a section a stop signal must not cut (_Hold)
_deferred: list[int] = []  # the stop signals that came meanwhile, oldest first
_stop_asked: int | None = None  # the last stop signal, while a Supervisor block is open


def _die_at_exit() -> None:
    """Last of all: die by the SIGTERM/SIGHUP that stopped us (the exception was handled)."""
    if _die_by is not None:
        from gictools.outputs import _remove_live_temps

        _remove_live_temps()
        signal.signal(_die_by, signal.SIG_DFL)
        os.kill(os.getpid(), _die_by)


def _raise_stopped(signum: int, frame: Any) -> None:
    global _die_by, _stop_asked
    _stop_asked = signum  # results() raises it again if this Stopped is swallowed
    if signum != signal.SIGINT and _die_by is None:
        _die_by = signum
        atexit.register(_die_at_exit)
    if _holding:  # noted: the section acts on it when it ends (_Hold)
        _deferred.append(signum)
        return
    raise Stopped(signum)


@dataclass(frozen=True)
class Start:
    """How workers start: "fork" (inherits this process: only from a process without threads)
    or "forkserver" (preload: the modules its workers import once)."""

    method: str = "fork"
    preload: tuple[str, ...] = ()


FORK = Start()


class Supervisor:
    """Runs fn(*task) for each task in its own process (see the module doc)."""

    def __init__(
        self,
        fn: Callable,
        tasks: Sequence[Sequence],
        *,
        names: Sequence[str] | None = None,
        jobs: int | None = None,
        start: Start = FORK,
        temp_dirs: Sequence[str] = (),
        meanwhile: Callable[[], Any] | None = None,
        on_progress: Callable[[list[int]], Any] | None = None,
    ):
        """start: how workers start (Start). meanwhile() runs here once every worker has
        started (a thread may start then: no fork follows). on_progress(counts) runs here,
        in results(), with every task's latest report_progress count (0 before its first)
        when they changed: at most every PROGRESS_S, and as each task ends (its final
        count, before its result is yielded)."""
        import multiprocessing

        self.fn, self.tasks = fn, list(tasks)
        self.names = list(names) if names is not None else [f"task {i}" for i in range(len(tasks))]
        self.jobs = max(1, min(jobs or cpu_count(), len(self.tasks) or 1))
        self.ctx: Any = multiprocessing.get_context(start.method)
        if start.method == "forkserver":
            self.ctx.set_forkserver_preload(["gictools.supervise", *start.preload])
        self.temp_dirs = list(temp_dirs)
        self.meanwhile = meanwhile
        self._todo = list(range(len(self.tasks)))
        self._running: dict[Any, tuple[int, Any]] = {}  # connection -> (index, process)
        self._saved: dict[int, Any] = {}
        self.on_progress = on_progress
        self._counts: _Counts | None = None  # made with the first worker, closed by stop()
        self._told: list[int] = [0] * len(self.tasks)  # the counts on_progress last saw

    # signals: installed for the block's duration (only the main thread can)
    def __enter__(self) -> Supervisor:
        global _stop_asked
        _stop_asked = None
        if threading.current_thread() is threading.main_thread():
            for s in _STOP_SIGNALS:
                with contextlib.suppress(ValueError, OSError):
                    self._saved[s] = signal.signal(s, _raise_stopped)
        return self

    def __exit__(self, *exc: Any) -> None:
        global _stop_asked
        _stop_asked = None
        with _Hold() as hold:  # a second signal must not cut the stopping short
            try:
                self.stop()
            finally:
                for s, h in self._saved.items():
                    with contextlib.suppress(ValueError, OSError, TypeError):
                        signal.signal(s, h if h is not None else signal.SIG_DFL)
        for s in hold.came:  # one that came meanwhile goes to the handler restored
            signal.raise_signal(s)

    @property
    def running(self) -> int:
        return len(self._running)

    def _start(self, i: int) -> None:
        """Start task i's worker; a stop signal is held back until the worker is on the
        books (else it could interrupt between the fork and the bookkeeping, leaving a
        worker that stop() does not know: it ran on unsupervised, writing into the output
        after its supervisor had cleaned up and gone)."""
        if self.on_progress is not None and self._counts is None:
            self._counts = _Counts(len(self.tasks), by_fd=self.ctx.get_start_method() != "fork")
        recv, send = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(
            target=_bootstrap,
            args=(send, os.getpid(), self.fn, self.tasks[i])
            + (() if self._counts is None else ((self._counts, i),)),
            name=f"gictools-worker-{i}",
        )
        with _Hold() as hold:
            try:
                proc.start()
                self._running[recv] = (i, proc)
            finally:
                send.close()
        if hold.came:  # now that stop() knows the worker
            raise Stopped(hold.came[0])

    def results(self, timeout: float | None = None) -> Iterator[tuple[int, str, Any] | None]:
        """(index, "ok" | "error" | "died", value) per task as it ends ("died": the cause in
        words); None whenever timeout seconds pass without one (for progress displays)."""
        while self._todo or self._running:
            if _stop_asked is not None:
                # a handler that runs inside a finalizer (a Connection's __del__) has its
                # Stopped printed as "Exception ignored" and dropped: the stop still holds
                raise Stopped(_stop_asked)
            while self._todo and len(self._running) < self.jobs:
                self._start(self._todo.pop(0))
            meanwhile = self.meanwhile
            if meanwhile is not None and not self._todo:
                self.meanwhile = None
                meanwhile()
            ready = self._wait(timeout)
            if not ready:
                yield None
                continue
            for conn in ready:
                i, proc = self._running[conn]  # on the books until it has exited
                status: str
                try:
                    status, value = self._recv(conn)
                except (EOFError, OSError):
                    proc.join()
                    status, value = "died", exit_cause(proc.exitcode)
                except Exception as e:  # a result that does not unpickle here
                    status, value = "error", RuntimeError(f"{type(e).__name__}: {e}")
                proc.join()
                del self._running[conn]
                conn.close()
                if status == "died":
                    self._sweep_temps()
                yield i, status, value

    def _wait(self, timeout: float | None) -> list[Any]:
        """The connections ready within timeout; on_progress is told every PROGRESS_S
        meanwhile and on each return (a worker stores its last count before it sends its
        result: results() yields none before on_progress has seen it)."""
        from multiprocessing.connection import wait

        if self.on_progress is None:
            return wait(list(self._running), timeout)
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            step = PROGRESS_S if end is None else min(PROGRESS_S, end - time.monotonic())
            ready: list[Any] = wait(list(self._running), max(0.0, step))
            self._tell()
            if ready or (end is not None and time.monotonic() >= end):
                return ready

    def _tell(self) -> None:
        if self._counts is None or self.on_progress is None:
            return
        now = self._counts.read()
        if now != self._told:
            self._told = now
            self.on_progress(list(now))

    def counts(self) -> list[int]:
        """Every task's latest report_progress count (the last read once stopped)."""
        return self._counts.read() if self._counts is not None else list(self._told)

    @staticmethod
    def _recv(conn: Any) -> tuple[str, Any]:
        status, value = conn.recv()
        return status, value

    def stop(self) -> None:
        """Stop every worker still running (SIGTERM, SIGKILL after GRACE_S), wait for them,
        remove their temporary files. Idempotent."""
        self._todo.clear()
        procs = [p for _, p in self._running.values()]
        for p in procs:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                p.terminate()
        deadline = time.monotonic() + GRACE_S
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in procs:
            if p.exitcode is None:
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    p.kill()
                p.join()
        for conn in self._running:
            conn.close()
        had = bool(self._running)
        self._running.clear()
        if had:
            self._sweep_temps()
        if self._counts is not None:  # every worker is gone: nothing writes them now
            self._told = self._counts.read()
            self._counts.close()
            self._counts = None

    def _sweep_temps(self) -> None:
        from gictools.outputs import remove_stale_temps

        for d in self.temp_dirs:  # each directory itself, not below it
            remove_stale_temps(d)


class _Hold:
    """A section of the main thread that a stop signal must not cut; afterwards `came`
    lists the stop signals that arrived meanwhile (the caller acts on them).

    Blocking the signals in this thread is not enough: the kernel then delivers a
    process-wide signal (a terminal's Ctrl-C) to another thread that does not block it
    (a library's: OpenBLAS starts one when numpy is imported), and the Python handler
    still runs here, at the next bytecode. So _raise_stopped only notes a signal while a section is open. The block
    stays for a worker forked meanwhile (it inherits it until its handlers are set).
    Elsewhere than the main thread (no handlers there) it does nothing."""

    def __enter__(self) -> _Hold:
        global _holding
        self.came: list[int] = []
        self.main = threading.current_thread() is threading.main_thread()
        if self.main:
            signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
            _holding += 1
        return self

    def __exit__(self, *exc: Any) -> None:
        global _holding
        if not self.main:
            return
        _holding -= 1
        if not _holding:
            self.came = list(dict.fromkeys(_deferred))
            _deferred.clear()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)


def failure(name: str, status: str, value: Any) -> BaseException:
    """What run_all raises for a task that did not succeed: the worker's own exception (the
    user's input was wrong: it names what and where), or WorkerFailed when the worker died
    or ran out of memory or stack."""
    if status == "died":
        return WorkerFailed(name, value)
    if isinstance(value, MemoryError):
        return WorkerFailed(
            name, f"ran out of memory (MemoryError{': ' if str(value) else ''}{value})"
        )
    if isinstance(value, RecursionError):
        return WorkerFailed(name, f"ran out of stack (RecursionError: {value})")
    return value


def run_all(
    fn: Callable,
    tasks: Sequence[Sequence],
    *,
    names: Sequence[str] | None = None,
    jobs: int | None = None,
    **kw: Any,
) -> list:
    """[fn(*task) for task in tasks], each in its own process, at most jobs at a time; the
    first failure stops the other workers and is raised (see failure())."""
    out: list = [None] * len(tasks)
    with Supervisor(fn, tasks, names=names, jobs=jobs, **kw) as sup:
        for ev in sup.results():
            assert ev is not None  # no timeout given
            i, status, value = ev
            if status != "ok":
                raise failure(sup.names[i], status, value)
            out[i] = value
    return out


# --- one external program (a compiler, kvmcheck, the nested host) -----------------------------


def _descendants(pid: int) -> list[int]:
    """pid's live descendants, children first (Linux /proc; none elsewhere)."""
    kids: dict[int, list[int]] = {}
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
            kids.setdefault(ppid, []).append(int(name))
    out, todo = [], [pid]
    while todo:
        for k in kids.get(todo.pop(), ()):
            out.append(k)
            todo.append(k)
    return out


def _kill_tree(pid: int) -> None:
    for p in [pid, *_descendants(pid)]:
        with contextlib.suppress(OSError):
            os.kill(p, signal.SIGKILL)


def _child_dies_with_parent() -> None:  # in the child, before exec
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def run_program(cmd: Sequence[str], timeout: float) -> tuple[int, str, str]:
    """Run one external program to its end: (exit status, stdout, stderr).

    The same guarantees as the workers': a timeout, an exception, or SIGTERM/SIGINT/SIGHUP
    to this process (raised here as Stopped) kill the program and everything it started;
    the program gets SIGKILL if this process dies, even by SIGKILL (the parent-death signal;
    a grandchild it started then has only its own bound, e.g. nested.sh's TIMEOUT).
    Raises subprocess.TimeoutExpired past `timeout` seconds."""
    import subprocess

    saved = {}
    if threading.current_thread() is threading.main_thread():
        saved = {s: signal.signal(s, _raise_stopped) for s in _STOP_SIGNALS}
    try:
        p = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_child_dies_with_parent,
        )
        try:
            out, err = p.communicate(timeout=timeout)
        except BaseException:
            _kill_tree(p.pid)
            p.communicate()
            raise
        return p.returncode, out, err
    finally:
        for s, h in saved.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
