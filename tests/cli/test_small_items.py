"""Issue 25 point 9, the smaller items that live in the CLI/output layer: hit rates show
misses, the sweep table fits 100 columns, one count of records, predict --lockstep names no
seed, JSON latencies are integers, mrc says what its curve ignores."""

import json
from pathlib import Path

from typer.testing import CliRunner

from gictools.cli import app
from gictools.report import percent
from gictools.sweep.report import TABLE_WIDTH, _fit

runner = CliRunner()
ROOT = Path(__file__).parent.parent.parent
T4 = str(ROOT / "traces" / "lpi-stress-v4-d4-e8-fixed.msgpack")
T1 = str(ROOT / "traces" / "lpi-stress-v1-d1-e17.msgpack")


def test_hit_rate_shows_misses():
    assert percent(1 - 272 / 10_000_000) == "99.997%"  # was 100.00% with 272 misses
    assert percent(0.98) == "98.00%" and percent(1.0) == "100.00%" and percent(0.0) == "0.00%"
    assert percent(3e-7) == "0.00003%" and percent(None) == "-"


def test_sweep_table_fits_100_columns(tmp_path):
    r = runner.invoke(
        app, ["sweep", "-t", T4, "-t", T1, "--cache", "all", "-o", str(tmp_path / "d"), "-j", "1"]
    )
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert max(map(len, lines[:-1])) <= TABLE_WIDTH, lines  # the last line names the dataset
    assert lines[0] == "every cell: kernel default, preset fixed-v0, status done"


def test_fit_shortens_trace_names_keeping_their_ends():
    head = ["policy", "trace", "n"]
    rows = [["lru", "lpi-stress-v4-d4-e8-fixed", "1"], ["lru", "lpi-stress-v1-d1-e17", "2"]]
    h, body, common = _fit(head, rows, width=14)
    assert h == ["trace", "n"]
    assert common == [("policy", "lru"), ("trace", "lpi-stress-*")]
    assert [r[0] for r in body] == ["v4-d4~fixed", "v1-d1-e17"]
    widths = [max(len(x) for x in col) for col in zip(h, *body)]
    assert sum(widths) + 2 * (len(widths) - 1) <= 14


def test_one_count_of_records(tmp_path):
    r = runner.invoke(app, ["save", T4, "-o", str(tmp_path / "t.img"), "-q"])
    saved = int(r.stdout.split(" after ")[1].split()[0].replace(",", ""))
    r = runner.invoke(app, ["info", T4])
    (line,) = [ln for ln in r.stdout.splitlines() if ln.startswith("records")]
    listed = int(line.split()[1].rstrip(":").replace(",", ""))
    last = runner.invoke(app, ["dump", T4]).stdout.splitlines()[-1]
    assert saved == listed == int(last.split()[0]) == 62


def test_predict_lockstep_names_no_seed():
    r = runner.invoke(
        app, ["predict", "lpi-stress", "-e", "4", "-i", "20", "--preset", "v6.10", "--lockstep"]
    )
    assert r.exit_code == 0, r.output
    assert "None" not in r.stdout and "lock-step: " in r.stdout


def test_json_latencies_are_integers(tmp_path):
    r = runner.invoke(
        app, ["predict", "lpi-stress", "-e", "4", "-i", "20", "--preset", "v6.10", "--json"]
    )
    doc = json.loads(r.stdout)

    def ns_values(d):
        if isinstance(d, dict):
            for k, v in d.items():
                if k.endswith("_ns"):
                    yield k, v
                yield from ns_values(v)
        elif isinstance(d, list):
            for v in d:
                yield from ns_values(v)

    found = list(ns_values(doc))
    assert found and all(isinstance(v, int) for _, v in found), found
    ds = tmp_path / "d"
    assert runner.invoke(app, ["sweep", "-t", T4, "-o", str(ds), "-j", "1"]).exit_code == 0
    doc = json.loads(runner.invoke(app, ["summarize", str(ds), "--json"]).stdout)
    found = list(ns_values(doc))
    assert found and all(isinstance(v, int) for _, v in found), found


def test_mrc_says_its_curve_ignores_invalidations():
    r = runner.invoke(app, ["mrc", T4])
    assert "note: the curve follows the MSIs' translations only" in r.stdout
    doc = json.loads(runner.invoke(app, ["mrc", T4, "--json"]).stdout)
    assert "commands that empty the cache" in doc["note"]
