"""mrc scaling benchmark (not a test): seconds per access as the distinct translations grow.

The stream: every key once in order, then as many accesses drawn at random (numpy, seed 1),
so half the accesses are cold misses and the caches thrash. Times the exact LRU curve
(the Fenwick stack-distance walk) and one usage-v2 simulation at half the distinct keys
(every fill into a full cache searches a victim). Linear time = constant us/access.

    python bench/mrc_scale.py                    # 10^4 .. 10^6 distinct keys
    python bench/mrc_scale.py --distinct 1000000
"""

import argparse
import time

import numpy as np

from gictools import mrc


def run(distinct: int) -> dict:
    rng = np.random.default_rng(1)
    keys = np.concatenate([np.arange(distinct), rng.integers(0, distinct, distinct)])
    acc = mrc.accesses_of(np.zeros(len(keys)), keys >> 16, keys & 0xFFFF)
    t = time.perf_counter()
    hist, _ = mrc._walk(acc.ids, acc.distinct)
    lru_s = time.perf_counter() - t
    t = time.perf_counter()
    (usage,) = mrc.usage_curve(acc, [distinct // 2])
    usage_s = time.perf_counter() - t
    return {"accesses": acc.n, "lru_s": lru_s, "usage_s": usage_s, "usage_miss": usage[1]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--distinct", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    a = ap.parse_args()
    print(
        f"{'distinct':>10}{'accesses':>11}{'LRU s':>8}{'us/acc':>8}{'usage-v2 s':>12}{'us/acc':>8}"
    )
    for d in a.distinct:
        r = run(d)
        n = r["accesses"]
        print(
            f"{d:>10,}{n:>11,}{r['lru_s']:>8.2f}{r['lru_s'] / n * 1e6:>8.2f}"
            f"{r['usage_s']:>12.2f}{r['usage_s'] / n * 1e6:>8.2f}"
        )


if __name__ == "__main__":
    main()
