"""Issue 23 point 16: an old interpreter running gictools gets one line naming the Python it
needs, not a SyntaxError: the check lives in gictools/__init__.py, which every entry point
imports first and which old Pythons (2.7 included) can parse."""

import ast
import glob
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent.parent
INIT = ROOT / "gictools" / "__init__.py"
# what pip writes for [project.scripts] gictools = "gictools.cli:app"
CONSOLE_SCRIPT = """import re
import sys
from gictools.cli import app
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(app())
"""


def _old_pythons():
    """Working interpreters older than 3.11 on this machine (pyenv's, or on PATH)."""
    found = []
    cands = glob.glob("/root/.pyenv/versions/[23].*/bin/python[23].[0-9]*")
    cands += [shutil.which(n) for n in ("python2.7", "python2", "python3.6", "python3.8")]
    for c in sorted({c for c in cands if c and not c.endswith("-config")}):
        try:
            r = subprocess.run(
                [c, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except OSError:
            continue
        v = r.stdout.strip()
        if r.returncode == 0 and v and tuple(map(int, v.split("."))) < (3, 11):
            found.append((c, v))
    return found


OLD = _old_pythons()


@pytest.mark.skipif(not OLD, reason="no Python older than 3.11 here (see the syntax check)")
@pytest.mark.parametrize(("python", "version"), OLD, ids=[v for _, v in OLD])
def test_old_python_gets_one_line(python, version, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # Python 2 would leave gictools/__init__.pyc in the tree
    want = f"gictools needs Python >= 3.11 (this is Python {version})\n"
    for args in (["-m", "gictools", "--help"], [str(_script(tmp_path)), "replay", "t"]):
        r = subprocess.run([python, *args], capture_output=True, text=True, env=env, timeout=60)
        assert (r.returncode, r.stdout, r.stderr) == (1, "", want), args


def _script(tmp_path):
    p = tmp_path / "gictools"
    p.write_text(CONSOLE_SCRIPT)
    return p


def test_the_check_module_has_no_new_syntax():
    """Without an old interpreter: the module parses as Python 3.4 grammar (ast's oldest:
    no f-strings, no walrus, no positional-only parameters), and uses nothing else that
    2.7's grammar lacks (annotations, keyword-only arguments, async, `nonlocal`)."""
    src = INIT.read_text()
    tree = ast.parse(src, feature_version=(3, 4))
    for node in ast.walk(tree):
        assert not isinstance(node, (ast.AnnAssign, ast.AsyncFunctionDef, ast.Nonlocal)), node
        if isinstance(node, ast.FunctionDef):
            a = node.args
            assert node.returns is None and not a.kwonlyargs and not a.posonlyargs
            assert all(x.annotation is None for x in a.args)
        assert not isinstance(node, ast.JoinedStr)  # f-strings (3.6)
    # the version check comes before anything else runs
    first = [n for n in tree.body if not isinstance(n, ast.Expr)][:2]
    assert isinstance(first[0], ast.Import) and isinstance(first[1], ast.If)
