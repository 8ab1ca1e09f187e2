"""sweep and summarize print JSON as every verb does (docs/cli-json.md): one schema-tagged
document on stdout, strict JSON (no bare NaN), documented."""

import json
import math
from pathlib import Path

from typer.testing import CliRunner

from gictools.cli import app
from gictools.sweep.cli_support import _text
from gictools.sweep.grid import cells_from_args
from gictools.sweep.run import SweepResult

ROOT = Path(__file__).resolve().parents[2]
TRACE = ROOT / "traces" / "lpi-stress-v4-d4-e8-fixed.msgpack"


def _strict(text):
    def no_constant(name):
        raise AssertionError(f"not JSON: {name}")

    return json.loads(text, parse_constant=no_constant)


def test_sweep_and_summarize_json_are_schema_tagged(tmp_path):
    root = tmp_path / "ds"
    args = ["sweep", "-t", str(TRACE), "-c", "lru-v6.8", "-j", "1", "-q", "-o", str(root)]
    r = CliRunner().invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    doc = _strict(r.stdout)
    assert doc["schema"] == "gictools.sweep/1"
    assert doc["counts"] == {"done": 1, "skipped": 0, "failed": 0, "total": 1}
    assert doc["cells"][0]["summary"]["msis"] == 1600
    r = CliRunner().invoke(app, ["summarize", str(root), "--json"])
    assert r.exit_code == 0, r.output
    doc = _strict(r.stdout)
    assert doc["schema"] == "gictools.summarize/1"
    assert [(g["policy"], g["msis"]) for g in doc["replay"]] == [("lru-v6.8", 1600)]


def test_sweep_json_has_no_bare_nan(tmp_path):
    cells = cells_from_args([str(TRACE)], ["none"])
    row = {"msis": 3, "hit_rate": math.nan, "latency_p50_ns": math.inf}
    res = SweepResult(
        tmp_path, cells, {cells[0].partition: {"status": "done", "row": row}}, "local", 0.1
    )
    doc = _strict(_text(res, True))
    assert doc["schema"] == "gictools.sweep/1"
    assert doc["cells"][0]["summary"] == {"msis": 3, "hit_rate": "nan", "latency_p50_ns": "inf"}


def test_cli_json_doc_names_the_sweep_schemas():
    text = (ROOT / "docs" / "cli-json.md").read_text()
    for schema in ("gictools.sweep/1", "gictools.summarize/1"):
        assert f"`{schema}`" in text
