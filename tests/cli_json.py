"""A gictools verb run in-process with --json: the document it prints, for the tests that
check what a verb reports rather than how it prints it."""

import json

from typer.testing import CliRunner

from gictools.cli import app


def cli_json(command: str) -> dict:
    """The JSON document of `gictools COMMAND --json` (COMMAND split on spaces); exit 0 is
    asserted, with the output shown when it is not."""
    r = CliRunner().invoke(app, [*command.split(), "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)
