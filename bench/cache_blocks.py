"""Cache-policy block benchmark (not a test): in-process MSIs/s of the block path per policy.

For each lpi-stress shape, replays the trace through gictools.replay.Replayer without a
Parquet file and times only the policy's share: the inject_block calls (translation of
each distinct key, the policy's run_block, latches). lru-v6.8 and usage-v2 run twice: the
C loops (gictools/model/cache/_blocks.c, where the install built them) and pure Python
(what a machine without a C compiler runs).

    python bench/cache_blocks.py                       # 10 M MSIs, -v16 -d16 -e16 and -v1 -d1 -e17
    python bench/cache_blocks.py --events 1000000 --shapes 1,1,17
"""

import argparse
import json
import os
import subprocess
import sys
import time


def cold_start():
    code = (
        "import time; t = time.perf_counter(); from gictools.model.cache import native; "
        "print(time.perf_counter() - t, native.available())"
    )
    here = os.path.dirname(os.path.abspath(__file__))  # import gictools as the children do
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=here
    )
    t, ok = r.stdout.split()
    print(
        f"C loops: {'available' if ok == 'True' else 'NOT BUILT'}; import {float(t) * 1e3:.1f} ms"
    )


def child(trace, policy, engine, out):
    import gictools.replay as rp
    import gictools.replay.block as rp_block
    from gictools.model import block
    from gictools.model.cache import native

    spent = [0.0, 0, 0.0]  # wall s, MSIs, CPU s
    real = block.inject_block

    def timed(vm, its, dev, ev):
        t, c = time.perf_counter(), time.process_time()
        r = real(vm, its, dev, ev)
        spent[0] += time.perf_counter() - t
        spent[2] += time.process_time() - c
        spent[1] += len(dev)
        return r

    if engine is not None:
        orig = native.use
        native.use = lambda n, u=None, c=0: orig(n, engine, c)
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
    ap.add_argument("--child", nargs=4, metavar=("TRACE", "POLICY", "ENGINE", "OUT"))
    a = ap.parse_args()
    if a.child:
        trace, policy, j, out = a.child
        child(
            trace,
            policy,
            {"auto": None, "c": True, "python": False}[j],
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
            ("lru-v6.8", ["c", "python"]),
            ("usage-v2", ["c", "python"]),
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
