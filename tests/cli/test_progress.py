"""Issue 25 point 1: on a terminal every path of every long verb draws one progress bar
(the parallel --jobs replay too), one line that fits 60 columns."""

import re
from pathlib import Path

import pytest
from ptyrun import on_a_terminal

from gictools.cli.progress import si, stats_text

ROOT = Path(__file__).parent.parent.parent
T4 = str(ROOT / "traces" / "lpi-stress-v4-d4-e8-fixed.msgpack")
ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")


def _on_a_terminal(args, columns=200, cwd=None):
    """gictools on a pseudo-terminal COLUMNS wide; (exit code, the screen lines drawn, ANSI
    codes removed)."""
    code, text = on_a_terminal(args, env={"COLUMNS": str(columns), "LINES": "40"}, cwd=cwd)
    return code, [ln for ln in re.split(r"[\r\n]", ANSI.sub("", text)) if ln]


def _bars(lines, label):
    return [ln for ln in lines if ln.startswith(label) and "━" in ln]


def test_numbers_fit_their_columns():
    got = [si(n) for n in (0, 999, 999.6, 1000, 12_345, 999_999, 1_234_567, 10**10)]
    assert got == ["0", "999", "1k", "1k", "12.3k", "1M", "1.23M", "10G"]
    assert si(12_300_000, "bytes") == "12.3MB"
    # the widest the text right of the bar gets (below an hour): 39 columns
    widest = stats_text(1.234e9, 1.235e9, 1.234e9, 3599, "bytes")
    assert widest == " 99% 1.23GB/1.24GB 1.23GB/s 59:59<0:00" and len(widest) <= 39
    assert stats_text(0, None, None, 5, "events") == "0:05"  # indeterminate: the time so far
    assert stats_text(500, 1000, 100, 2, "events") == " 50% 500/1k 100/s 0:02<0:05"
    assert stats_text(5, 10, 1, 2, "cells") == " 50% 5/10 0:02<0:05"  # no rate in cells/s


@pytest.mark.parametrize(
    "args",
    [
        ["replay", T4, "-c", "none", "-c", "lru-v6.8", "-o", "OUT.parquet"],  # --jobs path
        ["replay", T4, "-c", "none", "-c", "lru-v6.8", "-o", "OUT.parquet", "-j", "1"],
        ["replay", T4],
    ],
    ids=["parallel", "jobs1", "no-out"],
)
def test_replay_draws_one_bar_on_every_path(tmp_path, args):
    args = [str(tmp_path / a) if a == "OUT.parquet" else a for a in args]
    code, lines = _on_a_terminal(args)
    assert code == 0, lines
    bars = _bars(lines, "replay")
    assert bars, lines
    assert max(len(b) for b in bars) <= 60
    assert all(len(ln) <= 100 for ln in lines)  # nothing wrapped onto a second line


def test_bars_of_other_verbs_fit_60_columns(tmp_path):
    trace = tmp_path / "t.msgpack"
    code, lines = _on_a_terminal(["gen", "lpi-stress", "-e", "64", "-i", "400", "-o", str(trace)])
    assert code == 0
    assert _bars(lines, "gen") and max(len(b) for b in _bars(lines, "gen")) <= 60
    for verb, label in (
        (["save", str(trace), "-o", str(tmp_path / "t.img")], "replay"),
        (["info", str(trace)], "info"),
        (["mrc", str(trace)], "mrc"),
        (["roundtrip", T4], "roundtrip"),
    ):
        code, lines = _on_a_terminal(verb)
        assert code == 0, (verb, lines)
        bars = _bars(lines, label)
        assert bars and max(len(b) for b in bars) <= 60, (verb, lines)


def test_a_narrow_terminal_gets_a_narrower_bar(tmp_path):
    code, lines = _on_a_terminal(["replay", T4], columns=50)
    assert code == 0
    bars = _bars(lines, "replay")
    assert bars and max(len(b) for b in bars) <= 50
