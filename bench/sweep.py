"""Sweep benchmark (not a test): local speed-up with 1 vs 2 workers, and the per-cell
overhead of the Dask path against the local path.

    python bench/sweep.py [--msis-per-cell N] [--tiny-cells N] [--repeat N]

1. Eight equal real cells (eight copies of a generated lpi-stress trace, lru-v6.8: the
   list cache's Python loop, the common case) on the local executor with -j 1 and -j 2:
   wall time of run_sweep, best of --repeat; speed-up ratio.
2. Per-cell overhead: --tiny-cells cells of a ~100-MSI trace, so that the work is small,
   through the local executor (-j 1) and a Dask LocalCluster (1 worker process, 1 thread,
   started beforehand and not timed); one worker each, so that workers do not compete.
   Each executor runs n/2 and n cells: the slope is its wall time per cell (start-up
   cancels out); minus the time run_cell measured for itself inside the worker (the cell
   with all its writes and syncs), it is the executor's overhead per cell (submit,
   pickle, schedule, return the result).
Prints the load average and the speed-up a pure CPU loop gets from 2 processes right
now: the sweep's figures mean little when the machine gives no more than that.
"""

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from gictools.sweep.grid import cells_from_args
from gictools.sweep.run import run_sweep
from gictools.trace.gen_lpi_stress import generate

POLICIES = ["none", "lru-v6.8", "usage-v2", "per-its-v6.10"]


def _spin(n):
    x = 0
    for i in range(n):
        x += i
    return x


def machine_ceiling(repeat, n=10_000_000):
    """The speed-up this machine gives 2 processes over 1 right now, for 4 pure-Python
    CPU loops: the ceiling for the sweep's, since other work shares the CPUs."""
    import concurrent.futures as cf

    walls = {}
    for j in (1, 2):
        runs = []
        for _ in range(repeat):
            t = time.perf_counter()
            with cf.ProcessPoolExecutor(j) as ex:
                list(ex.map(_spin, [n] * 4))
            runs.append(time.perf_counter() - t)
        walls[j] = min(runs)
    return walls[1] / walls[2]


def timed_sweep(cells, root, **kw):
    shutil.rmtree(root, ignore_errors=True)
    t = time.perf_counter()
    r = run_sweep(cells, root, **kw)
    wall = time.perf_counter() - t
    assert r.count("done") == len(cells), [v for v in r.results.values() if v["status"] != "done"]
    return wall, sum(v["total_s"] for v in r.results.values()) / len(cells)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--msis-per-cell", type=int, default=400_000)
    ap.add_argument("--tiny-cells", type=int, default=160)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gictools-bench-sweep-"))
    try:
        print(f"load average {os.getloadavg()}, {os.cpu_count()} CPUs")
        iters = max(1, a.msis_per_cell // (4 * 32))
        generate(tmp / "t0.msgpack", 4, 4, 32, iters, "fixed")
        for k in range(1, 8):
            shutil.copy(tmp / "t0.msgpack", tmp / f"t{k}.msgpack")
        cells = cells_from_args([str(tmp / "t*.msgpack")], ["lru-v6.8"])
        assert len(cells) == 8
        msis = 4 * 32 * iters
        walls = {}
        for j in (1, 2):
            walls[j] = min(timed_sweep(cells, tmp / f"ds-j{j}", jobs=j)[0] for _ in range(a.repeat))
            print(
                f"8 cells x {msis:,} MSIs, local -j {j}: {walls[j]:.2f} s "
                f"({8 * msis / walls[j] / 1e6:.2f} M MSIs/s aggregate)"
            )
        print(f"speed-up -j 2 vs -j 1: {walls[1] / walls[2]:.2f}x")
        print(
            f"(this machine now: 2 processes vs 1 on a pure CPU loop: {machine_ceiling(a.repeat):.2f}x)"
        )

        generate(tmp / "tiny.msgpack", 1, 1, 4, 25, "as-measured")
        for k in range(a.tiny_cells // len(POLICIES)):
            shutil.copy(tmp / "tiny.msgpack", tmp / f"tiny{k:03d}.msgpack")
        (tmp / "tiny.msgpack").unlink()
        tiny = cells_from_args([str(tmp / "tiny*.msgpack")], POLICIES)
        n = len(tiny)
        half = tiny[: n // 2]

        def per_cell(**kw):
            """One worker: (wall per cell from the slope between n/2 and n cells, work per
            cell as run_cell timed itself inside the worker, fixed start-up)."""
            w1 = min(timed_sweep(half, tmp / "ds-x", **kw)[0] for _ in range(a.repeat))
            runs = [timed_sweep(tiny, tmp / "ds-x", **kw) for _ in range(a.repeat)]
            w2, work = min(runs)
            per = (w2 - w1) / (n - len(half))
            return per, work, w1 - per * len(half)

        local = per_cell(jobs=1)
        from distributed import LocalCluster

        t = time.perf_counter()
        with LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster:
            start = time.perf_counter() - t
            dask = per_cell(scheduler=cluster.scheduler_address)
        for name, (per, work, fixed) in (("local -j 1", local), ("dask, 1 worker process", dask)):
            print(
                f"{name}: {per * 1e3:.1f} ms/cell wall, of which run_cell {work * 1e3:.1f} ms: "
                f"overhead {(per - work) * 1e3:.1f} ms/cell; fixed start-up {fixed:.2f} s"
            )
        over = (dask[0] - dask[1]) - (local[0] - local[1])
        print(f"Dask path minus local path, overhead: {over * 1e3:.1f} ms/cell")
        print(f"(LocalCluster start, not included above: {start:.2f} s)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
