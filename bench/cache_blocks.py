"""Cache-policy block benchmark (not a test): in-process MSIs/s of the block path per policy.

For each lpi-stress shape, replays the trace through gictools.replay.Replayer without a
Parquet file and times only the policy's share: the inject_block calls (translation of
each distinct key, the policy's run_block, latches). lru-v6.8 and usage-v2 run twice:
compiled (LLVM kernels, gictools/model/cache/_kernels.py) and pure Python (GICTOOLS_JIT=0
semantics via use_jit=False). Also measures the kernels' start (compile in a child process
and map the code, or MCJIT in-process where that is the path) in a fresh process.

    python bench/cache_blocks.py                       # 10 M MSIs, -v16 -d16 -e16 and -v1 -d1 -e17
    python bench/cache_blocks.py --events 1000000 --shapes 1,1,17
"""

import argparse
import json
import os
import subprocess
import sys
import time

COLD = r"""
import json, time
t0 = time.perf_counter()
from gictools.model.cache import jit
k = jit.kernels(0, True)
t1 = time.perf_counter()
import numpy as np
out = np.empty(4, np.int8); vic = np.full(4, -1, np.int64)
k.lru_block(np.zeros(4, np.int64), np.ones(1, np.bool_), np.zeros(0, np.int64), 16, out, vic)
t2 = time.perf_counter()
k.usage_block(np.zeros(4, np.int64), np.ones(1, np.bool_), np.zeros(0, np.int64),
              np.zeros(0, np.int64), 16, out, vic)
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "lru": t2 - t1, "usage": t3 - t2}))
"""


def cold_start():
    r = subprocess.run([sys.executable, "-c", COLD], capture_output=True, text=True, check=True)
    t = json.loads(r.stdout)
    print(
        f"kernels start: load {t['import']:.2f} s, lru first call {t['lru']:.3f} s, "
        f"usage first call {t['usage']:.3f} s, total {sum(t.values()):.2f} s"
    )


def child(trace, policy, use_jit, out):
    import gictools.replay as rp
    import gictools.replay.block as rp_block
    from gictools.model import block
    from gictools.model.cache import jit

    if use_jit is not False:  # load (or compile) the kernels first: cold start is measured apart
        import numpy as np

        k = jit.kernels(0, True)
        if k is not None:
            o, v = np.empty(1, np.int8), np.full(1, -1, np.int64)
            k.lru_block(np.zeros(1, np.int64), np.ones(1, np.bool_), np.zeros(0, np.int64), 1, o, v)
            k.usage_block(
                np.zeros(1, np.int64),
                np.ones(1, np.bool_),
                np.zeros(0, np.int64),
                np.zeros(0, np.int64),
                1,
                o,
                v,
            )

    spent = [0.0, 0, 0.0]  # wall s, MSIs, CPU s
    real = block.inject_block

    def timed(vm, its, dev, ev):
        t, c = time.perf_counter(), time.process_time()
        r = real(vm, its, dev, ev)
        spent[0] += time.perf_counter() - t
        spent[2] += time.process_time() - c
        spent[1] += len(dev)
        return r

    if use_jit is not None:
        orig = jit.kernels
        jit.kernels = lambda n, u=None: orig(n, use_jit)
    rp_block.inject_block = timed
    t, c = time.perf_counter(), time.process_time()
    rep = rp.Replayer(trace, [policy], out=out).run()[0]
    total, total_cpu = time.perf_counter() - t, time.process_time() - c
    print(
        json.dumps(
            {
                "msis": rep.msis,
                "block_s": spent[0],
                "block_cpu": spent[2],
                "total_cpu": total_cpu,
                "block_msis": spent[1],
                "total_s": total,
                "hits": rep.hits,
                "evictions": rep.evictions,
            }
        )
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument(
        "--shapes", nargs="*", default=["16,16,16", "1,1,17"], help="vcpus,devices,events"
    )
    ap.add_argument("--dir", default="/tmp/gictools-bench")
    ap.add_argument(
        "--repeat", type=int, default=3, help="runs per case (median); Python engine: 1"
    )
    ap.add_argument(
        "--parquet", action="store_true", help="also write the Parquet file (end to end)"
    )
    ap.add_argument("--child", nargs=4, metavar=("TRACE", "POLICY", "JIT", "OUT"))
    a = ap.parse_args()
    if a.child:
        trace, policy, j, out = a.child
        child(
            trace,
            policy,
            {"auto": None, "jit": True, "python": False}[j],
            None if out == "-" else out,
        )
        return
    os.makedirs(a.dir, exist_ok=True)
    cold_start()
    from gictools.trace.gen_lpi_stress import generate

    for shape in a.shapes:
        v, d, e = (int(x) for x in shape.split(","))
        iters = max(1, a.events // (d * e))
        trace = os.path.join(a.dir, f"lpi-stress-v{v}-d{d}-e{e}-i{iters}.msgpack")
        if not os.path.exists(trace):
            generate(trace, v, d, e, iters)
        print(f"\n-v {v} -d {d} -e {e} -i {iters}: {d * e * iters:,} MSIs")
        col = "e2e" if a.parquet else "replay"
        print(
            "MSIs/s (median of runs): block = inject_block calls only; "
            f"{col} = the whole replay{' with Parquet' if a.parquet else ', no Parquet'}; "
            "wall and CPU (process time: less sensitive to a shared machine)"
        )
        print(
            f"{'policy':<16}{'engine':<8}{'block wall':>13}{'block CPU':>13}"
            f"{col + ' wall':>14}{col + ' CPU':>14}{'hits':>12}{'evictions':>12}"
        )
        for pol, engines in (
            ("none", ["auto"]),
            ("per-its-v6.10", ["auto"]),
            ("lru-v6.8", ["jit", "python"]),
            ("usage-v2", ["jit", "python"]),
        ):
            for eng in engines:
                out = os.path.join(a.dir, "out.parquet") if a.parquet else "-"
                runs = []
                for _ in range(1 if eng == "python" else a.repeat):
                    r = subprocess.run(
                        [sys.executable, __file__, "--child", trace, pol, eng, out],
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    runs.append(json.loads(r.stdout.strip().splitlines()[-1]))

                def med(f, runs=runs):
                    return sorted(f(r) for r in runs)[len(runs) // 2]

                x = runs[0]
                print(
                    f"{pol:<16}{eng:<8}"
                    f"{med(lambda r: r['block_msis'] / r['block_s']):>13,.0f}"
                    f"{med(lambda r: r['block_msis'] / r['block_cpu']):>13,.0f}"
                    f"{med(lambda r: r['msis'] / r['total_s']):>14,.0f}"
                    f"{med(lambda r: r['msis'] / r['total_cpu']):>14,.0f}"
                    f"{x['hits']:>12,}{x['evictions']:>12,}"
                )


if __name__ == "__main__":
    main()
