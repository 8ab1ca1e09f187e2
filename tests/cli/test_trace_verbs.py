"""The verbs e-cli owns, as users pass them: info over several traces and globs, dump in the
style of trace-cmd report (filters, --expand, JSON lines), --json documents, rich tables plain
when piped."""

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gictools.cli import app
from gictools.trace.writer import TraceWriter

runner = CliRunner()
TRACES = sorted(Path("traces").glob("*.msgpack"))
T4 = Path("traces/lpi-stress-v4-d4-e8-fixed.msgpack")


def test_info_several_traces_globs_and_json(tmp_path):
    for t in TRACES:
        shutil.copy(t, tmp_path / t.name)
    r = runner.invoke(app, ["info", str(tmp_path / "*.msgpack")])  # a glob the shell left
    assert r.exit_code == 0, r.output
    assert r.output.count("format     gictools-trace") == len(TRACES)
    r = runner.invoke(app, ["info", "--json", *map(str, TRACES)])
    doc = json.loads(r.output)
    assert doc["schema"] == "gictools.info/1"
    assert [d["trace"] for d in doc["traces"]] == [str(t) for t in TRACES]
    d4 = next(d for d in doc["traces"] if d["trace"] == str(T4))
    assert d4["msis"] == 1600 and d4["records"]["COMMAND"] == 44
    assert d4["commands"]["MAPTI"] == 32 and d4["vm"]["vcpus"] == 4
    assert d4["device_ids"] == [0, 3] and d4["event_ids"] == [0, 7]
    assert d4["t_first_ns"] == 0 and d4["t_last_ns"] == 1599000
    # one bad trace among good ones: the others are still reported, exit 2
    bad = tmp_path / "bad.msgpack"
    bad.write_text("not a trace")
    r = runner.invoke(app, ["info", "--json", str(T4), str(bad)])
    assert r.exit_code == 2 and "not a gictools trace" in r.output
    r = runner.invoke(app, ["info", str(tmp_path / "none-*.msgpack")])
    assert r.exit_code == 2 and "none-*.msgpack" in r.output


def _trace(tmp_path):
    p = tmp_path / "f.msgpack"
    vm = {"vcpus": 2, "itses": [{"base": 0x0800_0000}, {"base": 0x0802_0000}]}
    from gictools.cmdlayout import encode_command

    with TraceWriter(p, vm=vm) as w:
        w.command(0, encode_command("MAPD", DeviceID=5, Size=3, ITT_addr=0x1000, V=1), t_ns=10)
        w.command(1, encode_command("MAPTI", DeviceID=5, EventID=2, pINTID=8192, ICID=0), t_ns=20)
        for i in range(6):
            w.msi(0, 5 if i % 2 else 6, i, t_ns=1000 + i)
        w.ack(1, 8192, t_ns=3000)
        w.reg("redist", 0, 0x70, 8, 1, True, t_ns=3001)
        w.expect("pending", {"intid": 8192, "vcpu": 1, "pending": False}, t_ns=4000)
    return p


def _dump(*args):
    r = runner.invoke(app, ["dump", *map(str, args)])
    assert r.exit_code == 0, r.output
    return r.output.splitlines()


def test_dump_filters_and_expand(tmp_path):
    p = _trace(tmp_path)
    assert len(_dump(p)) == 6  # 2 commands, 1 block, ack, reg, expect
    lines = _dump(p, "--expand")
    assert len(lines) == 2 + 6 + 3
    assert "MSI" in lines[2] and "DeviceID=0x6 EventID=0x0" in lines[2]
    lines = _dump(p, "--expand", "--device", "5")
    assert [ln.split("EventID=")[1] for ln in lines if "MSI " in ln] == ["0x1", "0x3", "0x5"]
    assert any("MAPD" in ln for ln in lines) and any("MAPTI" in ln for ln in lines)
    lines = _dump(p, "--device", "5")  # not expanded: the block says how many match
    assert any("(3 of 6 match)" in ln for ln in lines)
    assert _dump(p, "--op", "mapti") == [ln for ln in _dump(p) if "MAPTI" in ln]
    lines = _dump(p, "--op", "ack,reg")
    assert len(lines) == 2 and "ACK" in lines[0] and "REG" in lines[1]
    lines = _dump(p, "--vcpu", "1")  # records naming vCPU 1
    assert len(lines) == 2 and "ACK" in lines[0] and "EXPECT" in lines[1]
    lines = _dump(p, "--its", "1")
    assert len(lines) == 1 and "MAPTI" in lines[0]
    lines = _dump(p, "--expand", "--from", "1.002us", "--to", "3us")
    assert [ln.split("t=")[1].split()[0] for ln in lines] == [
        "1002",
        "1003",
        "1004",
        "1005",
        "3000",
    ]
    lines = _dump(p, "--event", "0x3", "--expand", "-n", "1")
    assert len(lines) == 1 and "EventID=0x3" in lines[0]
    r = runner.invoke(app, ["dump", str(p), "--from", "soon"])
    assert r.exit_code == 2 and "not a time" in r.output
    r = runner.invoke(app, ["dump", str(p), "--op", "MAPX"])
    assert r.exit_code == 2 and "MAPX" in r.output


def test_dump_json_lines(tmp_path):
    p = _trace(tmp_path)
    objs = [json.loads(ln) for ln in _dump(p, "--json", "--expand")]
    assert [o["type"] for o in objs] == ["COMMAND"] * 2 + ["MSI"] * 6 + ["ACK", "REG", "EXPECT"]
    assert objs[0]["command"] == "MAPD" and objs[0]["fields"]["DeviceID"] == 5
    assert objs[0]["record"] == 1 and isinstance(objs[0]["byte_offset"], int)
    reg = objs[-2]
    assert reg["type"] == "REG" and reg["offset"] == 0x70 and reg["byte_offset"] > 0
    msi = objs[3]
    assert (msi["index"], msi["device_id"], msi["event_id"], msi["t_ns"]) == (1, 5, 1, 1001)
    assert objs[-1]["kind"] == "pending"
    assert objs[-1]["args"] == {"intid": 8192, "vcpu": 1, "pending": False}
    (block,) = [json.loads(ln) for ln in _dump(p, "--json", "--op", "msi")]
    assert block["type"] == "MSI_BLOCK" and block["n"] == 6 and block["device_ids"] == [5, 6]


def test_image_verbs_json(tmp_path):
    img = tmp_path / "t.img"
    r = runner.invoke(app, ["save", "--json", str(T4), "-o", str(img)])
    doc = json.loads(r.output)
    assert r.exit_code == 0 and doc["schema"] == "gictools.save/1" and doc["file"] == str(img)
    for verb in ("roundtrip", "inspect", "restore"):
        r = runner.invoke(app, [verb, "--json", str(img)])
        doc = json.loads(r.output)
        assert doc["schema"] == f"gictools.{verb}/1"
        if verb != "restore":
            assert doc["ok"] is (r.exit_code == 0)
        text = runner.invoke(app, [verb, str(img)]).output
        assert doc["report"] == text.splitlines()


def test_gen_json(tmp_path):
    out = tmp_path / "g.msgpack"
    r = runner.invoke(app, ["gen", "lpi-stress", "-e", "2", "-i", "3", "-o", str(out), "--json"])
    assert json.loads(r.output) == {"schema": "gictools.gen/1", "out": str(out), "msis": 6}


def test_summary_table_rich_on_a_terminal_plain_when_piped():
    from gictools.replay import replay
    from gictools.report import summary_table

    reps = replay(T4, ["lru-v6.8", "none"])
    plain = summary_table(reps, fancy=False)
    lines = plain.splitlines()
    assert lines[0].split() == ["policy", "lru-v6.8", "none"]
    assert "\x1b[" not in plain and "─" not in plain
    row = next(ln for ln in lines if ln.startswith("MSIs"))
    assert row.split()[1:] == ["1,600", "1,600"]
    widths = {len(ln) for ln in lines if ln.strip()}
    assert len(widths) == 1  # aligned columns: every line as wide as the table
    fancy = summary_table(reps, fancy=True)
    assert "\x1b[" in fancy  # styled for a terminal


def test_json_output_stays_json_for_hostile_values(tmp_path):
    """A trace's metadata and EXPECT args may hold NaN, infinities and bytes: --json still
    prints standard JSON."""
    p = tmp_path / "nan.msgpack"
    meta = {"nan": float("nan"), "inf": float("-inf"), "raw": b"\x00\xff"}
    with TraceWriter(p, vm={"vcpus": 1, "itses": [{"base": 0}]}, metadata=meta) as w:
        w.expect("future-kind", {"x": float("inf"), "b": b"\x01"})
    r = runner.invoke(app, ["info", "--json", str(p)])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output, parse_constant=lambda c: pytest.fail(f"non-standard {c}"))
    assert doc["traces"][0]["metadata"] == {"nan": "nan", "inf": "-inf", "raw": "00ff"}
    (line,) = _dump(p, "--json")
    obj = json.loads(line, parse_constant=lambda c: pytest.fail(f"non-standard {c}"))
    assert obj["args"] == {"x": "inf", "b": "01"}
    for bad in ("1e400s", "nan", "-1"):
        r = runner.invoke(app, ["dump", str(p), "--to", bad])
        assert r.exit_code == 2, (bad, r.output)


def test_every_json_document_is_schema_tagged(tmp_path):
    """predict, compare and import qemu print top-level objects tagged as docs/cli-json.md says."""
    import json as _json

    from typer.testing import CliRunner

    from gictools.cli import app

    root = Path(__file__).resolve().parents[2]
    trace = root / "traces" / "lpi-stress-v4-d4-e8-fixed.msgpack"
    q = root / "fixtures" / "qemu" / "smp2-rebind"
    runs = {
        "predict": ["predict", "lpi-stress", "--preset", "v6.10", "-i", "50", "--json"],
        "compare": ["compare", str(trace), "--preset", "v6.10", "--json"],
        "import-qemu": [
            "import", "qemu", f"{q}.trace.log.gz", "--cmdq", f"{q}.cmdq.txt",
            "--lpiprop", f"{q}.lpiprop.txt", "--cmdline", f"{q}.cmdline.txt",
            "-o", str(tmp_path / "q.msgpack"), "--json",
        ],
    }  # fmt: skip
    for kind, args in runs.items():
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 0, r.output
        doc = _json.loads(r.stdout)
        assert doc["schema"] == f"gictools.{kind}/1"
    assert doc["msis"] > 0 and [
        e["preset"] for e in _json.loads(CliRunner().invoke(app, runs["compare"]).stdout)["results"]
    ] == ["v6.10"]
