"""Issue 25 point 5 / issue 23 point 15: usage errors are one line on stderr, help shows no
type-hint metavars, the verb list is one line per verb, file errors read like the shell's,
and a verb given the wrong kind of file says what the file is."""

import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
from ptyrun import on_a_terminal
from typer.testing import CliRunner

from gictools.cli import app

runner = CliRunner()
ROOT = Path(__file__).parent.parent.parent
TRACE = str(ROOT / "traces" / "lpi-stress-v1-d1-e17.msgpack")

# (arguments, the one line expected on stderr)
CASES = [
    (["replay", "-j", "0", TRACE], "gictools: error: --jobs 0: must be >= 1"),
    (["predict", "lpi-stress", "-v", "0"], "gictools: error: --vcpus 0: must be >= 1"),
    (["mrc", "--max-msis", "0", TRACE], "gictools: error: --max-msis 0: must be >= 1"),
    (["dump", "-n", "x", TRACE], "gictools: error: --count x: not an integer"),
    (
        ["replay", "--cache", "bogus", TRACE],
        "gictools: error: --cache: 'bogus' is not one of 'none', 'lru-v6.8', 'usage-v2', "
        "'per-its-v6.10'",
    ),
    (["replay"], "gictools: error: missing argument TRACES"),
    (["import", "qemu", "x.log"], "gictools: error: missing option --out"),
    (["replay", "--bogus", TRACE], "gictools: error: No such option: --bogus"),
    (["dump", "--from", "1q", TRACE], "gictools: error: --from: '1q' is not a time"),
    (["frob"], "gictools: error: No such command 'frob'."),
]


@pytest.mark.parametrize(("args", "line"), CASES, ids=[" ".join(a[:2]) for a, _ in CASES])
def test_usage_error_is_one_line(args, line):
    r = runner.invoke(app, args)
    assert r.exit_code == 2
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(line), lines[0]
    for bad in ("╭", "Input should", "Value error", "Possible options", "Usage:"):
        assert bad not in r.stderr


def test_usage_error_in_a_real_process_piped_stderr():
    """The entry point (not only the test runner) prints the one line and exits 2."""
    r = subprocess.run(
        [sys.executable, "-m", "gictools", "replay", "-j", "0", TRACE],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == "gictools: error: --jobs 0: must be >= 1\n"


def test_on_a_terminal_the_error_says_where_help_is():
    """stderr a terminal: the same line, then where to find help (a pseudo-terminal)."""
    code, text = on_a_terminal(["replay", "-j", "0", "t"])
    assert code == 2
    assert text.replace("\r", "").splitlines() == [
        "gictools: error: --jobs 0: must be >= 1",
        "Try 'python -m gictools replay --help'.",
    ]


def _commands(cmd, path=()):
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def test_help_of_every_verb_has_no_type_hint_metavars():
    root = typer.main.get_command(app)
    seen = 0
    for path, _ in _commands(root):
        r = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert r.exit_code == 0, (path, r.output)
        for bad in ("<bool>", "list[", "{", "<Path>"):
            assert bad not in r.output, (path, bad)
        seen += 1
    assert seen >= 17  # every verb and group was looked at
    r = runner.invoke(app, ["replay", "--help"], env={"COLUMNS": "200"})
    assert "replay [OPTIONS] TRACES..." in r.output
    assert "<none|lru-v6.8|usage-v2|per-its-v6.10|all>" in r.output


def test_verb_list_is_one_line_per_verb():
    r = runner.invoke(app, ["--help"], env={"COLUMNS": "120"})
    panel = r.output.split("Commands")[1].split("╰")[0].splitlines()[1:]
    names = [ln.strip("│ ").split()[0] for ln in panel if ln.strip("│ ")]
    root = typer.main.get_command(app)
    assert sorted(names) == sorted(root.commands)  # no continuation lines
    assert any("Replay traces through the model, one pass per cache policy" in ln for ln in panel)


def test_file_errors_read_like_the_shell(tmp_path):
    missing = tmp_path / "nx.msgpack"
    for args in (["replay", missing], ["info", missing], ["dump", missing], ["mrc", missing]):
        r = runner.invoke(app, [str(a) for a in args])
        assert r.exit_code == 2
        assert r.stderr == f"gictools: error: {missing}: No such file or directory\n"


def test_summarize_on_a_missing_directory(tmp_path):
    r = runner.invoke(app, ["summarize", str(tmp_path / "nope")])
    assert (r.exit_code, r.stderr) == (2, f"gictools: error: {tmp_path}/nope: No such directory\n")


def test_wrong_kind_of_file_is_named(tmp_path):
    img = tmp_path / "t.img"
    assert runner.invoke(app, ["save", TRACE, "-o", str(img), "-q"]).exit_code == 0
    r = runner.invoke(app, ["restore", TRACE])
    assert r.exit_code == 2 and "a trace, not an image" in r.stderr
    r = runner.invoke(app, ["inspect", TRACE])
    assert r.exit_code == 2 and "a trace, not an image" in r.stderr
    r = runner.invoke(app, ["replay", str(img)])
    assert r.exit_code == 2 and f"{img}: an image, not a trace" in r.stderr
    binary = tmp_path / "capture.log"
    binary.write_bytes(bytes(range(256)) * 4)
    r = runner.invoke(app, ["import", "qemu", str(binary), "-o", str(tmp_path / "o.msgpack")])
    assert r.exit_code == 2 and f"{binary}: not a text log" in r.stderr
    assert not (tmp_path / "o.msgpack").exists()
