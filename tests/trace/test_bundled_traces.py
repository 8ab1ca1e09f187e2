"""Issue 25 point 9: the bundled traces are in the current format and regenerate exactly as
traces/README.md says; the format 1.0 original kept in fixtures/ replays to the same rows."""

import json
import shlex
from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

from gictools.cli import app
from gictools.trace import format as F
from gictools.trace.reader import TraceReader

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
TRACES = ROOT / "traces"
OLD_V4 = ROOT / "fixtures" / "trace-1.0" / "lpi-stress-v4-d4-e8-fixed.msgpack"


def _readme_commands():
    """The README's `gictools gen ...` lines, as argument lists."""
    text = (TRACES / "README.md").read_text()
    return [
        shlex.split(ln)[1:] for ln in text.splitlines() if ln.strip().startswith("gictools gen")
    ]


def test_every_bundled_trace_regenerates_byte_for_byte(tmp_path):
    cmds = _readme_commands()
    names = sorted(Path(c[c.index("-o") + 1]).name for c in cmds)
    assert names == sorted(p.name for p in TRACES.glob("*.msgpack"))  # one line per file
    for cmd in cmds:
        i = cmd.index("-o") + 1
        bundled = ROOT / cmd[i]
        out = tmp_path / bundled.name
        r = runner.invoke(app, [*cmd[:i], str(out), *cmd[i + 1 :]])
        assert r.exit_code == 0, r.output
        assert out.read_bytes() == bundled.read_bytes(), bundled.name
        with TraceReader(bundled) as rd:
            assert rd.version == F.VERSION == (1, 1)
            assert rd.counts is not None  # 1.1's header counts


def test_the_format_1_0_original_replays_the_same(tmp_path):
    """The 1.0 file and its 1.1 regeneration: the same rows for every policy (the trace
    column aside), the same reports (the trace's name and hash aside)."""
    with TraceReader(OLD_V4) as rd:
        assert rd.version == (1, 0) and rd.counts is None
    tables, reports = [], []
    for src in (OLD_V4, TRACES / OLD_V4.name):
        out = tmp_path / f"{src.parent.name}.parquet"
        r = runner.invoke(app, ["replay", str(src), "--cache", "all", "--json", "-o", str(out)])
        assert r.exit_code == 0, r.output
        tables.append(pq.read_table(out).drop(["trace"]))
        reps = json.loads(r.stdout)["reports"]
        for x in reps:
            for k in ("trace", "trace_sha256", "elapsed_ns", "lpis_per_sec"):
                x.pop(k, None)
        reports.append(reps)
    assert tables[0].num_rows == 6644 and tables[0].equals(tables[1])
    assert reports[0] == reports[1]
    assert [x["policy"] for x in reports[0]] == ["none", "lru-v6.8", "usage-v2", "per-its-v6.10"]
