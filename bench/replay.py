"""Replay benchmark (not a test): events/s per cache policy vs the msgpack decode floor.

Generates an lpi-stress trace once (cached under --dir), then, each in its own
process so that peak RSS is that stage's own:
  floor   decode alone, every MSI's fields delivered to Python as ints
  replay  full model + per-event Parquet stats, one policy per run
and prints events/s, the ratio to the floor measured in the same run, and peak RSS.

    python bench/replay.py                 # 10M MSIs (-v1 -d1 -e16 -i625000)
    python bench/replay.py --events 1000000 --policies lru-v6.8
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
            for t, d, e in zip(ts.tolist(), dev.tolist(), ev.tolist()):
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
    print(json.dumps({"stage": stage, "policy": policy, "events": n, "seconds": dt,
                      "rss_mb": rss}))


def run_child(*args):
    res = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True,
                         text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--dir", default="/tmp/gictools-bench")
    ap.add_argument("--policies", nargs="*",
                    default=["none", "lru-v6.8", "usage-v2", "per-its-v6.10"])
    ap.add_argument("--no-parquet", action="store_true")
    ap.add_argument("--child", nargs=4, metavar=("STAGE", "TRACE", "POLICY", "OUT"))
    a = ap.parse_args()
    if a.child:
        stage, trace, policy, out = a.child
        child(stage, trace, policy, None if out == "-" else out)
        return
    os.makedirs(a.dir, exist_ok=True)
    iters = max(1, a.events // 16)
    trace = os.path.join(a.dir, f"lpi-stress-v1-d1-e16-i{iters}.msgpack")
    if not os.path.exists(trace):
        from gictools.trace.gen_lpi_stress import generate
        t = time.perf_counter()
        generate(trace, 1, 1, 16, iters)
        print(f"generated {trace} in {time.perf_counter() - t:.1f} s")
    print(f"trace: {trace} ({os.path.getsize(trace) / 1e6:.0f} MB), "
          f"{16 * iters:,} MSIs, Python {sys.version.split()[0]}")
    floor = run_child("floor", trace, "-", "-")
    f_rate = floor["events"] / floor["seconds"]
    print(f"{'stage':<26}{'events/s':>14}{'x floor':>10}{'seconds':>10}{'peak RSS':>12}")
    print(f"{'decode floor':<26}{f_rate:>14,.0f}{1.0:>10.2f}{floor['seconds']:>10.2f}"
          f"{floor['rss_mb']:>10.0f}MB")
    for pol in a.policies:
        out = "-" if a.no_parquet else os.path.join(a.dir, f"out-{pol}.parquet")
        r = run_child("replay", trace, pol, out)
        rate = r["events"] / r["seconds"]
        print(f"{'replay+stats ' + pol:<26}{rate:>14,.0f}{f_rate / rate:>10.2f}"
              f"{r['seconds']:>10.2f}{r['rss_mb']:>10.0f}MB")


if __name__ == "__main__":
    main()
