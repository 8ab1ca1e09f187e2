"""supervise.run_program, the one way gictools runs an external program (the C compiler,
kvmcheck, the nested host): nothing it started outlives a timeout, a stop signal to gictools,
or (for the program itself) gictools dying by SIGKILL."""

import os
import signal
import subprocess
import sys
import time

import pytest
from procwalk import alive, below

from gictools.supervise import Stopped, run_program

# a program that starts a grandchild and waits: the shape of nested.sh -> timeout -> qemu
TREE = ["sh", "-c", "sleep 300 & sleep 300; wait"]


def _wait_gone(pids, seconds=5.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end and any(alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def test_exit_status_and_output():
    rc, out, err = run_program(["sh", "-c", "echo out; echo err >&2; exit 3"], 30)
    assert (rc, out, err) == (3, "out\n", "err\n")


def test_a_timeout_kills_the_program_and_what_it_started(tmp_path):
    pids = tmp_path / "pids"
    tree = ["sh", "-c", f"echo $$ > {pids}; sleep 300 & echo $! >> {pids}; sleep 300; wait"]
    with pytest.raises(subprocess.TimeoutExpired):
        run_program(tree, 1.0)
    started = [int(x) for x in pids.read_text().split()]
    assert len(started) == 2  # the program and the grandchild it started
    assert _wait_gone(started) == []


def _parent(tmp_path):
    """A Python process that runs TREE through run_program and reports the program's pid."""
    code = (
        "import sys; from gictools.supervise import run_program\n"
        "try:\n"
        f"    run_program({TREE!r}, 120)\n"
        "except BaseException as e:\n"
        "    print(type(e).__name__, flush=True); raise\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip


def _tree_of(parent, depth=3, seconds=10.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        progs = below(parent.pid, 1)
        grand = below(parent.pid, 2)
        if progs and len(grand) >= 2:  # sh and its two sleeps
            return progs + grand
        time.sleep(0.05)
    raise AssertionError("the program did not start")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_stop_signal_kills_the_whole_tree(tmp_path, sig):
    parent = _parent(tmp_path)
    tree = _tree_of(parent)
    parent.send_signal(sig)
    out, _ = parent.communicate(timeout=10)
    assert out.strip() == "Stopped"
    assert parent.returncode != 0
    assert _wait_gone(tree) == []


def test_sigkill_of_gictools_kills_the_program(tmp_path):
    parent = _parent(tmp_path)
    tree = _tree_of(parent)
    program = tree[0]
    parent.kill()
    parent.communicate(timeout=10)
    assert _wait_gone([program]) == []  # the parent-death signal
    for p in tree[1:]:  # its own children are the program's to bound (nested.sh: TIMEOUT)
        os.kill(p, signal.SIGKILL)


def test_stopped_is_raised_in_this_process():
    """A stop signal while it waits becomes Stopped here (the CLI turns it into its exit).
    SIGINT: after SIGTERM the supervisor makes this process die by it at exit, by design."""
    import threading

    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
    with pytest.raises(Stopped):
        run_program(TREE, 60)
