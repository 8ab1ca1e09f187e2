"""Every module-level constant of the register/ABI tables and the guest driver is used
somewhere (the package, tests, bench or docs): a constant nothing reads is a second,
unchecked copy of a fact, and goes."""

import ast
import functools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = [
    "gictools/regs.py",
    "gictools/entries.py",
    "gictools/guest.py",
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "gictools" / "abi").glob("*.py")),
]


@functools.cache
def _corpus() -> dict[str, str]:
    out = {}
    for sub in ("gictools", "tests", "bench", "docs"):
        for p in (ROOT / sub).rglob("*"):
            if p.is_file() and p.suffix in (".py", ".md", ".toml"):
                out[str(p.relative_to(ROOT))] = p.read_text(errors="replace")
    for p in ROOT.glob("*.md"):
        out[p.name] = p.read_text(errors="replace")
    return out


def _constants(src: str) -> list[str]:
    names = []
    for node in ast.parse(src).body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        for t in targets:
            names += [n.id for n in ast.walk(t) if isinstance(n, ast.Name)]
    return [n for n in names if re.fullmatch(r"[A-Z][A-Z0-9_]*", n)]


@pytest.mark.parametrize("module", MODULES)
def test_every_constant_is_used(module):
    corpus = _corpus()
    own = corpus[module]
    unused = []
    for name in _constants(own):
        pat = re.compile(rf"\b{name}\b")
        if len(pat.findall(own)) > 1:
            continue  # used in its own module
        if not any(pat.search(text) for path, text in corpus.items() if path != module):
            unused.append(name)
    assert unused == [], f"{module}: constants nothing uses: {unused}"
