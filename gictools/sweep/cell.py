"""Run one sweep cell where it is scheduled (a local process or a Dask worker) and write
its files: events (replay cells), a one-row cell summary, then the manifest entry that
marks the cell finished. Each file is written through gictools.outputs (a hidden temp
name in its target directory, renamed when whole), so a reader never sees part of a file
and an interrupted cell leaves nothing a reader picks up. No dask import here: workers only need gictools.
"""

import json
import os
import socket
import stat
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from gictools import __version__
from gictools.outputs import AtomicOutput, atomic_path, write_atomic
from gictools.stats.schema import NAMES
from gictools.sweep.grid import PARTITION_KEYS, Cell

EVENTS_DIR, CELLS_DIR, MANIFEST_DIR = "events", "cells", "_manifest"
EVENTS_FILE, CELL_FILE = "part-0.parquet", "cell.parquet"

# The per-cell summary table (one row per cell). Names avoid the partition keys.
CELL_SCHEMA = pa.schema(
    [
        ("kind", pa.string()),  # replay | predict
        ("trace_path", pa.string()),
        ("trace_sha256", pa.string()),
        ("cache_policy", pa.string()),  # the policy that ran ("default" resolved)
        ("kernel_version", pa.string()),  # the kernel that was modelled
        ("events", pa.int64()),
        ("msis", pa.int64()),
        ("delivered", pa.int64()),
        ("commands", pa.int64()),
        ("lookups", pa.int64()),
        ("hits", pa.int64()),
        ("evictions", pa.int64()),  # valid entries evicted to make room
        ("recycles", pa.int64()),  # invalidated entries reused (usage-v2: an RCU wait)
        ("hit_rate", pa.float64()),
        ("msi_errors", pa.int64()),
        ("command_errors", pa.int64()),
        ("failed_expectations", pa.int64()),
        ("latency_p50_ns", pa.float64()),
        ("latency_p99_ns", pa.float64()),
        ("latency_max_ns", pa.float64()),
        ("elapsed_ns", pa.float64()),  # modelled closed-loop time (with a preset)
        ("lpis_per_sec", pa.float64()),  # predicted LPIs/s (with a preset)
        ("vcpus", pa.int64()),  # predict cells: the lpi-stress flags
        ("devices", pa.int64()),
        ("events_per_device", pa.int64()),
        ("iterations", pa.int64()),
        ("routing", pa.string()),
        ("host_cpus", pa.int64()),
        ("wall_s", pa.float64()),
        ("gictools_version", pa.string()),
    ]
)


def _write_table(table: pa.Table, path: Path):
    with AtomicOutput(path) as out:
        pq.write_table(table, out.file, compression="zstd")


def _unlink(p):
    try:
        os.unlink(p)
    except OSError:
        pass


def _fsync(path: Path):
    """Make a renamed file (or a directory's entries) durable before the manifest entry
    that vouches for it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replay_cell(cell: Cell, root: Path) -> tuple[dict, list, int, str | None]:
    from gictools.replay import replay

    d = root / EVENTS_DIR / cell.partition
    d.mkdir(parents=True, exist_ok=True)
    final = d / EVENTS_FILE
    with atomic_path(final) as tmp_name:  # replay writes it whole; published once checked
        tmp = Path(tmp_name)
        # written once, by the replay's writer, without the columns the partition
        # directories carry (a reader would see both)
        reports = replay(
            cell.trace_path,
            policies=[cell.cache or "default"],
            kernel=cell.kernel_version,
            out=tmp,
            preset=cell.preset_obj,
            host_cpus=cell.host_cpus,
            columns=[n for n in NAMES if n not in PARTITION_KEYS],
        )
        md = pq.ParquetFile(tmp).metadata
        meta, rows = md.metadata or {}, md.num_rows
    rep = reports[0].as_dict()
    elapsed = rep["elapsed_ns"]
    kernels = json.loads(meta.get(b"kernel", b"[null]"))
    sha = meta.get(b"trace_sha256", b"").decode() or None
    row = {
        "kind": "replay",
        "trace_path": cell.trace_path,
        "trace_sha256": sha or cell.trace_sha256,
        "cache_policy": rep["policy"],
        "kernel_version": kernels[0] if isinstance(kernels, list) and kernels else None,
        "events": rep["events"],
        "msis": rep["msis"],
        "delivered": rep["delivered"],
        "commands": rep["commands"],
        "lookups": rep["hits"] + rep["misses"],
        "hits": rep["hits"],
        "evictions": rep["evictions"],
        "recycles": rep["recycles"],
        "hit_rate": rep["hit_rate"],
        "msi_errors": sum(rep["msi_errors"].values()),
        "command_errors": sum(rep["command_errors"].values()),
        "failed_expectations": rep["failed_expectations"],
        "latency_p50_ns": rep["latency_p50_ns"],
        "latency_p99_ns": rep["latency_p99_ns"],
        "latency_max_ns": rep["latency_max_ns"],
        "elapsed_ns": elapsed,
        "lpis_per_sec": rep["msis"] / elapsed * 1e9 if elapsed else None,
        "host_cpus": cell.host_cpus,
    }
    return row, [f"{EVENTS_DIR}/{cell.partition}/{EVENTS_FILE}"], rows, sha


def _predict_cell(cell: Cell) -> dict:
    from gictools.analysis.predict import predict_lpi_stress

    preset = cell.preset_obj
    assert cell.workload is not None and preset is not None  # a predict cell has both
    v, d, e, i, routing = cell.workload
    r = predict_lpi_stress(v, d, e, i, preset, routing=routing, host_cpus=cell.host_cpus)
    return {
        "kind": "predict",
        "cache_policy": r.get("cache"),
        "kernel_version": preset.kernel,
        "events": r["injections"],
        "msis": r["injections"],
        "lookups": r["injections"],
        "hits": r["hits"],
        "evictions": r["evictions"],
        "recycles": r["recycles"],
        "hit_rate": r["hit_rate"],
        "latency_p50_ns": r["latency_p50_ns"],
        "latency_p99_ns": r["latency_p99_ns"],
        "latency_max_ns": r["latency_max_ns"],
        "elapsed_ns": r["elapsed_s"] * 1e9,
        "lpis_per_sec": r["lpis_per_sec"],
        "vcpus": v,
        "devices": d,
        "events_per_device": e,
        "iterations": i,
        "routing": routing,
        "host_cpus": r.get("host_cpus"),
    }


def manifest_path(root: Path, cell: Cell) -> Path:
    return root / MANIFEST_DIR / f"{cell.cell_id}.json"


def run_cell(cell: Cell, root: str | Path) -> dict:
    """Run and write one cell; returns {"status": "done" | "failed", ...}, never raises for
    a bad input (a failed cell must not stop the others)."""
    root = Path(root)
    t0 = time.perf_counter()
    base = {"partition": cell.partition, "cell_id": cell.cell_id}
    try:
        if cell.gictools_version != __version__:
            raise RuntimeError(
                f"this worker runs gictools {__version__}, the sweep's driver "
                f"{cell.gictools_version}: install the same version on every worker"
            )
        if cell.kind == "replay":
            row, files, rows, sha = _replay_cell(cell, root)
            if sha is not None and cell.trace_sha256 and sha != cell.trace_sha256:
                raise RuntimeError(
                    f"{cell.trace_path} changed during the sweep (SHA-256 {sha[:12]}..., "
                    f"planned {cell.trace_sha256[:12]}...); run the sweep again"
                )
        else:
            row, files, rows = _predict_cell(cell), [], 0
        wall = time.perf_counter() - t0
        row.update(wall_s=wall, gictools_version=__version__)
        cdir = root / CELLS_DIR / cell.partition
        cdir.mkdir(parents=True, exist_ok=True)
        _write_table(pa.Table.from_pylist([row], schema=CELL_SCHEMA), cdir / CELL_FILE)
        files.append(f"{CELLS_DIR}/{cell.partition}/{CELL_FILE}")
        entry = {
            "identity": cell.identity(),
            "trace": cell.trace_path,
            "trace_sha256": row.get("trace_sha256") or cell.trace_sha256,
            "gictools_version": __version__,
            "files": files,
            "event_rows": rows,
            "wall_s": wall,
            "host": socket.gethostname(),
            "finished_unix": time.time(),
        }
        for f in files:
            _fsync(root / f)
            _fsync((root / f).parent)
        mdir = root / MANIFEST_DIR
        mdir.mkdir(parents=True, exist_ok=True)
        _unlink(mdir / f"{cell.cell_id}.failed.json")
        write_atomic(manifest_path(root, cell), [json.dumps(entry, indent=1).encode()])
        total = time.perf_counter() - t0  # with the writes and syncs after the row
        return {**base, "status": "done", "wall_s": wall, "total_s": total, "row": row}
    except Exception as e:
        from gictools.errors import GictoolsError

        msg = str(e) if isinstance(e, (GictoolsError, OSError)) else f"{type(e).__name__}: {e}"
        try:
            mdir = root / MANIFEST_DIR
            mdir.mkdir(parents=True, exist_ok=True)
            write_atomic(
                mdir / f"{cell.cell_id}.failed.json",
                [json.dumps({"identity": cell.identity(), "error": msg}, indent=1).encode()],
            )
        except (OSError, GictoolsError):
            pass
        return {**base, "status": "failed", "error": msg, "wall_s": time.perf_counter() - t0}


MAX_MANIFEST_BYTES = 1 << 20  # an entry is under a kilobyte: anything larger is not one


def read_manifest(path: Path) -> tuple[dict | None, str | None]:
    """(entry, None); (None, None) when there is none; (None, warning naming the file) when
    it is damaged (not a regular file, too large, not JSON, nested too deeply): its cell
    counts as not finished and runs again, which replaces it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block the driver
    except FileNotFoundError:
        return None, None
    except OSError as e:
        return None, f"{path}: cannot read the manifest entry ({e.strerror}); the cell runs again"
    with os.fdopen(fd, "rb") as f:
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None, f"{path}: not a regular file; the cell runs again"
            data = f.read(MAX_MANIFEST_BYTES + 1)
        except OSError as e:
            return (
                None,
                f"{path}: cannot read the manifest entry ({e.strerror}); the cell runs again",
            )
    if len(data) > MAX_MANIFEST_BYTES:
        return None, (
            f"{path}: larger than {MAX_MANIFEST_BYTES:,} bytes, not a manifest entry; "
            "the cell runs again"
        )
    try:
        entry = json.loads(data)
    except RecursionError:
        return None, f"{path}: nested too deeply, not a manifest entry; the cell runs again"
    except ValueError as e:
        return None, f"{path}: not a manifest entry ({e}); the cell runs again"
    if not isinstance(entry, dict):
        return None, f"{path}: not a manifest entry (a JSON object); the cell runs again"
    return entry, None


def is_finished(root: Path, cell: Cell, warn=None) -> bool:
    """A manifest entry with this cell's identity, and its files present. warn(message) is
    called for a damaged entry (read_manifest)."""
    entry, problem = read_manifest(manifest_path(root, cell))
    if problem is not None and warn is not None:
        warn(problem)
    if entry is None or entry.get("identity") != cell.identity():
        return False
    files = entry.get("files")
    return isinstance(files, list) and all(
        isinstance(f, str) and (root / f).is_file() for f in files
    )


def read_cell_row(root: Path, cell: Cell) -> dict | None:
    """The cell's one summary row (None if its file is not one: a damaged file is never
    read whole)."""
    try:
        pf = pq.ParquetFile(root / CELLS_DIR / cell.partition / CELL_FILE)
        if pf.metadata.num_rows != 1:
            return None
        return pf.read().to_pylist()[0]
    except (OSError, IndexError, pa.ArrowException):
        return None
