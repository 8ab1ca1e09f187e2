"""A sweep cell under an address-space limit (no heavier than a replay), AtomicOutput when
its own set-up fails, and full-disk errors that name the user's output, not a temp."""

import errno
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from gictools.outputs import user_error

ROOT = Path(__file__).parents[2]
T1 = ROOT / "traces" / "lpi-stress-v1-d1-e17.msgpack"
GIB = 1 << 30


def _as_limit(nbytes):
    def f():
        resource.setrlimit(resource.RLIMIT_AS, (nbytes, nbytes))

    return f


def _run(args, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, **kw)


@pytest.mark.slow
def test_sweep_cells_run_under_1_5_gib_of_address_space(tmp_path):
    out = tmp_path / "ds"
    r = _run(
        [sys.executable, "-m", "gictools", "sweep", "-t", str(T1), "-c", "none", "-c",
         "lru-v6.8", "-o", str(out), "-q", "-j", "2", "--json"],
        preexec_fn=_as_limit(3 * GIB // 2),
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert '"failed": 0' in r.stdout and '"done": 2' in r.stdout


SETUP_FAILS = """
import os, sys, resource
import gictools.outputs as o
resource.setrlimit(resource.RLIMIT_AS, (800 << 20, resource.RLIM_INFINITY))
try:
    o.AtomicOutput(os.path.join(sys.argv[1], "x.parquet"), buffering=1 << 30)
except MemoryError:
    print(sorted(os.listdir(sys.argv[1])), o._live, flush=True)
    os._exit(0)  # no atexit clean-up: what is left now stays
print("no MemoryError")
"""


def test_atomic_output_leaks_nothing_when_its_buffer_fails(tmp_path):
    r = _run([sys.executable, "-c", SETUP_FAILS, str(tmp_path)])
    assert r.stdout == "[] {}\n", r.stderr
    assert os.listdir(tmp_path) == []


def test_user_error_names_the_output():
    tmp = "/d/.out.parquet.gictools-1-ab.tmp"
    e = user_error(
        OSError(28, "Error writing bytes to file. Detail: [errno 28] No space"),
        {tmp: "out.parquet"},
    )
    assert (e.errno, e.filename) == (28, "out.parquet")
    assert str(e).startswith("[Errno 28] cannot write: Error writing bytes")
    e = user_error(OSError(28, "cannot write: No space left on device", tmp), {tmp: "o.pq"})
    assert (e.filename, e.strerror) == ("o.pq", "cannot write: No space left on device")
    e = user_error(OSError(5, f"failed to write {tmp} (EIO)"), {tmp: "o.pq"})
    assert e.strerror == "cannot write: failed to write o.pq (EIO)"
    missing = FileNotFoundError(errno.ENOENT, "No such file or directory", "trace.msgpack")
    assert user_error(missing, {tmp: "o.pq"}) is missing  # about an input: unchanged


@pytest.fixture
def full_disk(small_tmpfs):
    return small_tmpfs("48k")


@pytest.fixture(scope="module")
def big_trace(tmp_path_factory):
    from gictools.trace.gen_lpi_stress import generate

    p = tmp_path_factory.mktemp("trace") / "big.msgpack"
    generate(p, 1, 1, 17, 30_000)
    return p


@pytest.mark.slow
def test_full_disk_replay_jobs_names_the_output(full_disk, big_trace):
    r = _run(
        [sys.executable, "-m", "gictools", "replay", str(big_trace), "-c", "none", "-c",
         "lru-v6.8", "-o", "out.parquet", "-j", "2"], cwd=full_disk,
    )  # fmt: skip
    assert r.returncode == 2
    assert r.stderr == ("gictools: error: out.parquet: cannot write: No space left on device\n")
    assert os.listdir(full_disk) == []


@pytest.mark.slow
def test_full_disk_sweep_names_the_cell_file(full_disk, big_trace):
    r = _run(
        [sys.executable, "-m", "gictools", "sweep", "-t", str(big_trace), "-c", "none", "-o",
         "ds", "-q", "-j", "1"], cwd=full_disk,
    )  # fmt: skip
    assert r.returncode == 2
    last = r.stderr.splitlines()[-1]
    assert re.search(r"No space left on device: 'ds/events/policy=none/kernel=default/"
                     r"preset=[^/]+/trace=big/part-0.parquet'$", last), r.stderr  # fmt: skip
    assert ".gictools-" not in r.stderr
    assert [p for p in (full_disk / "ds").rglob(".*") if p.name != ".sweep.lock"] == []
