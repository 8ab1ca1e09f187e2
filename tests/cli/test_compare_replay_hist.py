"""Issue 25 (a report under point 8): `compare --preset v6.10 --preset v6.8-rc1 --hist` on
lpi-stress-v4-d4-e8-fixed gave one MSI a latency of -121,400 ns (a (..., 0) bucket; max
643,933 ns under v6.8-rc1) which `replay --preset` did not: compare ran a latency simulation
of its own. Since compare replays through the one latency model (merged in ddbd0e3), both
verbs must agree exactly: p50/p99/max, the histogram, and no negative latency."""

import json
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from gictools.cli import app

runner = CliRunner()
TRACES = Path(__file__).resolve().parents[2] / "traces"
PRESETS = ("v6.10", "v6.8-rc1")
KEYS = ("latency_p50_ns", "latency_p99_ns", "latency_max_ns", "latency_hist", "hits", "msis")


def _json(args):
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def _blocks(text):
    """{title: histogram lines} of a --hist text output."""
    out = {}
    for chunk in text.split("@latency_ns[")[1:]:
        title, _, body = chunk.partition("]:\n")
        out[title] = [ln for ln in body.split("\n\n")[0].splitlines() if "|" in ln]
    return out


@pytest.mark.parametrize("trace", ["lpi-stress-v4-d4-e8-fixed", "lpi-stress-v16-d16-e16"])
def test_compare_and_replay_give_the_same_latencies(tmp_path, trace):
    t = str(TRACES / f"{trace}.msgpack")
    presets = [a for p in PRESETS for a in ("--preset", p)]
    results = _json(["compare", t, *presets, "--hist", "--json"])["results"]
    assert [r["preset"] for r in results] == list(PRESETS)
    compare_text = _blocks(runner.invoke(app, ["compare", t, *presets, "--hist"]).stdout)
    for res in results:
        out = tmp_path / f"{res['preset']}.parquet"
        args = ["replay", t, "--preset", res["preset"], "--cache", res["cache"], "--hist"]
        (rep,) = _json([*args, "--json", "-o", str(out)])["reports"]
        assert {k: res[k] for k in KEYS} == {k: rep[k] for k in KEYS}, res["preset"]
        assert sum(b["count"] for b in rep["latency_hist"]) == rep["msis"]
        assert all(b["lo"] is not None and b["lo"] >= 0 for b in rep["latency_hist"])
        assert 0 < rep["latency_p50_ns"] <= rep["latency_p99_ns"] <= rep["latency_max_ns"]
        rows = pq.read_table(out)
        lat = rows.filter(pc.equal(rows["op"].cast("string"), "msi"))["latency_ns"]
        assert pc.min(lat).as_py() > 0 and pc.max(lat).as_py() == rep["latency_max_ns"]
        # the text histograms too, line for line
        replay_text = _blocks(runner.invoke(app, args).stdout)
        assert replay_text == {res["cache"]: compare_text[f"{res['preset']}, {res['cache']}"]}
    v610, rc1 = results
    if trace == "lpi-stress-v4-d4-e8-fixed":  # the reported case, known answers
        assert (v610["latency_p50_ns"], v610["latency_p99_ns"], v610["latency_max_ns"]) == (
            1670,
            3092,
            5119,
        )
        # v6.8-rc1 waits on lpi_list_lock: the model's values on lpi-2024a (line transfer tied
        # to hand-off / 5), pinned so a change in the lock model shows here
        assert (rc1["latency_p50_ns"], rc1["latency_p99_ns"], rc1["latency_max_ns"]) == (
            4784,
            6789,
            8024,
        )
