"""Progress counts from supervised workers (supervise.report_progress -> on_progress): the
counts the supervisor hands on sum to the work done, a slow supervisor never holds a
worker up, and a worker that fails mid-way still stops everything, leaving no process,
descriptor or mapping behind."""

import os
import signal
import time

import pytest

from gictools import supervise
from gictools.supervise import Start, Supervisor, WorkerFailed, report_progress, run_all

METHODS = [Start("fork"), Start("forkserver")]


def _count_to(n, step):
    """Replay n 'events', reporting the running count every `step` of them (and the
    last), as the replayer does."""
    for done in range(step, n + step, step):
        report_progress(min(done, n))
        time.sleep(0.001)
    return n


def _silent(n):
    return n


def _hammer(n):
    """Report n times as fast as it can; how long that took."""
    t0 = time.monotonic()
    for done in range(1, n + 1):
        report_progress(done)
    return time.monotonic() - t0


def _report_then_die(n, pidfile):
    with open(pidfile, "a") as f:
        f.write(f"{os.getpid()}\n")
    report_progress(n)
    time.sleep(0.3)  # let the others start and report
    os.kill(os.getpid(), signal.SIGKILL)


def _report_then_sleep(n, pidfile):
    with open(pidfile, "a") as f:
        f.write(f"{os.getpid()}\n")
    report_progress(n)
    time.sleep(60)


def _wait_gone(pids, within):
    from procwalk import alive

    deadline = time.monotonic() + within
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _fds():
    return sorted(os.listdir("/proc/self/fd"))


def _progress_maps():
    with open("/proc/self/maps") as f:
        return [ln for ln in f if "gictools-progress" in ln]


@pytest.mark.parametrize("start", METHODS, ids=lambda s: s.method)
def test_counts_sum_to_the_work_done(start):
    """N = 5 tasks of known sizes over k = 2 workers: the last counts handed on are each
    task's size, their sum the whole; each task's final count is told before its result."""
    sizes = [1000, 1537, 4096, 1, 2500]
    seen: list[list[int]] = []
    final_at_result = {}
    with Supervisor(
        _count_to, [(n, 97) for n in sizes], jobs=2, start=start, on_progress=seen.append
    ) as sup:
        for ev in sup.results():
            assert ev is not None
            i, status, value = ev
            assert status == "ok" and value == sizes[i]
            final_at_result[i] = seen[-1][i]
    assert seen[-1] == sizes and sum(seen[-1]) == 9_134
    assert final_at_result == dict(enumerate(sizes))
    for a, b in zip(seen, seen[1:]):  # each slot only grows, and each call is news
        assert all(x <= y for x, y in zip(a, b)) and a != b
    assert sup.counts() == sizes  # kept once stopped


def test_run_all_passes_on_progress_and_a_silent_worker_counts_zero():
    seen: list[list[int]] = []
    assert run_all(_silent, [(3,), (4,)], jobs=2, on_progress=seen.append) == [3, 4]
    assert seen == []  # nothing reported: nothing to tell
    assert run_all(_count_to, [(300, 7), (9, 7)], jobs=2, on_progress=seen.append) == [300, 9]
    assert seen[-1] == [300, 9]


def test_report_outside_a_worker_does_nothing():
    report_progress(5)  # no supervisor: no error, no state
    assert supervise._my_slot is None


def test_a_slow_supervisor_never_holds_a_worker_up():
    """The supervisor sleeps 1.5 s in on_progress while two workers each report 200,000
    times: they finish long before it wakes (a pipe would fill after a few thousand)."""
    slept = []

    def slow(counts):
        if not slept:
            slept.append(1)
            time.sleep(1.5)

    n = 200_000
    took = run_all(_hammer, [(n,), (n,)], jobs=2, on_progress=slow)
    assert max(took) < 1.0, took


def test_no_descriptor_or_mapping_outlives_the_supervisor():
    before = _fds()
    for start in METHODS:
        seen: list[list[int]] = []
        run_all(_count_to, [(50, 10)] * 3, jobs=2, start=start, on_progress=seen.append)
        assert seen[-1] == [50] * 3
    assert _fds() == before
    assert _progress_maps() == []


@pytest.mark.parametrize("start", METHODS, ids=lambda s: s.method)
def test_a_worker_failing_mid_way_stops_everything(tmp_path, start):
    pidfile = tmp_path / "pids"
    before = _fds()
    seen: list[list[int]] = []
    t0 = time.monotonic()
    with pytest.raises(WorkerFailed) as ei:
        run_all(
            _die_or_sleep,  # importable: a fork server's worker imports it
            [(i, 10 + i, str(pidfile)) for i in range(3)],
            names=["policy a", "policy b", "policy c"],
            jobs=3,
            start=start,
            on_progress=seen.append,
        )
    assert time.monotonic() - t0 < 5
    assert str(ei.value).startswith("policy a: worker killed by SIGKILL")
    assert seen and seen[-1] == [10, 11, 12]  # every report reached the supervisor
    pids = [int(x) for x in pidfile.read_text().split()]
    assert len(pids) == 3 and _wait_gone(pids, 0.5)
    assert _fds() == before
    assert _progress_maps() == []


def _die_or_sleep(i, n, pidfile):
    return (_report_then_die if i == 0 else _report_then_sleep)(n, pidfile)


def test_a_failing_on_progress_stops_the_workers(tmp_path):
    pidfile = tmp_path / "pids"

    def broken(counts):
        if sum(counts) >= 2:  # both have started and reported
            raise ValueError("display broke")

    with pytest.raises(ValueError, match="display broke"):
        run_all(_report_then_sleep, [(1, str(pidfile))] * 2, jobs=2, on_progress=broken)
    pids = [int(x) for x in pidfile.read_text().split()]
    assert len(pids) == 2 and _wait_gone(pids, 0.5)
