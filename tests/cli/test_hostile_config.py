"""Hostile preset files, grid files, flags and migration destinations: one line, exit 2,
before any memory is spent on a value read from them (found by review of this change)."""

import gzip
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gictools.cli import app

runner = CliRunner()
KUT = Path(__file__).resolve().parents[2] / "fixtures" / "kut"


def _refused(args, needle):
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    assert needle in r.output and "Traceback" not in r.output, r.output


def _bundled(name="v6.10"):
    from gictools.latency.presets import bundled_path

    return bundled_path(name).read_text()


PREDICT = ["predict", "lpi-stress", "-v", "2", "-d", "2", "-e", "2", "-i", "10"]


def test_preset_file_not_utf8(tmp_path):
    p = tmp_path / "p.toml"
    p.write_bytes(b"\xff\xfe\x00bad")
    _refused([*PREDICT, "--preset-file", str(p)], "not UTF-8")


@pytest.mark.parametrize("nest", ["[" * 5000 + "]" * 5000, "{x=" * 3000 + "1" + "}" * 3000])
def test_toml_nested_too_deeply(tmp_path, nest):
    p = tmp_path / "d.toml"
    p.write_text(f"a={nest}\n")
    _refused([*PREDICT, "--preset-file", str(p)], "nested too deeply")
    _refused(["sweep", "--grid", str(p), "-o", str(tmp_path / "ds")], "nested too deeply")


def test_preset_cost_must_be_finite(tmp_path):
    text = _bundled()
    assert "ns = " in text
    p = tmp_path / "inf.toml"
    p.write_text(text.replace("ns = ", "ns = inf #", 1))
    _refused([*PREDICT, "--preset-file", str(p)], "not finite")


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["-v", "1000000", "-d", "1", "-e", "1", "-i", "1"], "at most 4096 vCPUs"),
        (["-v", "1", "-d", "1000000", "-e", "1000000", "-i", "1"], "injections"),
        (["-v", "1", "-d", "1", "-e", "1", "-i", "1000000000000"], "injections"),
    ],
)
def test_predict_sizes_bounded(flags, needle):
    _refused(["predict", "lpi-stress", *flags, "--preset", "v6.10"], needle)


def test_predict_seeds_bounded():
    _refused([*PREDICT, "--preset", "v6.10", "--seeds", "100000000"], "--seeds")


def test_sweep_predict_grid_sizes_bounded(tmp_path):
    g = tmp_path / "g.toml"
    g.write_text('[predict]\npreset = "v6.10"\nd = 1000000000\ne = 1\ni = 1\n')
    _refused(["sweep", "--grid", str(g), "-o", str(tmp_path / "ds")], "injections")


def test_migration_destination_must_be_a_capture_or_empty(tmp_path):
    src = {
        "--cmdq": KUT / "its-pending-migration-src.cmdq.txt",
        "--lpiprop": KUT / "its-pending-migration-src.lpiprop.txt",
        "--cmdline": KUT / "its-pending-migration-src.cmdline.txt",
    }
    args = ["import", "qemu", str(KUT / "its-pending-migration-src.trace.log.gz")]
    args += [x for k, v in src.items() for x in (k, str(v))]
    junk = tmp_path / "junk.log"
    junk.write_bytes(b"garbage\nmore junk\n")  # text, so the refusal is "not a QEMU" capture
    _refused([*args, "--migrate-to", str(junk), "-o", str(tmp_path / "o.msgpack")], "not a QEMU")
    assert not (tmp_path / "o.msgpack").exists()
    empty = tmp_path / "empty.log.gz"
    empty.write_bytes(gzip.compress(b""))
    r = runner.invoke(app, [*args, "--migrate-to", str(empty), "-o", str(tmp_path / "e.msgpack")])
    assert r.exit_code == 0, r.output
