"""Replay benchmark (not a test): events/s per cache policy vs the msgpack decode floor.

Generates an lpi-stress trace once (cached under --dir), then, each in its own
process so that peak RSS is that stage's own:
  floor   decode alone, every MSI's fields delivered to Python as ints
  replay  full model + per-event Parquet stats, one policy per run
and prints events/s, the ratio to the floor measured in the same run, and peak RSS.

    python bench/replay.py                 # 1M and 10M MSIs (-v1 -d1 -e16), RSS growth
    python bench/replay.py --events 1000000 -e 17 --policies lru-v6.8   # the thrash shape
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _floor(trace):
    from gictools.trace import format as F
    from gictools.trace.reader import TraceReader

    n = 0
    acc = 0
    for rec in TraceReader(trace):
        if rec[0] == F.MSI_BLOCK:
            _, _, _, ts, dev, ev, _ = rec
            for _t, d, e in zip(ts.tolist(), dev.tolist(), ev.tolist()):
                acc ^= d ^ e
                n += 1
    return n


def _replay(trace, policy, out):
    from gictools.replay import replay

    rep = replay(trace, [policy], out=out)[0]
    return rep.msis


def child(stage, trace, policy, out):
    t = time.perf_counter()
    n = _floor(trace) if stage == "floor" else _replay(trace, policy, out)
    dt = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"stage": stage, "policy": policy, "events": n, "seconds": dt, "rss_mb": rss}))


def run_child(*args):
    res = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=True
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def bench_size(a, events):
    iters = max(1, events // a.e)
    trace = os.path.join(a.dir, f"lpi-stress-v1-d1-e{a.e}-i{iters}.msgpack")
    if not os.path.exists(trace):
        from gictools.trace.gen_lpi_stress import generate

        t = time.perf_counter()
        generate(trace, 1, 1, a.e, iters)
        print(f"generated {trace} in {time.perf_counter() - t:.1f} s")
    print(
        f"\ntrace: {trace} ({os.path.getsize(trace) / 1e6:.0f} MB), "
        f"{a.e * iters:,} MSIs, Python {sys.version.split()[0]}"
    )
    floor = run_child("floor", trace, "-", "-")
    f_rate = floor["events"] / floor["seconds"]
    print(f"{'stage':<26}{'events/s':>14}{'x floor':>10}{'seconds':>10}{'peak RSS':>12}")
    print(
        f"{'decode floor':<26}{f_rate:>14,.0f}{1.0:>10.2f}{floor['seconds']:>10.2f}"
        f"{floor['rss_mb']:>10.0f}MB"
    )
    rss = {}
    for pol in a.policies:
        out = "-" if a.no_parquet else os.path.join(a.dir, f"out-{pol}.parquet")
        r = run_child("replay", trace, pol, out)
        rate = r["events"] / r["seconds"]
        rss[pol] = r["rss_mb"]
        print(
            f"{'replay+stats ' + pol:<26}{rate:>14,.0f}{f_rate / rate:>10.2f}"
            f"{r['seconds']:>10.2f}{r['rss_mb']:>10.0f}MB"
        )
    return rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--events",
        type=int,
        nargs="+",
        default=[1_000_000, 10_000_000],
        help="trace sizes; with two or more, peak RSS growth is reported",
    )
    ap.add_argument(
        "-e",
        type=int,
        default=16,
        help="events per device (16: fits the 16-entry cache; 17: thrashes it)",
    )
    ap.add_argument("--dir", default="/tmp/gictools-bench")
    ap.add_argument(
        "--policies", nargs="*", default=["none", "lru-v6.8", "usage-v2", "per-its-v6.10"]
    )
    ap.add_argument("--no-parquet", action="store_true")
    ap.add_argument("--child", nargs=4, metavar=("STAGE", "TRACE", "POLICY", "OUT"))
    a = ap.parse_args()
    if a.child:
        stage, trace, policy, out = a.child
        child(stage, trace, policy, None if out == "-" else out)
        return
    os.makedirs(a.dir, exist_ok=True)
    sizes = sorted(a.events)
    results = [bench_size(a, n) for n in sizes]
    if len(sizes) > 1:
        print(f"\npeak RSS growth {sizes[0]:,} -> {sizes[-1]:,} events:")
        for pol in a.policies:
            lo, hi = results[0][pol], results[-1][pol]
            print(f"  {pol:<16}{lo:>6.0f} MB -> {hi:>6.0f} MB  ({100 * (hi / lo - 1):+.0f}%)")


if __name__ == "__main__":
    main()
