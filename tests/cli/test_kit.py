"""The shared CLI helpers (gictools.cli) and the conventions every verb follows: progress on
stderr only on a terminal, choices, output checks before work, quiet broken pipes, JSON."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gictools.cli import app, files, kit, options, progress

runner = CliRunner()
T4 = "traces/lpi-stress-v4-d4-e8-fixed.msgpack"


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_drawn_on_stderr_tty_only(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    with progress.progress("gen", total=10) as bar:
        bar.advance(4)
        bar.advance(6)
    assert bar.completed == 10 and sys.stderr.getvalue() == ""  # piped: nothing drawn
    tty = _Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    with progress.progress("gen", total=10) as bar:
        bar.advance(10)
    assert "100% 10/10" in tty.getvalue()
    assert out.getvalue() == ""  # never on stdout
    tty2 = _Tty()
    monkeypatch.setattr(sys, "stderr", tty2)
    with progress.progress("gen", total=10, quiet=True) as bar:
        bar.advance(10)
    assert tty2.getvalue() == ""
    tty3 = _Tty()
    monkeypatch.setattr(sys, "stderr", tty3)
    with progress.progress("read", total=None) as bar:  # indeterminate: still counts
        bar.advance(7)
    assert "7" in tty3.getvalue()


def test_json_conversions():
    doc = kit.json_doc("x", a=np.uint32(7), b=np.arange(3), c=b"\x01\xff", d=(1, 2))
    assert json.loads(kit.to_json(doc)) == {
        "schema": "gictools.x/1",
        "a": 7,
        "b": [0, 1, 2],
        "c": "01ff",
        "d": [1, 2],
    }


def test_choice_lists_match_the_library():
    from gictools.latency.presets import BUNDLED
    from gictools.model.cache import POLICIES

    assert set(options.CACHE_POLICIES) == set(POLICIES)
    assert set(options.PRESETS) == set(BUNDLED)


def test_choices_case_insensitive_listed_and_checked(tmp_path):
    out = tmp_path / "g.msgpack"
    r = runner.invoke(
        app, ["gen", "lpi-stress", "-e", "2", "-i", "2", "--routing", "FIXED", "-o", str(out)]
    )
    assert r.exit_code == 0, r.output
    from gictools.trace.reader import read_header

    assert read_header(out)["metadata"]["routing"] == "fixed"
    r = runner.invoke(app, ["gen", "lpi-stress", "--routing", "sideways", "-o", str(out)])
    assert r.exit_code == 2 and "sideways" in r.output
    r = runner.invoke(app, ["gen", "lpi-stress", "--help"], env={"COLUMNS": "250"})
    # --routing's default comes from --selftest (issue 26): 2025 -> fixed, 2024 -> as-measured
    assert "as-measured|fixed" in r.output and "default: 2025" in r.output


def test_shared_choice_options():
    """CacheOpt/KernelOpt/PresetOpt as a verb declares them (replay, compare, sweep adopt them)."""
    import typer

    toy = typer.Typer()

    @toy.command()
    def run(
        cache: options.CacheOpt = None,
        kernel: options.KernelOpt = None,
        preset: options.PresetOpt = None,
    ):
        kit.print_json({"cache": cache, "kernel": kernel, "preset": preset})

    r = runner.invoke(
        toy, ["--cache", "LRU-v6.8", "-c", "None", "--preset", "V6.10", "--kernel", "6.8"]
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == {
        "cache": ["lru-v6.8", "none"],
        "kernel": "6.8",
        "preset": "v6.10",
    }
    r = runner.invoke(toy, ["--cache", "lru-v9"])
    assert r.exit_code == 2 and "lru-v9" in r.output
    r = runner.invoke(toy, ["--help"], env={"COLUMNS": "250"})
    assert "none|lru-v6.8|usage-v2|per-its-v6.10" in r.output
    assert "v6.8-rc1" in r.output and "6.10" in r.output


def test_long_forms_of_the_workload_flags(tmp_path):
    out = tmp_path / "g.msgpack"
    args = ["--vcpus", "2", "--devices", "3", "--events", "4", "--iterations", "5"]
    r = runner.invoke(app, ["gen", "lpi-stress", *args, "-o", str(out)])
    assert r.exit_code == 0 and "60 MSIs" in r.output
    r = runner.invoke(
        app, ["gen", "lpi-stress", "-v", "2", "-d", "3", "-e", "4", "-i", "5", "-o", str(out)]
    )
    assert r.exit_code == 0 and "60 MSIs" in r.output


def test_outputs_checked_before_work(tmp_path):
    r = runner.invoke(app, ["gen", "lpi-stress", "-o", str(tmp_path)])
    assert r.exit_code == 2 and "is a directory" in r.output
    r = runner.invoke(app, ["gen", "lpi-stress", "-o", str(tmp_path / "no" / "x.msgpack")])
    assert r.exit_code == 2 and "does not exist" in r.output
    t = tmp_path / "t.msgpack"
    t.write_bytes(Path(T4).read_bytes())
    r = runner.invoke(app, ["save", str(t), "-o", str(t)])
    assert r.exit_code == 2 and "is the same file as the input" in r.output
    assert t.read_bytes() == Path(T4).read_bytes()
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        r = runner.invoke(app, ["gen", "lpi-stress", "-o", str(ro / "x.msgpack")])
        assert r.exit_code == 2 and "not writable" in r.output


def test_version_option_is_eager():
    from gictools import __version__

    r = runner.invoke(app, ["--version", "dump"])
    assert r.exit_code == 0 and r.output.strip() == f"gictools {__version__}"
    r = runner.invoke(app, ["--help"])
    assert "--version" in r.output


def _sh(cmd, **kw):
    return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120, **kw)


def test_broken_pipe_exits_0_quietly(tmp_path):
    big = tmp_path / "big.msgpack"
    r = runner.invoke(app, ["gen", "lpi-stress", "-e", "17", "-i", "2000", "-o", str(big)])
    assert r.exit_code == 0
    p = _sh(
        f"{sys.executable} -m gictools dump --expand {big} | head -3; echo ${{PIPESTATUS[0]}} >&2"
    )
    assert p.stdout.count("\n") == 3
    assert p.stderr.strip() == "0", p.stderr


@pytest.mark.parametrize("n", [1, 2, 7])
def test_dump_n_prints_n(n):
    for flag in ("-n", "--limit"):
        r = runner.invoke(app, ["dump", T4, flag, str(n)])
        assert r.exit_code == 0 and len(r.output.splitlines()) == n


def test_python_older_than_311_stops_with_a_message():
    code = "import sys; sys.version_info = (3, 10, 9, 'final', 0); import gictools"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert "gictools needs Python >= 3.11 (this is Python 3.10)" in p.stderr


def test_choices_tab_complete():
    env = {
        **os.environ,
        "_GICTOOLS_COMPLETE": "complete_bash",
        "COMP_WORDS": "gictools gen lpi-stress --routing ",
        "COMP_CWORD": "4",
    }
    code = "from gictools.cli import app; app(prog_name='gictools')"
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert p.stdout.split() == ["as-measured", "fixed"], p.stderr


def test_binary_to_a_terminal_refused(monkeypatch):
    import typer

    monkeypatch.setattr(sys, "stdout", _Tty())
    with pytest.raises(typer.Exit) as ei:
        files.check_outputs(["-"])
    assert ei.value.exit_code == 2
    files.check_outputs(["-"], binary=False)  # text to a terminal is fine


def test_many_small_updates_reach_the_bar(monkeypatch):
    tty = _Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    with progress.progress("x", total=100_000) as bar:
        for _ in range(100_000):
            bar.advance(1)
    assert "100% 100k/100k" in tty.getvalue()


def test_stdin_terminal_refused(monkeypatch):
    import typer

    monkeypatch.setattr(sys, "stdin", _Tty())
    with pytest.raises(typer.Exit) as ei:
        files.input_source("-")
    assert ei.value.exit_code == 2
    assert files.input_source("t.msgpack") == "t.msgpack"
