"""replay --jobs counts events as one process does: the workers' reports, weighed by each
group's share of the policies, reach the serial path's total (the traces' events) and
never go back."""

from pathlib import Path

import pytest

from gictools.replay import open_replayers, run_replayers
from gictools.replay.jobs import _events_of

ROOT = Path(__file__).parents[2]
T1 = ROOT / "traces" / "lpi-stress-v1-d1-e17.msgpack"  # 17,028 events
T4 = ROOT / "traces" / "lpi-stress-v4-d4-e8-fixed.msgpack"  # 1,661 events


def test_groups_weigh_by_their_policies():
    # 3 policies over 2 workers: one replays two, the other one
    told = []
    ev = _events_of([[0, 2], [1]], 3, told.append)
    ev([0, 0])
    ev([900, 0])  # two thirds of the work: 600 events' worth
    ev([900, 300])
    ev([1000, 1000])
    assert told == [0, 600, 700, 1000]
    _events_of([[0, 2], [1, 3]], 4, told.append)([17_028, 17_028])
    assert told[-1] == 17_028


def _events(traces, policies, jobs, out):
    seen: list[int] = []
    rps = open_replayers(traces, policies)
    run_replayers(rps, out, events=seen.append, jobs=jobs)
    return seen, sum(rp.seq for rp in rps)


@pytest.mark.parametrize("traces", [[T1], [T4, T1]], ids=["one", "two-traces"])
def test_parallel_reaches_the_serial_total(tmp_path, traces):
    policies = ["none", "lru-v6.8", "usage-v2"]  # unequal groups over 2 workers
    serial, n = _events(traces, policies, 1, tmp_path / "s.parquet")
    parallel, m = _events(traces, policies, 2, tmp_path / "p.parquet")
    assert n == m == sum({T1: 17_028, T4: 1_661}[t] for t in traces)
    assert serial[-1] == parallel[-1] == n
    assert parallel == sorted(parallel)  # never back
    assert all(0 <= x <= n for x in parallel)
