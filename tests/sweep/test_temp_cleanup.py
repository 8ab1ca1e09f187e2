"""The sweep's temp-file clean-up removes only temps whose writer is gone: a live writer's
file (its PID alive, or its flock held) survives, a dead writer's goes."""

import fcntl
import os
import subprocess
import sys

from gictools.sweep.cell import CELLS_DIR, EVENTS_DIR, MANIFEST_DIR
from gictools.sweep.run import clean_temp_files

WRITER = """
import sys
from gictools.outputs import AtomicOutput
out = AtomicOutput(sys.argv[1])
out.file.write(b"half a cell")
out.file.flush()
print(out.tmp, flush=True)
sys.stdin.read()  # hold the temp (and its flock) until the test closes stdin
out.commit()
"""


def _dead_pid() -> int:
    r = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    return int(r.stdout)


def test_live_writers_temps_survive_dead_writers_temps_go(tmp_path):
    root = tmp_path / "ds"
    part = root / EVENTS_DIR / "trace=t" / "policy=none"
    part.mkdir(parents=True)
    (root / CELLS_DIR).mkdir()
    (root / MANIFEST_DIR).mkdir()
    w = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(part / "part-0.parquet")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        live = w.stdout.readline().strip()
        assert os.path.basename(live).startswith(".part-0.parquet.gictools-")
        dead = _dead_pid()
        gone = [
            part / f".part-0.parquet.gictools-{dead}-0123abcd.tmp",
            root / CELLS_DIR / f".cell.parquet.gictools-{dead}-4567cdef.tmp",
            root / MANIFEST_DIR / f".x.json.gictools-{dead}-89abcdef.tmp",
        ]
        for p in gone:
            p.write_bytes(b"left by a killed worker")
        # a writer in another PID namespace: its PID means nothing here, its flock does
        held = part / f".part-1.parquet.gictools-{dead}-00c0ffee.tmp"
        held.write_bytes(b"still being written")
        not_ours = part / ".notes.tmp"  # not a gictools temp name: never touched
        not_ours.write_bytes(b"someone else's")
        fd = os.open(held, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            assert clean_temp_files(root) == len(gone)
        finally:
            os.close(fd)
        assert os.path.exists(live) and held.exists() and not_ours.exists()
        assert not any(p.exists() for p in gone)
    finally:
        w.stdin.close()
        code = w.wait(timeout=60)
        w.stdout.close()
    assert code == 0
    assert (part / "part-0.parquet").read_bytes() == b"half a cell"  # the writer finished
    assert clean_temp_files(root) == 1  # the other namespace's writer is gone: its temp goes
    assert not held.exists()
