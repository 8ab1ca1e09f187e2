"""Replay benchmark (not a test): MSIs/s per cache policy vs the msgpack decode floor.

Generates an lpi-stress trace per size once (cached under --dir), then, each in its own
process so that peak RSS is that run's own:
  floor   decode alone, every MSI's fields delivered to Python as ints
  replay  full model + per-event Parquet stats, one policy per run
  multi   all the policies in one run (one decode, one output file)
and prints, in one run: MSIs/s (wall) and CPU seconds, the ratio to the floor measured in
the same run, peak RSS, the multi-policy time against the sum of the one-policy runs, and
peak RSS growth from the smallest to the largest size.

    python bench/replay.py                       # 1M and 10M MSIs (-v1 -d1 -e16)
    python bench/replay.py --events 1000000 100000000 --policies per-its-v6.10
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


def _replay(trace, policies, out, jobs=1):
    from gictools.replay import replay

    reps = replay(trace, policies, out=out, jobs=jobs)
    return reps[0].msis


def child(stage, trace, policies, out):
    t = time.perf_counter()
    c = time.process_time()
    if stage == "floor":
        n = _floor(trace)
    else:
        n = _replay(trace, policies.split(","), out, 2 if stage == "parallel" else 1)
    dt = time.perf_counter() - t
    cpu = time.process_time() - c
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if stage == "parallel":  # the largest worker
        cpu += resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
        rss = max(rss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    print(json.dumps({"events": n, "seconds": dt, "cpu": cpu, "rss_mb": rss}))


def run_child(*args):
    res = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=True
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def _line(label, events, r, floor_rate):
    rate = events / r["seconds"]
    ratio = floor_rate / rate if floor_rate else 1.0
    print(
        f"{label:<30}{rate:>14,.0f}{ratio:>9.2f}{r['seconds']:>9.2f}{r['cpu']:>9.2f}"
        f"{r['rss_mb']:>9.0f}MB"
    )


def bench_size(a, events):
    iters = max(1, events // a.e)
    trace = os.path.join(a.dir, f"lpi-stress-v1-d1-e{a.e}-i{iters}.msgpack")
    if not os.path.exists(trace):
        from gictools.trace.gen_lpi_stress import generate

        t = time.perf_counter()
        generate(trace, 1, 1, a.e, iters)
        print(f"generated {trace} in {time.perf_counter() - t:.1f} s")
    n = a.e * iters
    print(
        f"\ntrace: {trace} ({os.path.getsize(trace) / 1e6:.0f} MB), "
        f"{n:,} MSIs, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    print(f"{'stage':<30}{'MSIs/s':>14}{'x floor':>9}{'wall s':>9}{'cpu s':>9}{'peak RSS':>11}")
    floor = run_child("floor", trace, "-", "-")
    f_rate = floor["events"] / floor["seconds"]
    _line("decode floor", floor["events"], floor, 0)
    rss, seq_wall = {}, 0.0
    for pol in a.policies:
        out = "-" if a.no_parquet else os.path.join(a.dir, f"out-{pol}.parquet")
        r = run_child("replay", trace, pol, out)
        rss[pol] = r["rss_mb"]
        seq_wall += r["seconds"]
        _line(f"replay+stats {pol}", n, r, f_rate)
    if len(a.policies) > 1:
        out = "-" if a.no_parquet else os.path.join(a.dir, "out-all.parquet")
        r = run_child("replay", trace, ",".join(a.policies), out)
        rss["all"] = r["rss_mb"]
        _line(f"all {len(a.policies)} policies, one run", n * len(a.policies), r, f_rate)
        if not a.no_parquet:
            rp = run_child("parallel", trace, ",".join(a.policies), out)
            rss["all --jobs 2"] = rp["rss_mb"]
            _line(f"all {len(a.policies)}, --jobs 2", n * len(a.policies), rp, f_rate)
        k = len(a.policies)
        for label, x in (("one run", r), ("--jobs 2", None if a.no_parquet else rp)):
            if x is not None:
                print(
                    f"multi-policy ({label}): {x['seconds']:.2f} s for {k} policies vs "
                    f"{seq_wall:.2f} s in {k} runs: {x['seconds'] / seq_wall:.2f}x the time"
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
    ap.add_argument("--child", nargs=4, metavar=("STAGE", "TRACE", "POLICIES", "OUT"))
    a = ap.parse_args()
    if a.child:
        stage, trace, policies, out = a.child
        child(stage, trace, policies, None if out == "-" else out)
        return
    os.makedirs(a.dir, exist_ok=True)
    sizes = sorted(a.events)
    results = [bench_size(a, n) for n in sizes]
    if len(sizes) > 1:
        print(f"\npeak RSS {sizes[0]:,} -> {sizes[-1]:,} MSIs:")
        for key in results[0]:
            lo, hi = results[0][key], results[-1][key]
            print(f"  {key:<16}{lo:>6.0f} MB -> {hi:>6.0f} MB  ({100 * (hi / lo - 1):+.0f}%)")


if __name__ == "__main__":
    main()
