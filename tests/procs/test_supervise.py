"""gictools.supervise with real signals: a worker that dies is one line naming the item and
the cause, the others are stopped, no temp file stays; SIGTERM/SIGINT/SIGHUP to the parent
stop every worker within a second; a SIGKILLed parent's workers end and clean up."""

import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gictools import supervise
from gictools.outputs import AtomicOutput
from gictools.supervise import Supervisor, WorkerFailed, run_all


def _square(x):
    return x * x


def _sleeper(pidfile, tmpdir):
    """Record this worker's PID, hold a temp file in tmpdir, sleep until stopped."""
    out = AtomicOutput(os.path.join(tmpdir, f"out-{os.getpid()}"))
    out.file.write(b"half")
    out.file.flush()
    with open(pidfile, "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(60)


def _suicide(signum, tmpdir):
    out = AtomicOutput(os.path.join(tmpdir, "victim"))
    out.file.write(b"half")
    out.file.flush()
    time.sleep(0.2)  # let the others start
    os.kill(os.getpid(), signum)
    time.sleep(10)


def _cpu_limited():
    resource.setrlimit(resource.RLIMIT_CPU, (1, 2))
    while True:
        pass


def _out_of_memory():
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (1 << 31, hard))
    return bytearray(1 << 32)


def _raise_config():
    from gictools.errors import ConfigError

    raise ConfigError("bad input in x.toml")


def _wait_gone(pids, within):
    from procwalk import alive  # here: the parent script imports this module without tests/

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.02)
    return not any(alive(p) for p in pids)


def _temps(d):
    return [n for n in os.listdir(d) if ".gictools-" in n]


def test_results_in_task_order():
    assert run_all(_square, [(i,) for i in range(7)], jobs=3) == [i * i for i in range(7)]


def test_cpu_count_follows_affinity():
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    try:
        assert supervise.cpu_count() == 1
    finally:
        os.sched_setaffinity(0, cpus)
    assert supervise.cpu_count() == len(cpus)


def test_a_worker_inherits_no_pool_size():
    assert run_all(supervise.cpu_count, [()]) == [1]


def test_worker_exception_is_raised_as_itself():
    from gictools.errors import ConfigError

    with pytest.raises(ConfigError, match=r"bad input in x\.toml"):
        run_all(_raise_config, [()], names=["cell a"])


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_dead_worker_one_line_others_stopped_no_temp(tmp_path, sig):
    pidfile = tmp_path / "pids"
    tasks = [(sig, str(tmp_path))] + [(str(pidfile), str(tmp_path))] * 2
    fns = {0: _suicide}

    def dispatch(i, *a):
        return fns.get(i, _sleeper)(*a)

    t0 = time.monotonic()
    with pytest.raises(WorkerFailed) as ei:
        run_all(
            dispatch,
            [(i, *t) for i, t in enumerate(tasks)],
            names=["policy lru-v6.8", "policy none", "policy usage-v2"],
            jobs=3,
            temp_dirs=[str(tmp_path)],
        )
    assert time.monotonic() - t0 < 5
    msg = str(ei.value)
    assert "\n" not in msg
    assert msg.startswith("policy lru-v6.8: worker killed by " + sig.name)
    others = [int(x) for x in pidfile.read_text().split()]
    assert len(others) == 2 and _wait_gone(others, 0.1)
    assert _temps(tmp_path) == []


def test_rlimit_cpu_names_sigxcpu():
    with pytest.raises(WorkerFailed, match=r"^seed 3: worker killed by SIGXCPU \(its CPU time"):
        run_all(_cpu_limited, [()], names=["seed 3"])


def test_memory_error_is_one_line():
    with pytest.raises(WorkerFailed, match=r"^cell x: worker ran out of memory \(MemoryError"):
        run_all(_out_of_memory, [()], names=["cell x"])


def test_supervisor_reports_each_outcome(tmp_path):
    """The sweep's way: every task's outcome, a death among them, nothing raised."""
    got = {}
    with Supervisor(_suicide_or_square, [(0,), (3,), (4,)], jobs=2) as sup:
        for ev in sup.results(timeout=0.2):
            if ev is not None:
                got[ev[0]] = ev[1:]
    assert got == {0: ("died", "killed by SIGKILL (by a user, or by the kernel out of memory)"),
                   1: ("ok", 9), 2: ("ok", 16)}  # fmt: skip


def _suicide_or_square(x):
    if x == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    return x * x


PARENT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {here!r})
    from gictools.supervise import run_all
    import test_supervise as t
    pidfile, tmpdir = sys.argv[1], sys.argv[2]
    try:
        run_all(t._sleeper, [(pidfile, tmpdir)] * 3, jobs=3, temp_dirs=[tmpdir])
    except KeyboardInterrupt:  # as the CLI: Stopped is one
        print("stopped", file=sys.stderr)
        sys.exit(130)
    """
)


def _start_parent(tmp_path):
    pidfile = tmp_path / "pids"
    script = PARENT.format(here=str(Path(__file__).parent))
    p = subprocess.Popen(
        [sys.executable, "-c", script, str(pidfile), str(tmp_path)],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if pidfile.exists() and len(pidfile.read_text().split()) == 3:
            return p, [int(x) for x in pidfile.read_text().split()]
        assert p.poll() is None, p.stderr.read()
        time.sleep(0.05)
    p.kill()
    raise AssertionError("workers did not start")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_to_parent_stops_workers_within_a_second(tmp_path, sig):
    p, pids = _start_parent(tmp_path)
    assert len(_temps(tmp_path)) == 3
    t0 = time.monotonic()
    p.send_signal(sig)
    assert _wait_gone(pids, 1.0), "workers outlived the stop"
    assert time.monotonic() - t0 < 1.0
    err = p.communicate(timeout=10)[1]
    rc = p.returncode
    assert _temps(tmp_path) == []
    assert rc == (130 if sig == signal.SIGINT else -sig), err  # TERM/HUP: dies by it
    assert err == "stopped\n"


def test_sigkilled_parent_workers_exit_and_clean_up(tmp_path):
    p, pids = _start_parent(tmp_path)
    p.kill()
    p.communicate()
    assert _wait_gone(pids, 2.0), "workers outlived their SIGKILLed parent"
    assert _temps(tmp_path) == []


def _result_too_big_to_send():
    """A result that fits in memory, but its pickle does not."""
    with open("/proc/self/status") as f:
        vm = dict(ln.split(":", 1) for ln in f if ":" in ln)
    size = int(vm["VmSize"].split()[0]) * 1024
    x = bytearray(200 << 20)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (size + (220 << 20), hard))
    return x


def test_result_that_cannot_be_sent_is_one_line(capfd):
    with pytest.raises(WorkerFailed, match=r"^item: worker ran out of memory \(MemoryError\)$"):
        run_all(_result_too_big_to_send, [()], names=["item"])
    assert "Traceback" not in capfd.readouterr().err
