"""Issue 25 point 8: a text latency histogram per policy (power-of-two buckets, as bpftrace's
hist()) in replay and compare, for an LKML cover letter."""

import json
from collections import Counter
from pathlib import Path

from typer.testing import CliRunner

from gictools.cli import app
from gictools.report import hist_text, log2_buckets

runner = CliRunner()
T4 = str(Path(__file__).parent.parent.parent / "traces" / "lpi-stress-v4-d4-e8-fixed.msgpack")


def test_buckets_are_bpftrace_s():
    assert log2_buckets(Counter({0: 2, 1: 1, 5: 3, 1023: 1, 1024: 4})) == [
        (0, None, 2),
        (1, None, 1),
        (2, 4, 0),
        (4, 8, 3),
        (8, 16, 0),
        (16, 32, 0),
        (32, 64, 0),
        (64, 128, 0),
        (128, 256, 0),
        (256, 512, 0),
        (512, 1024, 1),
        (1024, 2048, 4),
    ]
    assert log2_buckets([3, 3, 2, -5]) == [(None, 0, 1), (0, None, 0), (1, None, 0), (2, 4, 3)]
    assert log2_buckets({}) == []
    text = hist_text("latency_ns[x]", Counter({600: 10, 3000: 5, 1 << 20: 1}))
    lines = text.splitlines()
    assert lines[0] == "@latency_ns[x]:"
    assert lines[1] == "[512, 1K)" + " " * 11 + "      10 |" + "@" * 52 + "|"
    assert lines[3] == "[2K, 4K)" + " " * 12 + "       5 |" + "@" * 26 + " " * 26 + "|"
    assert lines[-1].startswith("[1M, 2M)") and " 1 |@@@@@ " in lines[-1]  # 52 / 10


def test_replay_hist_per_policy():
    r = runner.invoke(app, ["replay", T4, "-c", "lru-v6.8", "-c", "none", "--hist"])
    assert r.exit_code == 0, r.output
    out = r.stdout
    # the fixed placeholder cost: 1,568 hits at 250 ns, 32 misses at 750 ns (lru-v6.8)
    lru = out.split("@latency_ns[lru-v6.8]:\n")[1].splitlines()[:3]
    assert [ln.split("|")[0].split() for ln in lru] == [
        ["[128,", "256)", "1568"],
        ["[256,", "512)", "0"],
        ["[512,", "1K)", "32"],
    ]
    assert "@latency_ns[none]:" in out
    r = runner.invoke(app, ["replay", T4, "-c", "lru-v6.8"])
    assert "@latency_ns" not in r.stdout  # only when asked


def test_replay_and_compare_hist_json():
    r = runner.invoke(app, ["replay", T4, "-c", "lru-v6.8", "--hist", "--json"])
    (rep,) = json.loads(r.stdout)["reports"]
    assert rep["latency_hist"] == [
        {"lo": 128, "hi": 256, "count": 1568},
        {"lo": 256, "hi": 512, "count": 0},
        {"lo": 512, "hi": 1024, "count": 32},
    ]
    r = runner.invoke(app, ["compare", T4, "--preset", "v6.10", "--hist", "--json"])
    assert r.exit_code == 0, r.output
    (res,) = json.loads(r.stdout)["results"]
    assert sum(b["count"] for b in res["latency_hist"]) == 1600


def test_compare_hist_text():
    r = runner.invoke(app, ["compare", T4, "--preset", "v6.10", "--preset", "v6.8-rc1", "--hist"])
    assert r.exit_code == 0, r.output
    for title in ("@latency_ns[v6.10, per-its-v6.10]:", "@latency_ns[v6.8-rc1, lru-v6.8]:"):
        block = r.stdout.split(title + "\n")[1].split("\n\n")[0].splitlines()
        assert sum(int(ln.split("|")[0].split()[-1]) for ln in block) == 1600
