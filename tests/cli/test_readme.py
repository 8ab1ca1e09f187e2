"""The README as a user reads it: its Python snippets run as written, it lists every verb."""

import os
import re
from pathlib import Path

from typer.main import get_command

from gictools.cli import app

README = Path(__file__).resolve().parents[2] / "README.md"


def _snippets():
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_python_snippets_run_as_written(tmp_path, monkeypatch):
    snippets = _snippets()
    assert len(snippets) >= 2
    monkeypatch.chdir(tmp_path)  # the Recorder example writes its trace here
    for code in snippets:
        ns = {}
        exec(compile(code, str(README), "exec"), ns)
    # what the snippets' comments claim
    assert ns["report"].msis == 1 and ns["report"].failure_count == 0
    assert os.path.getsize(tmp_path / "recorded.msgpack") > 0


def _verbs(cmd, prefix=""):
    subs = getattr(cmd, "commands", None)
    if not subs:
        return [prefix.strip()]
    out = []
    for name, sub in subs.items():
        out += _verbs(sub, f"{prefix}{name} ")
    return out


def test_readme_lists_every_verb():
    text = README.read_text()
    verbs = _verbs(get_command(app))
    assert "info" in verbs and "gen lpi-stress" in verbs and "version" not in verbs
    missing = [v for v in verbs if f"| `{v}` |" not in text]
    assert not missing, f"README's verb table lacks {missing}"
    assert "Python >= 3.11" in text
