"""-j/--jobs: zero or negative worker counts are usage errors (exit 2) on every verb, not
silently taken as "default" or passed to a pool that fails later."""

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from gictools.cli import app


def _commands(cmd, prefix=""):
    subs = getattr(cmd, "commands", None)
    if not subs:
        yield prefix.strip(), cmd
        return
    for name, sub in subs.items():
        yield from _commands(sub, f"{prefix}{name} ")


def _jobs_options():
    for verb, cmd in _commands(get_command(app)):
        for p in cmd.params:
            if "--jobs" in (getattr(p, "opts", None) or ()):
                yield verb, p


def test_every_jobs_option_is_at_least_one():
    found = dict(_jobs_options())
    assert {"replay", "predict lpi-stress", "sweep"} <= set(found)
    for verb, p in found.items():
        assert p.min == 1, verb  # typer's range check: exit 2 at parse time


@pytest.mark.parametrize("value", ["0", "-3"])
@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "lpi-stress", "-i", "1", "--preset", "v6.10"],
        ["sweep", "-o", "DATASET", "-t", "TRACE"],
        ["replay", "TRACE"],
    ],
)
def test_nonpositive_jobs_is_a_usage_error(tmp_path, argv, value):
    argv = [str(tmp_path / "d") if a == "DATASET" else a for a in argv]
    argv = [str(tmp_path / "t.msgpack") if a == "TRACE" else a for a in argv]
    r = CliRunner().invoke(app, [*argv, "-j", value])
    assert r.exit_code == 2, r.output
    assert "--jobs" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "d").exists()  # refused before any work
