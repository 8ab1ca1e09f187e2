"""replay --jobs on a terminal: the bar counts events replayed (the workers report them
through gictools.supervise), with the serial path's total, and ends at 100%; piped or
--quiet it draws nothing."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from ptyrun import on_a_terminal

from gictools.cli.progress import si

ROOT = Path(__file__).parents[2]
T1 = str(ROOT / "traces" / "lpi-stress-v1-d1-e17.msgpack")  # 17,028 events
ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")
COUNT = re.compile(r"\s(\d+)% (\S+)/(\S+)")  # " 42% 4.2k/17k"
POLICIES = ["-c", "none", "-c", "lru-v6.8", "-c", "usage-v2", "-c", "per-its-v6.10"]


def _bar_counts(args):
    """(exit code, (percent, done, total) of every replay bar drawn, all lines)."""
    code, text = on_a_terminal(args, env={"COLUMNS": "200", "LINES": "40"})
    lines = [ln for ln in re.split(r"[\r\n]", ANSI.sub("", text)) if ln]
    bars = [ln for ln in lines if ln.startswith("replay") and "━" in ln]
    return code, [m.groups() for b in bars if (m := COUNT.search(b))], lines


def test_the_parallel_bar_ends_at_100_percent_of_the_events(tmp_path):
    out = str(tmp_path / "out.parquet")
    code, counts, lines = _bar_counts(["replay", T1, *POLICIES, "-o", out, "-j", "2"])
    assert code == 0, lines
    assert counts, lines  # before: elapsed time only, no count
    assert counts[-1] == ("100", si(17_028), si(17_028)), lines
    assert {c[2] for c in counts} == {"17k"}  # the one total, the serial path's
    assert "replayed 17,028 events" in "\n".join(lines)


def test_the_parallel_bar_moves_on_a_longer_replay(tmp_path):
    """1.2 M MSIs (~1 s of replay with the C block loops): the bar is drawn part-way too,
    counting up."""
    trace = tmp_path / "t.msgpack"
    gen = ["gen", "lpi-stress", "-e", "4096", "-i", "300", "-o", str(trace)]
    subprocess.run([sys.executable, "-m", "gictools", *gen], check=True, capture_output=True)
    out = str(tmp_path / "out.parquet")
    code, counts, lines = _bar_counts(["replay", str(trace), *POLICIES, "-o", out, "-j", "2"])
    assert code == 0, lines
    pcts = [int(p) for p, _, _ in counts]
    assert pcts == sorted(pcts) and pcts[-1] == 100, lines
    assert any(0 < p < 100 for p in pcts), lines


@pytest.mark.parametrize("how", ["piped", "quiet"])
def test_no_bar_when_piped_or_quiet(tmp_path, how):
    args = ["replay", T1, *POLICIES, "-o", str(tmp_path / "out.parquet"), "-j", "2"]
    if how == "quiet":
        code, counts, lines = _bar_counts([*args, "--quiet"])
        assert code == 0 and counts == [] and not any("━" in ln for ln in lines), lines
        return
    p = subprocess.run([sys.executable, "-m", "gictools", *args], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stderr == "" and "\x1b" not in p.stdout and "━" not in p.stdout
