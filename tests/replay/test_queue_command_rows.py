"""Issue 25 point 4 (the Parquet part): every command the ITS executes from its command
queue (guest-memory writes, then a GITS_CWRITER write, as the Recorder API and real guests
issue them) gets an events row, as a COMMAND record does: op=command, its mnemonic, KVM's
result, with the register write's seq, time and injector."""

import json

import pyarrow.parquet as pq
import pytest
from queued_guest import record_queued
from typer.testing import CliRunner

from gictools import regs as R
from gictools.cli import app
from gictools.guest import Guest

runner = CliRunner()

ORDER = ["MAPC", "MAPC", "MAPD", "MAPTI", "MAPTI", "MAPTI", "MAPTI", "MOVI", "INVALL", "SYNC"]


class _DirectGuest(Guest):
    """The same guest, its commands recorded as COMMAND records (no queue)."""

    def command(self, raw):
        return self.its.process_command(raw)


def _record(path, guest=Guest):
    """10 commands: 2 MAPC, MAPD, 4 MAPTI (one with pINTID 100: refused), MOVI, INVALL,
    SYNC, then an MSI to each mapped event; their KVM results."""
    return record_queued(path, guest)


def _commands(table):
    rows = table.to_pylist()
    return rows, [r for r in rows if r["op"] == "command"]


def test_queued_commands_get_their_rows(tmp_path):
    trace, out = tmp_path / "q.msgpack", tmp_path / "q.parquet"
    results = _record(trace)
    r = runner.invoke(app, ["replay", str(trace), "--cache", "lru-v6.8", "-o", str(out)])
    assert r.exit_code == 0, r.output
    rows, cmds = _commands(pq.read_table(out))
    assert [c["command"] for c in cmds] == ORDER
    assert [c["error"] for c in cmds] == results  # KVM's result, as the guest saw it
    refused = [c for c in cmds if c["error"]]
    assert len(refused) == 1 and refused[0]["error"] == R.E_ITS_MAPTI_PHYSICALID_OOR
    assert refused[0]["device_id"] == 5 and refused[0]["event_id"] == 9
    assert refused[0]["intid"] is None  # nothing mapped
    movi = cmds[ORDER.index("MOVI")]
    assert (movi["intid"], movi["vcpu"], movi["icid"]) == (8192, 1, 1)  # its new target
    for c in cmds:  # right after the GITS_CWRITER write that made the ITS take it
        before = rows[rows.index(c) - 1]
        assert before["op"] in ("reg", "command")
        reg = next(x for x in reversed(rows[: rows.index(c)]) if x["op"] == "reg")
        assert (c["seq"], c["t_ns"], c["injector"], c["its"]) == (
            reg["seq"],
            reg["t_ns"],
            reg["injector"],
            reg["its"],
        )
        assert c["latency_ns"] == 1000 and c["cache_policy"] == "lru-v6.8"
    # the replay summary counts the same commands
    (rep,) = json.loads(
        runner.invoke(app, ["replay", str(trace), "--cache", "lru-v6.8", "--json"]).stdout
    )["reports"]
    assert rep["commands"] == len(cmds) == 10


def test_queued_rows_equal_command_record_rows(tmp_path):
    """The same guest with its commands as COMMAND records gives the same command rows
    (but their seq and time: the queue's ride on the register write's)."""
    keep = ("command", "error", "its", "device_id", "event_id", "intid", "vcpu", "icid")
    got = []
    for name, guest in (("q", Guest), ("d", _DirectGuest)):
        trace, out = tmp_path / f"{name}.msgpack", tmp_path / f"{name}.parquet"
        _record(trace, guest)
        r = runner.invoke(app, ["replay", str(trace), "--cache", "per-its-v6.10", "-o", str(out)])
        assert r.exit_code == 0, r.output
        rows, cmds = _commands(pq.read_table(out))
        got.append(
            (
                [{k: c[k] for k in keep} for c in cmds],
                [(x["intid"], x["cache"]) for x in rows if x["op"] == "msi"],
            )
        )
    assert got[0] == got[1]
    assert [c["command"] for c in got[0][0]] == ORDER


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_every_policy_and_path_writes_them(tmp_path, jobs):
    trace, out = tmp_path / "q.msgpack", tmp_path / "q.parquet"
    _record(trace)
    r = runner.invoke(
        app,
        ["replay", str(trace), "--cache", "lru-v6.8", "--cache", "per-its-v6.10"]
        + ["-j", jobs, "-o", str(out)],
    )
    assert r.exit_code == 0, r.output
    t = pq.read_table(out).to_pylist()
    for pol in ("lru-v6.8", "per-its-v6.10"):
        cmds = [x["command"] for x in t if x["cache_policy"] == pol and x["op"] == "command"]
        assert cmds == ORDER
