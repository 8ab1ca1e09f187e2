"""A trace on stdin (`replay -`, `save -`) is checked as it is spooled, the spool is bounded
and never outlives the run (signals included), and a full $TMPDIR is one line."""

import io
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gictools.errors import TraceFormatError
from gictools.streams import StdinError, spooled_stdin

ROOT = Path(__file__).parents[2]
TRACE = ROOT / "traces" / "lpi-stress-v1-d1-e17.msgpack"


def _env(tmp):
    return {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp)}


def _gictools(*args):
    return [sys.executable, "-m", "gictools", *args]


def _spools(d):
    return [n for n in os.listdir(d) if "stdin" in n]


def test_spool_is_the_trace_and_is_removed():
    with spooled_stdin(io.BytesIO(TRACE.read_bytes())) as p:
        assert Path(p).read_bytes() == TRACE.read_bytes()
        assert Path(p).name.startswith(".stdin.trace.gictools-")
    assert not Path(p).exists()


def test_bounded_by_the_limit_given(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    src = io.BytesIO(TRACE.read_bytes())
    with (
        pytest.raises(StdinError, match=r"^<stdin>: longer than 100,000 bytes"),
        spooled_stdin(src, limit=100_000),
    ):
        pass
    assert _spools(tmp_path) == []


def test_not_a_trace_stops_on_the_first_bytes():
    class Endless(io.RawIOBase):
        n = 0

        def readinto(self, b):
            b[:] = b"y\n" * (len(b) // 2) + b"y" * (len(b) % 2)
            self.n += len(b)
            return len(b)

    src = Endless()
    with pytest.raises(TraceFormatError, match="looks like a text file"), spooled_stdin(src):
        pass
    assert src.n <= 1 << 20


@pytest.mark.parametrize("verb", [["replay", "-"], ["save", "-", "-o", "x.img"]])
def test_yes_into_stdin_is_refused_at_once(tmp_path, verb):
    r = subprocess.run(
        ["sh", "-c", "yes | " + " ".join(_gictools(*verb))],
        env=_env(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        "gictools: error: <stdin>: record 0: byte offset 0: not a gictools trace "
        "(looks like a text file)"
    ]
    assert _spools(tmp_path) == []


def test_garbage_after_a_valid_start_is_refused(tmp_path):
    r = subprocess.run(
        ["sh", "-c", f"(cat {TRACE}; yes) | {' '.join(_gictools('replay', '-'))}"],
        env=_env(tmp_path), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.startswith(
        f"gictools: error: <stdin>: record 30: byte offset {TRACE.stat().st_size}"
    )
    assert len(r.stderr.splitlines()) == 1
    assert _spools(tmp_path) == []


FEEDER = """
import sys, time
data = open(sys.argv[1], "rb").read()
sys.stdout.buffer.write(data[: len(data) // 2]); sys.stdout.flush()
time.sleep(60)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signal_during_the_copy_removes_the_spool(tmp_path, sig):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    feeder = subprocess.Popen([sys.executable, "-c", FEEDER, str(TRACE)], stdout=subprocess.PIPE)
    try:
        p = subprocess.Popen(
            _gictools("replay", "-"), stdin=feeder.stdout, env=_env(tmp),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        feeder.stdout.close()
        deadline = time.monotonic() + 20
        while not _spools(tmp) or os.path.getsize(tmp / _spools(tmp)[0]) == 0:
            assert time.monotonic() < deadline and p.poll() is None
            time.sleep(0.05)
        p.send_signal(sig)
        _, err = p.communicate(timeout=10)
        assert p.returncode in (-sig, 130, 1), err
        assert b"Traceback" not in err
        assert _spools(tmp) == []
    finally:
        feeder.kill()
        feeder.wait()


def _fsize_limit():
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))


def test_write_error_in_tmpdir_is_one_line(tmp_path):
    with open(TRACE, "rb") as f:
        r = subprocess.run(
            _gictools("replay", "-"), stdin=f, env=_env(tmp_path), capture_output=True,
            text=True, timeout=60, preexec_fn=_fsize_limit,
        )  # fmt: skip
    assert r.returncode == 2
    assert r.stderr == (
        f"gictools: error: <stdin>: cannot copy it to $TMPDIR ({tmp_path}): File too large; "
        "set TMPDIR to a directory with room, or give the trace as a file\n"
    )
    assert _spools(tmp_path) == []


def test_full_tmpdir_is_one_line(small_tmpfs):
    tmpdir = small_tmpfs("256k")
    with open(TRACE, "rb") as f:  # 341 kB into 256 kB
        r = subprocess.run(
            _gictools("replay", "-"), stdin=f, env=_env(tmpdir), capture_output=True,
            text=True, timeout=60,
        )  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.startswith(f"gictools: error: <stdin>: does not fit in $TMPDIR ({tmpdir}): ")
    assert len(r.stderr.splitlines()) == 1
    assert _spools(tmpdir) == []
