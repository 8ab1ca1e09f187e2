"""Sweep benchmark (not a test): local speed-up with 1 vs 2 workers, and the per-cell
overhead of the Dask path against the local path.

    python bench/sweep.py [--msis-per-cell N] [--tiny-cells N] [--repeat N]

1. Eight real cells (two generated lpi-stress traces x four cache policies) on the local
   executor with -j 1 and -j 2: wall time of run_sweep, best of --repeat; speed-up ratio.
2. Per-cell overhead: --tiny-cells cells of a ~100-MSI trace, so that the work is almost
   nothing, through the local executor (2 processes) and through a Dask LocalCluster
   (2 worker processes, 1 thread each, started beforehand and not timed); the same cells
   run back to back in this process (run_cell) give the work itself. Each executor runs
   n/2 and n cells; the slope is its wall time per cell (start-up cancels out), and
   slope x workers - in-process time per cell is its overhead per cell.
Prints the load average too: the figures mean little on a busy machine.
"""

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from gictools.sweep.cell import run_cell
from gictools.sweep.grid import cells_from_args
from gictools.sweep.run import run_sweep
from gictools.trace.gen_lpi_stress import generate

POLICIES = ["none", "lru-v6.8", "usage-v2", "per-its-v6.10"]


def timed_sweep(cells, root, **kw):
    shutil.rmtree(root, ignore_errors=True)
    t = time.perf_counter()
    r = run_sweep(cells, root, **kw)
    wall = time.perf_counter() - t
    assert r.count("done") == len(cells), [v for v in r.results.values() if v["status"] != "done"]
    return wall


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--msis-per-cell", type=int, default=400_000)
    ap.add_argument("--tiny-cells", type=int, default=48)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gictools-bench-sweep-"))
    try:
        print(f"load average {os.getloadavg()}, {os.cpu_count()} CPUs")
        iters = max(1, a.msis_per_cell // (4 * 32))
        for name in ("t1", "t2"):
            generate(tmp / f"{name}.msgpack", 4, 4, 32, iters, "fixed")
        cells = cells_from_args([str(tmp / "t*.msgpack")], POLICIES)
        assert len(cells) == 8
        msis = 4 * 32 * iters
        walls = {}
        for j in (1, 2):
            walls[j] = min(timed_sweep(cells, tmp / f"ds-j{j}", jobs=j) for _ in range(a.repeat))
            print(
                f"8 cells x {msis:,} MSIs, local -j {j}: {walls[j]:.2f} s "
                f"({8 * msis / walls[j] / 1e6:.2f} M MSIs/s aggregate)"
            )
        print(f"speed-up -j 2 vs -j 1: {walls[1] / walls[2]:.2f}x")

        generate(tmp / "tiny.msgpack", 1, 1, 4, 25, "as-measured")
        for k in range(a.tiny_cells // len(POLICIES)):
            shutil.copy(tmp / "tiny.msgpack", tmp / f"tiny{k:03d}.msgpack")
        (tmp / "tiny.msgpack").unlink()
        tiny = cells_from_args([str(tmp / "tiny*.msgpack")], POLICIES)
        n = len(tiny)
        inproc = []
        for _ in range(a.repeat):
            shutil.rmtree(tmp / "ds-inproc", ignore_errors=True)
            t = time.perf_counter()
            for c in tiny:
                assert run_cell(c, str(tmp / "ds-inproc"))["status"] == "done"
            inproc.append(time.perf_counter() - t)
        work = min(inproc)
        print(f"{n} tiny cells in this process: {work / n * 1e3:.1f} ms/cell (the work itself)")
        half = tiny[: n // 2]

        def slope(**kw):
            """(per-cell wall, fixed start-up) from runs of n/2 and n cells."""
            w1 = min(timed_sweep(half, tmp / "ds-x", **kw) for _ in range(a.repeat))
            w2 = min(timed_sweep(tiny, tmp / "ds-x", **kw) for _ in range(a.repeat))
            per = (w2 - w1) / (n - len(half))
            return per, w1 - per * len(half)

        local = slope(jobs=2)
        from distributed import LocalCluster

        t = time.perf_counter()
        with LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster:
            start = time.perf_counter() - t
            dask = slope(scheduler=cluster.scheduler_address)
        for name, (per, fixed) in (("local -j 2", local), ("dask, 2 worker processes", dask)):
            print(
                f"{name}: {per * 1e3:.1f} ms/cell wall (2 workers), i.e. "
                f"{(2 * per - work / n) * 1e3:.1f} ms of worker time per cell beyond the work; "
                f"fixed start-up {fixed:.2f} s"
            )
        print(f"Dask path minus local path: {(dask[0] - local[0]) * 2 * 1e3:.1f} ms/cell")
        print(f"(LocalCluster start, not included above: {start:.2f} s)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
