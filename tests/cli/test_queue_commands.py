"""Issue 25 point 4 (the dump/info part): commands a trace issues through the command queue
(guest-memory writes, then a GITS_CWRITER write, as the Recorder API and real guests do)
are counted by info and listed by dump, as the ITS executes them."""

import json

from queued_guest import record_queued
from typer.testing import CliRunner

from gictools.cli import app

runner = CliRunner()


def _recorded(path):
    """8 commands through the queue: 2 MAPC, MAPD, 4 MAPTI (one refused), SYNC."""
    return path, record_queued(path, more=False, msis=False)


def test_info_counts_queue_commands(tmp_path):
    path, results = _recorded(tmp_path / "q.msgpack")
    r = runner.invoke(app, ["info", str(path)])
    assert r.exit_code == 0, r.output
    assert "commands   MAPC 2, MAPD 1, MAPTI 4, SYNC 1 (8 from the command queue)" in r.stdout
    assert "COMMAND" not in r.stdout.split("records")[1].splitlines()[0]  # none as records
    (doc,) = json.loads(runner.invoke(app, ["info", "--json", str(path)]).stdout)["traces"]
    assert doc["commands"] == {"MAPC": 2, "MAPD": 1, "MAPTI": 4, "SYNC": 1}
    assert doc["commands_from_queue"] == len(results) == 8


def test_dump_lists_them_after_the_cwriter_write(tmp_path):
    path, results = _recorded(tmp_path / "q.msgpack")
    lines = runner.invoke(app, ["dump", str(path)]).stdout.splitlines()
    queued = [ln for ln in lines if "(from the queue)" in ln]
    assert len(queued) == 8
    for q in queued:  # right after the GITS_CWRITER (0x88) write that made the ITS take it
        before = lines[lines.index(q) - 1]
        assert " its[0] W 0x0088/8 = " in before and before.split()[0] == q.split(".")[0].strip()
    refused = [ln for ln in queued if "pINTID=0x64" in ln]
    assert len(refused) == 1 and refused[0].endswith("-> E_ITS_MAPTI_PHYSICALID_OOR")
    assert results[-2] != 0  # the model said so too
    mapti = runner.invoke(app, ["dump", str(path), "--op", "MAPTI"]).stdout.splitlines()
    assert len(mapti) == 4 and all("(from the queue)" in ln for ln in mapti)
    objs = [
        json.loads(x)
        for x in runner.invoke(
            app, ["dump", str(path), "--json", "--op", "command"]
        ).stdout.splitlines()
    ]
    assert [o["command"] for o in objs] == ["MAPC", "MAPC", "MAPD"] + ["MAPTI"] * 4 + ["SYNC"]
    assert all(o["from_queue"] and o["type"] == "COMMAND" for o in objs)


def test_a_trace_without_its_registers_loads_no_model(tmp_path):
    import subprocess
    import sys

    from gictools.trace.writer import TraceWriter

    p = tmp_path / "m.msgpack"
    with TraceWriter(p, vm={"vcpus": 1, "itses": [{"base": 0x0808_0000}]}) as w:
        w.msi(0, 1, 2, t_ns=5)
    code = (
        "import sys; from gictools.cli import app; sys.argv = ['gictools', 'dump', sys.argv[1]];"
        "\ntry: app()\nexcept SystemExit: pass\n"
        "assert 'gictools.model.vm' not in sys.modules, 'model loaded'"
    )
    r = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_replay_counts_them(tmp_path):
    """The replay's summary counts queue commands as it counts COMMAND records (their Parquet
    rows: tests/replay/test_queue_command_rows.py)."""
    path, _ = _recorded(tmp_path / "q.msgpack")
    r = runner.invoke(app, ["replay", str(path), "--json"])
    assert r.exit_code == 0, r.output
    (rep,) = json.loads(r.stdout)["reports"]
    assert rep["commands"] == 8
