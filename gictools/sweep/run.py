"""Drive a sweep: lock the dataset, skip finished cells, run the others on an executor
(local processes, or a Dask cluster through distributed's concurrent.futures executor:
the same `run_cell` either way), report progress, and stop cleanly on Ctrl-C.
"""

import concurrent.futures as cf
import fcntl
import json
import os
import re
import signal
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from gictools.errors import ConfigError
from gictools.outputs import remove_stale_temps, write_atomic
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
    warnings: list = field(default_factory=list)  # damaged manifest entries, one line each

    def count(self, status):
        return sum(1 for r in self.results.values() if r["status"] == status)


class LocalExecutor:
    """Cells on local processes, through gictools.supervise: a fork server (no fork of a
    threaded parent) with gictools preloaded; a dead worker fails its own cell only."""

    name = "local"

    def __init__(self, jobs, cells, root: Path):
        from gictools.supervise import Start, Supervisor

        self.cells, self.root = cells, root
        self.sup = Supervisor(
            run_cell,
            [(c, str(root)) for c in cells],
            names=[c.partition for c in cells],
            jobs=jobs,
            start=Start("forkserver", preload=("gictools.sweep.cell",)),
        )
        _start_fork_server()
        self.sup.__enter__()  # SIGTERM/SIGHUP/SIGINT now stop the workers and raise here

    def outcomes(self):
        """(cell, result dict) as cells end; None every half second."""
        from gictools.supervise import WorkerFailed, failure

        for ev in self.sup.results(timeout=TICK_S):
            if ev is None:
                yield None
                continue
            i, status, value = ev
            c = self.cells[i]
            if status == "ok":
                yield c, value
            else:  # the worker died (or ran out of memory) before it could record it
                clean_temp_files(self.root)  # a dead writer's only: the others keep theirs
                err = failure(c.partition, status, value)  # the partition is named beside it
                msg = f"worker {err.cause}" if isinstance(err, WorkerFailed) else str(err)
                r = {"status": "failed", "error": msg}
                _record_failure(self.root, c, r)
                yield c, r

    def running(self, left):
        return self.sup.running

    def abort(self):
        self.sup.__exit__(None, None, None)

    close = abort


# Arrow's default allocator (mimalloc) reserves about 1 GiB of address space in each
# process that writes Parquet: under a 1.5 GiB RLIMIT_AS every cell failed. The system
# allocator keeps a cell's peak address space at ~0.6 GB (a replay's CLI run: ~1.46 GB)
# at the same speed.
WORKER_ENV = {"ARROW_DEFAULT_MEMORY_POOL": "system"}
TICK_S = 0.5  # the progress display is told at least this often while cells run


def _start_fork_server():
    """Start the fork server (the workers' parent) with WORKER_ENV and SIGINT blocked; the
    driver's own environment and signal mask are left as they were.

    A worker inherits the block from its fork to supervise._bootstrap, which ignores SIGINT
    and unblocks it: a Ctrl-C to the process group in between is dropped. Unblocked, it
    raised KeyboardInterrupt in the starting worker (the fork server gives it Python's
    default handler), which exited 1: its cell was recorded as failed in an interrupted
    sweep."""
    from multiprocessing import forkserver, resource_tracker

    # first: starting it unblocks SIGINT and SIGTERM in this thread, whatever was blocked
    resource_tracker.ensure_running()
    saved = {k: os.environ.get(k) for k in WORKER_ENV}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # inherited by exec
    try:
        for k, v in WORKER_ENV.items():
            os.environ.setdefault(k, v)  # the user's choice wins
        forkserver.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for k, old in saved.items():
            if old is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = old


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

    def running(self, left):
        return min(left, self.slots)

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
    from gictools.supervise import cpu_count

    return cpu_count()


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
    _check_sweep_args(root, jobs, scheduler)
    root.mkdir(parents=True, exist_ok=True)
    lock = _Lock(root)
    t0 = time.monotonic()
    results: dict = {}
    state = Progress(total=len(cells))
    ex: DaskExecutor | LocalExecutor | None = None
    todo: list[Cell] = []
    warnings: list[str] = []

    def tick():
        if progress is not None:
            progress(state)

    try:
        clean_temp_files(root)
        _skip_finished(root, cells, (results, state, todo, warnings))
        tick()
        if todo:
            if scheduler:
                ex = DaskExecutor(scheduler)
                outcomes = _dask_outcomes(ex, todo, root)
            else:
                ex = LocalExecutor(min(jobs or default_jobs(), len(todo)), todo, root)
                outcomes = ex.outcomes()
            _collect(ex, outcomes, len(todo), results, state, tick)
            ex.close()
            ex = None
    except KeyboardInterrupt as e:
        if ex is not None:
            ex.abort()
        clean_temp_files(root)
        _settle_unfinished(root, [c for c in todo if c.partition not in results], results)
        # the partial result travels with the interrupt (the CLI prints it)
        result = SweepResult(root, cells, results, _name(ex, scheduler), 0.0, True, warnings)
        result.wall_s = time.monotonic() - t0
        e.result = result  # type: ignore[attr-defined]
        raise
    except BaseException:
        if ex is not None:
            ex.abort()
        clean_temp_files(root)
        raise
    finally:
        _prune_empty_partitions(root, cells)
        lock.release()
    wall = time.monotonic() - t0
    return SweepResult(root, cells, results, _name(ex, scheduler), wall, warnings=warnings)


def _check_sweep_args(root: Path, jobs: int | None, scheduler: str | None) -> None:
    """Refuse an output that is a file, -j below 1, and -j with a scheduler."""
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


def _skip_finished(root: Path, cells, into: tuple[dict, Progress, list, list[str]]) -> None:
    """Append the cells still to run to todo as they are found (an interrupt settles those);
    each finished one is recorded as skipped in results and state. into: (results, state,
    todo, warnings), the run's own collections."""
    results, state, todo, warnings = into
    for c in cells:
        if is_finished(root, c, warnings.append):
            results[c.partition] = {
                "status": "skipped",
                "row": read_cell_row(root, c),
                "wall_s": 0.0,
            }
            state.skipped += 1
        else:
            todo.append(c)
    _check_outputs(root, cells, todo, warnings.append)


def _collect(ex, outcomes, n: int, results: dict, state: Progress, tick) -> None:
    """Record each (cell, result) the executor reports out of n, ticking after every event."""
    for ev in outcomes:
        if ev is not None:
            c, r = ev
            results[c.partition] = r
            if r["status"] == "done":
                state.done += 1
            else:
                state.failed += 1
        state.running = ex.running(n - state.done - state.failed)
        tick()


def _file_kind(mode) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _check_outputs(root: Path, cells, todo, warn):
    """Before any work: no cell may write over an input (a trace lying where a cell's
    output goes; compared by st_dev/st_ino, as `replay -o` does), and every output that
    exists must be a regular file (a FIFO would block its writer for ever). A manifest
    entry that is not one is removed with a warning (it is ours: the cell runs again);
    anything else refuses the sweep."""
    inputs = {}
    for c in cells:
        if c.trace_path:
            try:
                st = os.stat(c.trace_path)
            except OSError:
                continue  # a missing trace is its cell's failure
            inputs[(st.st_dev, st.st_ino)] = c.trace_path
    for c in todo:  # the cells that will write
        manifests = (
            root / MANIFEST_DIR / f"{c.cell_id}.json",
            root / MANIFEST_DIR / f"{c.cell_id}.failed.json",
        )
        for f in (
            root / EVENTS_DIR / c.partition / EVENTS_FILE,
            root / CELLS_DIR / c.partition / CELL_FILE,
            *manifests,
        ):
            try:
                st = os.stat(f)
            except OSError:
                continue
            hit = inputs.get((st.st_dev, st.st_ino))
            if hit is not None:
                raise ConfigError(
                    f"{f}: is the same file as the input {hit}; refusing to overwrite an input"
                )
            if stat.S_ISREG(st.st_mode):
                continue
            kind = _file_kind(st.st_mode)
            if f in manifests and not stat.S_ISDIR(st.st_mode):
                os.unlink(f)
                if f == manifests[1]:
                    warn(f"{f}: {kind}, not a failure record; removed")
                continue
            raise ConfigError(f"{f}: {kind} where the sweep writes a file; remove it")


def _dask_outcomes(ex, todo, root):
    """(cell, result dict) as the cluster finishes cells; None every half second."""
    futures = {ex.submit(c, str(root)): c for c in todo}
    pending = set(futures)
    while pending:
        done, pending = cf.wait(pending, timeout=TICK_S, return_when=cf.FIRST_COMPLETED)
        for f in done:
            try:
                r = f.result()
            except Exception as e:  # the worker died, or could not run the cell
                r = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
                _record_failure(root, futures[f], r)
            yield futures[f], r
        yield None


def _record_failure(root: Path, cell, r):
    """A cell whose worker died wrote no record: write its `.failed.json` here, and remove
    any file it published without its manifest entry (the dataset holds finished cells)."""
    failed = root / MANIFEST_DIR / f"{cell.cell_id}.failed.json"
    if is_finished(root, cell):
        return
    _remove_cell_files(root, cell)
    try:
        failed.parent.mkdir(parents=True, exist_ok=True)
        doc = {"identity": cell.identity(), "error": r.get("error")}
        write_atomic(failed, [json.dumps(doc, indent=1).encode()])
    except OSError:
        pass


def _remove_cell_files(root: Path, c):
    for f in (
        root / EVENTS_DIR / c.partition / EVENTS_FILE,
        root / CELLS_DIR / c.partition / CELL_FILE,
    ):
        try:
            f.unlink()
        except OSError:
            pass


def _prune_empty_partitions(root: Path, cells):
    """Remove the partition directories a cell created but left empty (stopped by Ctrl-C,
    failed, or its files removed as unfinished), up to events/ and cells/: a reader sees
    only finished cells' directories. rmdir removes only an empty directory, so a file
    anyone wrote stays."""
    for c in cells:
        for sub in (EVENTS_DIR, CELLS_DIR):
            top = root / sub
            d = top / c.partition
            while d != top:
                try:
                    d.rmdir()
                except OSError:  # not empty (a finished or running cell's), or absent
                    break
                d = d.parent


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
        _remove_cell_files(root, c)


def _name(ex, scheduler):
    return f"dask {scheduler}" if scheduler else "local"
