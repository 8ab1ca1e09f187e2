"""The importer and `dump` print and build commands from the layout layer (cmdlayout.py,
entries.py beside regs.py) and never load the model (issue 21 point 3)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "module", ["gictools.trace.qemu", "gictools.report", "gictools.cmdlayout", "gictools.entries"]
)
def test_loads_no_model(module):
    code = (
        f"import sys, {module}; "
        "print(' '.join(m for m in sys.modules if m.startswith(('gictools.model', "
        "'gictools.abi'))))"
    )
    p = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [], f"{module} loads {p.stdout.split()}"


def test_layout_layer_imports_only_layout():
    """cmdlayout and entries import nothing of gictools but bits.py and regs.py."""
    for name in ("cmdlayout.py", "entries.py"):
        src = (ROOT / "gictools" / name).read_text()
        imports = [ln for ln in src.splitlines() if ln.startswith(("import ", "from "))]
        ours = [ln for ln in imports if "gictools" in ln]
        assert all(
            ln in ("from gictools import regs as R", "from gictools.bits import Layout")
            for ln in ours
        ), ours
