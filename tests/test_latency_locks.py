"""Lock kinds in the contention model: spinlock FIFO, mutex stealing and hand-off."""

import numpy as np

from gictools.latency.events import per_injector_lists
from gictools.latency.presets import parse_preset
from gictools.latency.resources import LOCKSTEP
from gictools.latency.simulation import Injections, RunOptions, Simulation
from gictools.model.cache import EVICT, HIT, MISS

WAKE = 5000.0


def _preset(kind="mutex"):
    return parse_preset(
        {
            "name": "locks",
            "cache": "usage-v2",
            "host_cpus": 64,
            "locks": {
                "its_lock": {"scope": "its", "kind": kind, "handoff_ns": 0}
                | ({"wake_ns": WAKE} if kind == "mutex" else {}),
            },
            "steps": {
                "entry": {"ns": 100},
                "lookup": {"ns": 50, "action": "lookup"},
                "translate": {"ns": 300, "lock": "its_lock"},
                "fill": {"ns": 50, "lock": "its_lock", "action": "fill"},
                "nap": {"ns": 10_000, "sleeps": True}
                | ({"lock": "its_lock"} if kind == "mutex" else {}),
                "queue": {"ns": 100},
            },
            "paths": {
                "hit": ["entry", "lookup", "queue"],
                "miss": ["entry", "lookup", "translate", "fill", "queue"],
                "evict": ["entry", "lookup", "translate", "fill", "nap", "queue"],
            },
        },
        "test",
    )


def _run(preset, streams):
    inj = np.concatenate([np.full(len(s), i) for i, s in enumerate(streams)])
    out = np.concatenate([np.array(s, dtype=np.int8) for s in streams])
    n = len(inj)
    z = np.zeros(n, dtype=np.int64)
    work = Injections(per_injector_lists(inj), z, z, z, z, outcome=out)
    sim = Simulation(preset, work, options=RunOptions(interleaving=LOCKSTEP, fast_forward=False))
    sim.run()
    last = np.cumsum([len(s) for s in streams]) - 1
    return sim.t_done[last], sim.t_issue[last]


# 0 holds its_lock and sleeps (10 us) from t = 500; 1 queues at t = 150 and sleeps on the
# wait list; unlock at 10 500 wakes 1, which runs WAKE ns later. 2 (42 hits of 250 ns) asks
# for the lock at 10 650, while 1 is waking: a running task takes the free mutex (stealing),
# then sleeps holding it until 21 000. 1 wakes at 15 500, finds it taken and asks for the
# hand-off. 3 (84 hits) asks at 21 150, while the lock is handed to 1: 3 waits.
STREAMS = [[EVICT], [MISS], [HIT] * 42 + [EVICT], [HIT] * 84 + [MISS]]


def test_mutex_running_task_steals_while_the_waiter_wakes_then_handoff():
    done, _ = _run(_preset("mutex"), STREAMS)
    assert done[2] < done[1]  # 2 arrived 10 us after 1 and got the lock first (stolen)
    assert done[1] < done[3]  # hand-off: 1 is served before the newcomer 3
    # 1 ran the slow path only after its hand-off wake-up: 21 000 + WAKE + 350 + 100
    assert done[1] == 21_000 + WAKE + 450


def test_spinlock_is_fifo():
    # three slow paths queue on its_lock in arrival order (0 and 1 tie at t = 150: by
    # injector), 2 arrives 500 ns later; each holds it 350 ns
    done, _ = _run(_preset("spinlock"), [[MISS], [MISS], [HIT] * 2 + [MISS]])
    assert list(done) == [600.0, 950.0, 1300.0]
