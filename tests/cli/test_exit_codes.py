"""The CLI: exit codes, one-line errors, no partial outputs."""

import pyarrow.parquet as pq
from typer.testing import CliRunner

from gictools.cli import app

runner = CliRunner()


def test_version_option():
    from gictools import __version__

    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output == f"gictools {__version__}\n"


def test_gen_replay_info_dump(tmp_path):
    t = tmp_path / "s.msgpack"
    r = runner.invoke(
        app, ["gen", "lpi-stress", "-v", "2", "-d", "2", "-e", "3", "-i", "5", "-o", str(t)]
    )
    assert r.exit_code == 0, r.output
    assert "30 MSIs" in r.output
    out = tmp_path / "o.parquet"
    r = runner.invoke(
        app, ["replay", str(t), "--cache", "lru-v6.8", "--cache", "none", "-o", str(out)]
    )
    assert r.exit_code == 0, r.output
    assert "hit rate" in r.output and "lru-v6.8" in r.output
    assert pq.read_metadata(out).num_rows > 60
    r = runner.invoke(app, ["info", str(t)])
    assert r.exit_code == 0 and "MSIs       30" in r.output and "MAPTI 6" in r.output
    r = runner.invoke(app, ["dump", str(t), "--limit", "40"])
    assert r.exit_code == 0 and "MAPTI DeviceID=0x1 EventID=0x2 pINTID=0x2005" in r.output


def test_bad_inputs_exit_2(tmp_path):
    r = runner.invoke(app, ["replay", str(tmp_path / "missing.msgpack")])
    assert r.exit_code == 2 and "error" in r.output
    junk = tmp_path / "junk.msgpack"
    junk.write_bytes(b"\xc1\x00garbage")
    out = tmp_path / "o.parquet"
    r = runner.invoke(app, ["replay", str(junk), "-o", str(out)])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert not out.exists()
    r = runner.invoke(app, ["replay", str(junk), "--cache", "lru-v9"])
    assert r.exit_code == 2
    r = runner.invoke(app, ["gen", "lpi-stress", "-d", "9000", "-o", str(tmp_path / "g")])
    assert r.exit_code == 2 and "8192" in r.output


def test_failed_expectation_exit_1(tmp_path):
    from gictools.trace.writer import TraceWriter

    p = tmp_path / "x.msgpack"
    with TraceWriter(p, vm={"vcpus": 1, "itses": [{"base": 0x0800_0000}]}) as w:
        w.expect("pending", {"intid": 8192, "vcpu": 0, "pending": True})
    r = runner.invoke(app, ["replay", str(p)])
    assert r.exit_code == 1
    assert "record 1" in r.output
