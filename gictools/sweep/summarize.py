"""`gictools summarize DATASET`: what a kernel developer wants from a sweep.

Replay cells are grouped per policy x kernel x preset over all their traces: MSIs, hit
rate and evictions are sums over the cells; p50/p99 latency are exact over every MSI of
the group (streamed from the events, same definition as the replay's: the smallest value
with at least q of the MSIs at or below it); predicted LPIs/s is the group's MSIs over
its summed modelled time (the traces run one after another). Predict cells are listed
one per workload, since pooling different workloads' rates means nothing.
"""

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from gictools import plotting
from gictools.errors import ConfigError
from gictools.sweep.cell import CELL_FILE, CELLS_DIR, EVENTS_DIR
from gictools.sweep.grid import PARTITION_KEYS
from gictools.sweep.report import _num, _pct, table

HIVE = ds.partitioning(pa.schema([(k, pa.string()) for k in PARTITION_KEYS]), flavor="hive")
GROUP = ("policy", "kernel", "preset")
CELL_COLUMNS = (  # what summarize reads of a cell row
    "kind",
    "msis",
    "lookups",
    "hits",
    "hit_rate",
    "evictions",
    "elapsed_ns",
    "latency_p50_ns",
    "latency_p99_ns",
    "latency_max_ns",
    "lpis_per_sec",
    "failed_expectations",
    "msi_errors",
)


def open_dataset(root, which=EVENTS_DIR, files=None) -> ds.Dataset:
    """The events or cells table of a sweep, partition columns as strings; `files`: only
    those (checked_files), else every file under it."""
    path = Path(root) / which
    if not path.is_dir():
        raise ConfigError(f"{root}: not a sweep dataset (no {which}/ directory)")
    if files is None:
        return ds.dataset(path, format="parquet", partitioning=HIVE)
    return ds.dataset(
        [str(f) for f in files],
        format="parquet",
        partitioning=HIVE,
        partition_base_dir=str(path),
    )


def _fits(schema: pa.Schema, want: pa.Schema) -> bool:
    return all(
        schema.get_field_index(f.name) >= 0 and schema.field(f.name).type.equals(f.type)
        for f in want
    )


def checked_files(root, which, want: pa.Schema, one_row=False):
    """(good files, [(file, why skipped)]): every entry under which/ that a reader would
    pick up (pyarrow skips names starting with . or _) must be a Parquet file with the
    schema `want` (and one row, for cells). Reads footers only."""
    from gictools.sweep.grid import PARTITION_KEYS as KEYS

    base = Path(root) / which
    good, bad = [], []
    for dirpath, dirnames, filenames in os.walk(base):
        d = Path(dirpath)
        depth = len(d.relative_to(base).parts)
        for name in sorted(dirnames):
            if name.startswith((".", "_")):
                dirnames.remove(name)
            elif depth >= len(KEYS):  # a directory where the partition's file goes
                bad.append((str(d / name), "a directory where a Parquet file belongs"))
                dirnames.remove(name)
        for name in sorted(filenames):
            if name.startswith((".", "_")):
                continue
            f = d / name
            if depth != len(KEYS):
                bad.append((str(f), "outside the partition directories"))
                continue
            try:
                meta = pq.read_metadata(f)
                schema = meta.schema.to_arrow_schema()
            except (OSError, pa.ArrowException) as e:
                bad.append((str(f), f"not a readable Parquet file ({e})"))
                continue
            if not _fits(schema, want):
                what = "cells" if which == CELLS_DIR else "events"
                bad.append((str(f), f"not a sweep {what} file (its schema differs)"))
            elif one_row and meta.num_rows != 1:
                bad.append((str(f), f"{meta.num_rows} rows, a cell file has one"))
            else:
                good.append(f)
    return good, bad


def percentiles_from_counts(values, counts, qs):
    """Inverse-CDF percentiles of a histogram (sorted distinct values, their counts)."""
    if len(values) == 0:
        return [None for _ in qs]
    cum = np.cumsum(counts)
    return [float(values[np.searchsorted(cum, q * cum[-1], side="left")]) for q in qs]


def group_latency(events: ds.Dataset, key: dict, qs=(0.5, 0.99)):
    """Exact percentiles of latency_ns over the group's MSIs, streaming (memory: one
    batch plus the distinct latency values)."""
    flt = pc.field("op") == "msi"
    for k, v in key.items():
        flt = flt & (pc.field(k) == v)
    acc: dict[int, int] = {}
    for batch in events.to_batches(columns=["latency_ns"], filter=flt):
        col = batch.column(0).drop_null().to_numpy()
        vals, cnt = np.unique(col, return_counts=True)
        for v, c in zip(vals.tolist(), cnt.tolist()):
            acc[v] = acc.get(v, 0) + c
    vals = np.array(sorted(acc), dtype=np.int64)
    return percentiles_from_counts(vals, np.array([acc[v] for v in vals.tolist()]), qs)


def summarize(root) -> dict:
    """{"replay": [per policy x kernel x preset], "predict": [per cell], "skipped": [...]}.

    A damaged file (wrong schema, not Parquet, a directory in its place) is left out and
    listed in "skipped" ({"file", "reason"}), with the cell it belongs to: the CLI warns
    per file and exits 1 unless --skip-bad."""
    try:
        return _summarize(root)
    except (pa.ArrowException, KeyError) as e:  # a damaged or foreign file in the tree
        raise ConfigError(f"{root}: unreadable sweep dataset: {e}") from None


def _partition_of(base: Path, f) -> str:
    return "/".join(Path(f).relative_to(base).parts[: len(PARTITION_KEYS)])


def _summarize(root) -> dict:
    root = Path(root)
    cells, event_files, skipped = _good_cells(root)
    replay = _replay_rows(root, cells, event_files)
    predict = _predict_rows(cells)
    return {"dataset": str(root), "replay": replay, "predict": predict, "skipped": skipped}


def _good_cells(root: Path) -> tuple[list[dict], list, list[dict]]:
    """(cell rows, event files, skipped files): a cell and its events are used together or
    not at all; ConfigError when no cell is left."""
    from gictools.stats.schema import SCHEMA
    from gictools.sweep.cell import CELL_SCHEMA

    if not (root / CELLS_DIR).is_dir():  # no dataset opened yet: a damaged file would fail it
        raise ConfigError(f"{root}: not a sweep dataset (no {CELLS_DIR}/ directory)")
    # the columns read here (a dataset of an older gictools, without later columns, reads)
    cells_schema = pa.schema([CELL_SCHEMA.field(n) for n in CELL_COLUMNS])
    cell_files, bad = checked_files(root, CELLS_DIR, cells_schema, one_row=True)
    # the sweep strips the columns named like a partition key (cell._strip_partition_columns)
    events_schema = pa.schema([f for f in SCHEMA if f.name not in PARTITION_KEYS])
    event_files, bad_events = checked_files(root, EVENTS_DIR, events_schema)
    bad += bad_events
    # a replay cell whose events are damaged is left out whole (its sums and its
    # percentiles would disagree)
    have_events = {_partition_of(root / EVENTS_DIR, f) for f in event_files}
    cells = []
    rows = []
    if cell_files:
        cells_ds = open_dataset(root, CELLS_DIR, cell_files)
        rows = cells_ds.to_table(columns=[*CELL_COLUMNS, *PARTITION_KEYS]).to_pylist()
    for c in rows:
        part = "/".join(f"{k}={c[k]}" for k in PARTITION_KEYS)
        if c["kind"] == "replay" and part not in have_events:
            f = root / CELLS_DIR / part / CELL_FILE
            bad.append((str(f), "its cell's events file is missing or damaged"))
            continue
        cells.append(c)
    # and events without a good cell row likewise (a damaged cell file, or a cell that
    # never finished): they would count in the percentiles and nowhere else
    with_row = {"/".join(f"{k}={c[k]}" for k in PARTITION_KEYS) for c in cells}
    orphans = [f for f in event_files if _partition_of(root / EVENTS_DIR, f) not in with_row]
    bad += [(str(f), "its cell file is missing or damaged") for f in orphans]
    event_files = [f for f in event_files if f not in orphans]
    skipped = [{"file": f, "reason": why} for f, why in sorted(bad)]
    if not cells and skipped:
        first = skipped[0]
        raise ConfigError(
            f"{root}: unreadable sweep dataset: no readable cell ({len(skipped)} damaged "
            f"file(s), the first {first['file']}: {first['reason']})"
        )
    if not cells:
        raise ConfigError(f"{root}: the dataset has no finished cells")
    return cells, event_files, skipped


def _replay_rows(root: Path, cells: list[dict], event_files: list) -> list[dict]:
    """One row per GROUP of replay cells: sums, rates and the events' latency percentiles."""
    events = None
    groups: dict[tuple, list] = {}
    for c in cells:
        if c["kind"] == "replay":
            groups.setdefault(tuple(c[k] for k in GROUP), []).append(c)
    replay = []
    for key in sorted(groups):
        g = groups[key]
        msis = sum(c["msis"] for c in g)
        lookups = sum(c["lookups"] for c in g)
        hits = sum(c["hits"] for c in g)
        elapsed = [c["elapsed_ns"] for c in g]
        have_time = all(e is not None for e in elapsed) and sum(elapsed) > 0
        if events is None:
            events = open_dataset(root, EVENTS_DIR, event_files)
        p50, p99 = group_latency(events, dict(zip(GROUP, key)))
        replay.append(
            {
                **dict(zip(GROUP, key)),
                "cells": len(g),
                "traces": len({c["trace"] for c in g}),
                "msis": msis,
                "hits": hits,
                "lookups": lookups,
                "hit_rate": hits / lookups if lookups else None,
                "evictions": sum(c["evictions"] for c in g),
                "latency_p50_ns": p50,
                "latency_p99_ns": p99,
                "latency_max_ns": max((c["latency_max_ns"] or 0 for c in g), default=None),
                "lpis_per_sec": msis / sum(elapsed) * 1e9 if have_time else None,
                "failed_expectations": sum(c["failed_expectations"] or 0 for c in g),
                "msi_errors": sum(c["msi_errors"] or 0 for c in g),
            }
        )
    return replay


def _predict_rows(cells: list[dict]) -> list[dict]:
    """The predict cells' own rows, in partition order."""
    return [
        {
            **{k: c[k] for k in PARTITION_KEYS},
            **{
                k: c[k]
                for k in (
                    "msis",
                    "hits",
                    "hit_rate",
                    "evictions",
                    "latency_p50_ns",
                    "latency_p99_ns",
                    "lpis_per_sec",
                )
            },
        }
        for c in sorted(
            (c for c in cells if c["kind"] == "predict"),
            key=lambda c: tuple(c[k] for k in PARTITION_KEYS),
        )
    ]


def format_summary(s: dict) -> str:
    out = []
    cols = ("MSIs", "hit rate", "evictions", "p50 ns", "p99 ns", "LPIs/s")

    def nums(r):
        return [
            _num(r["msis"]),
            _pct(r["hit_rate"]),
            _num(r["evictions"]),
            _num(r["latency_p50_ns"]),
            _num(r["latency_p99_ns"]),
            _num(r["lpis_per_sec"]),
        ]

    if s["replay"]:
        out.append("replay cells, per policy x kernel x preset (summed over traces):")
        out.append(
            table(
                [*GROUP, "traces", *cols],
                [[*(r[k] for k in GROUP), str(r["traces"]), *nums(r)] for r in s["replay"]],
            )
        )
    if s["predict"]:
        if out:
            out.append("")
        out.append("predict cells (lpi-stress), one per workload:")
        out.append(
            table(
                [*PARTITION_KEYS, *cols],
                [[*(r[k] for k in PARTITION_KEYS), *nums(r)] for r in s["predict"]],
            )
        )
    return "\n".join(out)


_PLOTS = (  # (key, axis label, title, file, why a group has no value)
    (
        "hit_rate",
        "translation-cache hit rate",
        "Translation-cache hit rate",
        "sweep-hit-rate.png",
        "no cache lookups (policy none)",
    ),
    ("lpis_per_sec", "predicted LPIs/s", "Predicted LPIs/s", "sweep-lpis.png", "no modelled time"),
)


def plot(s: dict, outdir, skipped: list[str] | None = None) -> list[str]:
    """Bar charts of hit rate and predicted LPIs/s per group (matplotlib, the plot extra).
    skipped, if given, gets one line per plot or group left out and why."""
    plt = plotting.pyplot()
    outdir = plotting.outdir(outdir)
    rows = [("/".join(r[k] for k in GROUP), r) for r in s["replay"]]
    rows += [(f"predict {r['preset']}/{r['trace']}", r) for r in s["predict"]]
    ntraces = max((r["traces"] for r in s["replay"]), default=0)
    files: list[str] = []
    for key, label, title, name, why in _PLOTS:
        pts = [(n, r[key]) for n, r in rows if r[key] is not None]
        missing = [n for n, r in rows if r[key] is None]
        if skipped is not None and missing and pts:
            skipped.append(f"{name}: left out {', '.join(missing)}: {why}")
        if not pts:
            if skipped is not None:
                skipped.append(f"{name}: not drawn: no group has a value ({why})")
            continue
        fig, ax = plt.subplots(figsize=(8, 0.35 * len(pts) + 1.4))
        ax.barh([n for n, _ in pts], [v for _, v in pts])
        ax.invert_yaxis()
        ax.set_xlabel(label)
        if key == "hit_rate":
            plotting.percent_ticks(ax.xaxis)
        else:
            plotting.plain_ticks(ax.xaxis)
        summed = f", summed over {ntraces} trace(s)" if ntraces else ""
        ax.set_title(f"{title} per policy/kernel/preset{summed}", fontsize=10)
        fig.tight_layout()
        plotting.save(fig, outdir / name, files)
    return files
