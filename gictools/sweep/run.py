"""Drive a sweep: lock the dataset, skip finished cells, run the others on an executor
(local processes, or a Dask cluster through distributed's concurrent.futures executor:
the same `run_cell` either way), report progress, and stop cleanly on Ctrl-C.
"""

import concurrent.futures as cf
import fcntl
import multiprocessing
import os
import re
import select
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from gictools.errors import ConfigError
from gictools.outputs import remove_stale_temps
from gictools.sweep.cell import (
    CELL_FILE,
    CELLS_DIR,
    EVENTS_DIR,
    EVENTS_FILE,
    MANIFEST_DIR,
    is_finished,
    read_cell_row,
    run_cell,
)
from gictools.sweep.grid import Cell

LOCK_FILE = ".sweep.lock"


@dataclass
class Progress:
    """Counts over cells, handed to the progress callback after every change."""

    total: int
    skipped: int = 0
    done: int = 0
    failed: int = 0
    running: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def finished(self):
        return self.skipped + self.done + self.failed

    def eta_s(self):
        """Seconds left at the rate of the cells run so far (None before the first)."""
        ran = self.done + self.failed
        left = self.total - self.finished
        if not ran or not left:
            return None if left else 0.0
        return (time.monotonic() - self.started) / ran * left


@dataclass
class SweepResult:
    root: Path
    cells: list
    results: dict  # partition -> {"status": done|skipped|failed, "row", "error", "wall_s"}
    executor: str
    wall_s: float
    interrupted: bool = False

    def count(self, status):
        return sum(1 for r in self.results.values() if r["status"] == status)


def _worker_init(driver_pid):
    """Workers leave Ctrl-C to the driver, which stops them and cleans up. They also exit
    when the driver does (even killed): pool workers would otherwise wait on their queue
    forever, and keep the fork server alive with them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        fd = os.pidfd_open(driver_pid)  # Linux >= 5.3
    except (AttributeError, OSError):
        return

    def watch():
        select.select([fd], [], [])
        os._exit(1)

    threading.Thread(target=watch, name="gictools-driver-watch", daemon=True).start()


class LocalExecutor:
    """A process pool; forkserver (no fork of a threaded parent), gictools preloaded."""

    name = "local"

    def __init__(self, jobs):
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["gictools.sweep.cell"])
        self.slots = jobs
        self.ex = cf.ProcessPoolExecutor(
            jobs, mp_context=ctx, initializer=_worker_init, initargs=(os.getpid(),)
        )

    def submit(self, cell, root):
        return self.ex.submit(run_cell, cell, root)

    def running(self, pending):
        # a future counts as running once it is queued for a worker: at most one per worker
        return min(self.slots, sum(1 for f in pending if f.running()))

    def abort(self):
        term = getattr(self.ex, "terminate_workers", None)  # Python 3.14+
        if term is not None:
            term()
        else:
            for p in list((getattr(self.ex, "_processes", None) or {}).values()):
                p.terminate()
        self.ex.shutdown(wait=True, cancel_futures=True)

    def close(self):
        self.ex.shutdown(wait=True)


_ADDRESS = re.compile(r"^(?:(tcp|tls|ucx|ws|wss)://)?(\[[0-9a-fA-F:]+\]|[\w.-]+):\d{1,5}$")


def check_scheduler_address(address: str):
    """tcp://HOST:PORT (or tls://, ucx://, ws://, wss://, or HOST:PORT), or inproc://...
    for an in-process cluster; checked here because distributed hangs on a bad one."""
    if str(address).startswith("inproc://") or _ADDRESS.match(str(address)):
        return
    raise ConfigError(f"--scheduler {address!r}: expected tcp://HOST:PORT")


class DaskExecutor:
    """Cells on a Dask cluster; the only place gictools imports distributed."""

    name = "dask"

    def __init__(self, address, timeout=10):
        try:
            from distributed import Client
        except ImportError:
            raise ConfigError(
                "--scheduler needs Dask: pip install 'gictools[sweep]' (dask, distributed)"
            ) from None
        try:
            self.client = Client(address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as e:
            raise ConfigError(f"cannot reach the Dask scheduler at {address}: {e}") from None
        self.address = address
        self.ex = self.client.get_executor(pure=False)
        self.slots = max(1, sum(self.client.nthreads().values()))

    def submit(self, cell, root):
        return self.ex.submit(run_cell, cell, root)

    def running(self, pending):
        return min(len(pending), self.slots)

    def abort(self):
        self.ex.shutdown(wait=False)  # cancels what has not finished
        self.client.close()

    def close(self):
        self.ex.shutdown(wait=True)
        self.client.close()


def clean_temp_files(root: Path) -> int:
    """Remove temp files an interrupted or killed sweep left behind. Only those whose writer
    is gone (outputs.remove_stale_temps: its PID dead and its flock free): a worker still
    writing, of a pool being stopped or of a Dask cluster, keeps its file."""
    n = 0
    for sub in (EVENTS_DIR, CELLS_DIR, MANIFEST_DIR):
        for dirpath, _, _ in os.walk(root / sub):
            n += len(remove_stale_temps(dirpath))
    return n


class _Lock:
    """One sweep per dataset at a time: an flock the kernel drops if the driver dies."""

    def __init__(self, root: Path):
        self.fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            raise ConfigError(f"{root}: another sweep is writing this dataset") from None

    def release(self):
        os.close(self.fd)


def default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def run_sweep(
    cells: list[Cell],
    out,
    *,
    jobs: int | None = None,
    scheduler: str | None = None,
    progress=None,
) -> SweepResult:
    """Run every unfinished cell of the grid into the dataset at out.

    jobs: local worker processes (default: the CPUs this process may use); scheduler: a
    Dask scheduler address (tcp://HOST:PORT), instead of local processes. progress(state)
    is called with a Progress after each change (and may raise KeyboardInterrupt). On
    KeyboardInterrupt the running cells are stopped, their temp files removed, and the
    exception re-raised with `.result` (a SweepResult, interrupted=True) attached.
    """
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root}: exists and is not a directory")
    if jobs is not None and jobs < 1:
        raise ConfigError(f"-j {jobs}: must be >= 1")
    if scheduler:
        if jobs is not None:
            raise ConfigError(
                "-j runs the cells on local processes, --scheduler (or DASK_SCHEDULER_ADDRESS) "
                "on a Dask cluster: give one"
            )
        check_scheduler_address(scheduler)
    root.mkdir(parents=True, exist_ok=True)
    lock = _Lock(root)
    t0 = time.monotonic()
    results = {}
    state = Progress(total=len(cells))
    ex: DaskExecutor | LocalExecutor | None = None
    todo = []
    try:
        clean_temp_files(root)
        for c in cells:
            if is_finished(root, c):
                results[c.partition] = {
                    "status": "skipped",
                    "row": read_cell_row(root, c),
                    "wall_s": 0.0,
                }
                state.skipped += 1
            else:
                todo.append(c)

        def tick():
            if progress is not None:
                progress(state)

        tick()
        if todo:
            if scheduler:
                ex = DaskExecutor(scheduler)
            else:
                ex = LocalExecutor(min(jobs or default_jobs(), len(todo)))
            futures = {ex.submit(c, str(root)): c for c in todo}
            pending = set(futures)
            while pending:
                done, pending = cf.wait(pending, timeout=0.5, return_when=cf.FIRST_COMPLETED)
                for f in done:
                    c = futures[f]
                    try:
                        r = f.result()
                    except Exception as e:  # the worker died, or could not run the cell
                        r = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
                    results[c.partition] = r
                    if r["status"] == "done":
                        state.done += 1
                    else:
                        state.failed += 1
                state.running = ex.running(pending)
                tick()
            ex.close()
            ex = None
    except KeyboardInterrupt as e:
        if ex is not None:
            ex.abort()
        clean_temp_files(root)
        _settle_unfinished(root, [c for c in todo if c.partition not in results], results)
        # the partial result travels with the interrupt (the CLI prints it)
        result = SweepResult(root, cells, results, _name(ex, scheduler), 0.0, True)
        result.wall_s = time.monotonic() - t0
        e.result = result  # type: ignore[attr-defined]
        raise
    except BaseException:
        if ex is not None:
            ex.abort()
        clean_temp_files(root)
        raise
    finally:
        lock.release()
    return SweepResult(root, cells, results, _name(ex, scheduler), time.monotonic() - t0)


def _settle_unfinished(root: Path, cells, results):
    """After an interrupt: a cell that got its manifest entry before its worker stopped is
    finished; any other cell's files (written, but no manifest entry) are removed, so the
    dataset holds finished cells only."""
    for c in cells:
        if is_finished(root, c):
            results[c.partition] = {
                "status": "done",
                "row": read_cell_row(root, c),
                "wall_s": None,
            }
            continue
        for f in (
            root / EVENTS_DIR / c.partition / EVENTS_FILE,
            root / CELLS_DIR / c.partition / CELL_FILE,
        ):
            try:
                f.unlink()
            except OSError:
                pass


def _name(ex, scheduler):
    return f"dask {scheduler}" if scheduler else "local"
