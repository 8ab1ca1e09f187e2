"""Issue 23 point 5: writing stdout fails in one line. `-o - > /dev/full` (ENOSPC) and
`-o - >&-` (no stdout at all) give `gictools: error: ...`, exit 2, nothing else; the same
for a verb's text or JSON result."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

T4 = str(Path(__file__).parent.parent.parent / "traces" / "lpi-stress-v4-d4-e8-fixed.msgpack")
VERBS = [
    ["replay", T4, "-c", "none", "-o", "-"],
    ["replay", T4, "-c", "none", "-c", "lru-v6.8", "-o", "-"],  # the --jobs path
    ["save", T4, "-o", "-"],
    ["gen", "lpi-stress", "-e", "2", "-i", "2", "-o", "-"],
    ["dump", T4],
    ["info", "--json", T4],
    ["replay", T4, "-c", "none"],
    ["--help"],
]


def _run(args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "gictools", *args],
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        **kw,
    )


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("args", VERBS, ids=lambda a: " ".join(a[:1] + a[2:4]))
def test_stdout_full(args):
    with open("/dev/full", "w") as full:
        r = _run(args, stdout=full)
    assert r.returncode == 2
    assert r.stderr == "gictools: error: stdout: No space left on device\n"


@pytest.mark.parametrize("args", VERBS, ids=lambda a: " ".join(a[:1] + a[2:4]))
def test_stdout_closed(args):
    r = _run(args, stdout=subprocess.DEVNULL, preexec_fn=lambda: os.close(1))
    assert r.returncode == 2
    assert r.stderr == "gictools: error: stdout is closed: nowhere to write\n"
