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
    head, rows, common = _fit(head, rows)
    same = "every cell: " + ", ".join(f"{k} {v}" for k, v in common) + "\n" if common else ""
    return same + table(head, rows) + "\n" + tail


TABLE_WIDTH = 100  # a sweep table fits a 100-column terminal or mail


def _fit(head, rows, width=TABLE_WIDTH):
    """(head, rows, [(column, value)...]): text columns whose value is the same in every
    row go to one line above the table; then, if the table is still wider than width, the
    longest text column (a trace name) loses the prefix all its values share (said above
    the table as `trace lpi-stress-*`), then is shortened in the middle with `~`."""
    n = len(head)
    text = [i for i, h in enumerate(head) if h in PARTITION_KEYS or h == "status"]
    common = [
        (head[i], rows[0][i]) for i in text if len(rows) > 1 and len({r[i] for r in rows}) == 1
    ]
    keep = [i for i in range(n) if (head[i], rows[0][i] if rows else None) not in common]
    head = [head[i] for i in keep]
    rows = [[str(r[i]) for i in keep] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    over = sum(widths) + 2 * (len(widths) - 1) - width
    texts = [j for j, h in enumerate(head) if h in PARTITION_KEYS]
    if over > 0 and texts:
        j = max(texts, key=lambda j: widths[j])
        lo, hi = min(r[j] for r in rows), max(r[j] for r in rows)
        k = next((i for i, (a, b) in enumerate(zip(lo, hi)) if a != b), min(len(lo), len(hi)))
        prefix = lo[: lo.rfind("-", 0, k) + 1] if len(rows) > 1 else ""
        if len(prefix) > 3:
            common.append((head[j], prefix + "*"))
            for r in rows:
                r[j] = r[j][len(prefix) :]
            over -= widths[j] - max(len(head[j]), *(len(r[j]) for r in rows))
            widths[j] = max(len(head[j]), *(len(r[j]) for r in rows))
    if over > 0 and texts:
        room = max(len(head[j]), widths[j] - over)
        for r in rows:
            if len(r[j]) > room:
                keep_l = (room - 1) // 2
                r[j] = r[j][:keep_l] + "~" + r[j][len(r[j]) - (room - 1 - keep_l) :]
    return head, rows, common


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
