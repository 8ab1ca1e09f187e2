"""--host and --selftest (gictools/cli/hosts.py) say the library's names and defaults without
importing the library: `gictools --help` loads neither the host profiles nor the generator
(and so no numpy)."""

import subprocess
import sys
import typing
from pathlib import Path

from typer.testing import CliRunner

from gictools.cli import app
from gictools.cli import hosts as cli_hosts

ROOT = Path(__file__).parents[2]
runner = CliRunner()


def test_constants_equal_the_library():
    from gictools.latency import hosts
    from gictools.trace import gen_lpi_stress as gen

    assert cli_hosts.HOSTS == hosts.BUNDLED_HOSTS
    assert cli_hosts.DEFAULT_HOST == hosts.DEFAULT_HOST
    assert typing.get_args(cli_hosts.SelftestName) == tuple(gen.SELFTESTS)
    assert cli_hosts.SELFTEST_DEFAULT == gen.DEFAULT_SELFTEST


def test_help_names_the_hosts_and_defaults():
    r = runner.invoke(app, ["replay", "--help"], env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    # in parentheses: rich took the square brackets of "[default: ...]" for markup
    assert "lpi-2024a, lpi-2024b or a .toml file (default: lpi-2024a;" in r.output
    r = runner.invoke(app, ["predict", "lpi-stress", "--help"], env={"COLUMNS": "250"})
    assert "--selftest" in r.output and "default: 2025" in r.output


def test_help_imports_neither_hosts_nor_the_generator():
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "gictools", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    # "import time: self [us] | cumulative | imported package", one line per module
    loaded = {ln.rsplit("|", 1)[1].strip() for ln in r.stderr.splitlines() if ln.count("|") == 2}
    assert "gictools.cli.hosts" in loaded  # the options module itself is loaded
    heavy = {"gictools.latency.hosts", "gictools.trace.gen_lpi_stress", "numpy"} & loaded
    assert not heavy, f"gictools --help imported {sorted(heavy)}"
