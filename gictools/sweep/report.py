"""Text and JSON for a sweep: the stderr progress display and the final table."""

import sys

from gictools.sweep.grid import PARTITION_KEYS


def _num(v, fmt="{:,.0f}"):
    return "-" if v is None else fmt.format(v)


def _pct(v):
    from gictools.report import percent

    return percent(v)


def table(head, rows) -> str:
    """Left-aligned partition and text columns, right-aligned numbers."""
    from gictools.report import render_table

    nleft = sum(1 for h in head if h in PARTITION_KEYS or h in ("status", "kind", "error"))
    return render_table(head, rows, left=nleft)


def sweep_table(result) -> str:
    """One line per grid cell: its partition, status and headline numbers."""
    head = [
        *PARTITION_KEYS,
        "status",
        "MSIs",
        "hit rate",
        "evictions",
        "p50 ns",
        "p99 ns",
        "LPIs/s",
    ]
    rows = []
    for c in sorted(result.cells, key=lambda c: c.partition):
        r = result.results.get(c.partition, {"status": "not run"})
        row = r.get("row") or {}
        rows.append(
            [
                *(getattr(c, k) for k in PARTITION_KEYS),
                r["status"],
                _num(row.get("msis")),
                _pct(row.get("hit_rate")),
                _num(row.get("evictions")),
                _num(row.get("latency_p50_ns")),
                _num(row.get("latency_p99_ns")),
                _num(row.get("lpis_per_sec")),
            ]
        )
    n = result
    tail = (
        f"{len(n.cells)} cells: {n.count('done')} run, {n.count('skipped')} already finished, "
        f"{n.count('failed')} failed"
        + (f", {len(n.cells) - len(n.results)} not run (interrupted)" if n.interrupted else "")
        + f"; {n.wall_s:.1f} s on {n.executor}; dataset {n.root}"
    )
    return table(head, rows) + "\n" + tail


def failures(result) -> list[str]:
    return [
        f"FAILED {p}: {r.get('error')}"
        for p, r in sorted(result.results.items())
        if r["status"] == "failed"
    ]


def sweep_json(result) -> dict:
    cells = []
    for c in sorted(result.cells, key=lambda c: c.partition):
        r = result.results.get(c.partition, {"status": "not run"})
        cells.append(
            {
                **{k: getattr(c, k) for k in PARTITION_KEYS},
                "kind": c.kind,
                "trace_path": c.trace_path,
                "status": r["status"],
                "error": r.get("error"),
                "wall_s": r.get("wall_s"),
                "summary": r.get("row"),
            }
        )
    return {
        "dataset": str(result.root),
        "executor": result.executor,
        "wall_s": result.wall_s,
        "interrupted": result.interrupted,
        "counts": {s: result.count(s) for s in ("done", "skipped", "failed")}
        | {"total": len(result.cells)},
        "cells": cells,
    }


class ProgressDisplay:
    """The CLI's progress bar over cells on stderr, only when stderr is a terminal."""

    def __init__(self, enabled=None):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.prog = self._cm = None

    def __enter__(self):
        if self.enabled:
            from gictools.cli.progress import progress

            self._cm = progress("sweep", None, unit="cells")
            self.prog = self._cm.__enter__()
        return self

    def __call__(self, s):
        if self.prog is None:
            return
        if self.prog.total is None:
            self.prog.set_total(s.total)
        self.prog.describe(f"sweep {s.failed} failed" if s.failed else "sweep")
        self.prog.update(s.finished)

    def __exit__(self, *exc):
        if self._cm is not None:
            self._cm.__exit__(*exc)
