"""Replay end to end: generated stress traces, Parquet contract, expectations, Recorder."""

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from gictools import VM
from gictools.errors import TraceFormatError
from gictools.guest import Guest
from gictools.replay import replay
from gictools.stats.schema import COLUMNS
from gictools.trace.gen_lpi_stress import generate
from gictools.trace.recorder import Recorder
from gictools.trace.writer import TraceWriter

POLICIES = ["none", "lru-v6.8", "usage-v2", "per-its-v6.10"]


def where(t, col, value, op=pc.equal):
    return t.filter(op(pc.cast(t[col], pa.string()), value))


@pytest.fixture(scope="module")
def thrash(tmp_path_factory):
    p = tmp_path_factory.mktemp("t") / "e17.msgpack"
    generate(p, vcpus=1, devices=1, events=17, iterations=10)
    return p


def test_stress_e17_cache_outcomes(thrash, tmp_path):
    out = tmp_path / "o.parquet"
    reps = {r.policy: r for r in replay(thrash, POLICIES, out=out)}
    n = 17 * 10
    for r in reps.values():
        assert r.msis == n and r.delivered == n and r.failure_count == 0
        assert r.commands == 1 + 1 + 17 + 1  # MAPC, MAPD, 17 MAPTI, INVALL
        assert not r.command_errors and not r.msi_errors
    assert reps["none"].lookups == 0
    # 16-entry LRU / usage caches: every lookup misses, every miss after the first 16 evicts
    for p in ("lru-v6.8", "usage-v2"):
        assert (reps[p].hits, reps[p].misses, reps[p].evictions) == (0, n, n - 16)
    assert (reps["per-its-v6.10"].hits, reps["per-its-v6.10"].misses) == (n - 17, 17)
    t = pq.read_table(out)
    assert t.schema.names == [c for c, _ in COLUMNS]
    # 1 property-table write, 3 redistributor + 4 ITS register writes, 20 commands, the MSIs
    events = 1 + 3 + 4 + 20 + n
    assert t.num_rows == 4 * events == 4 * where(t, "cache_policy", "none").num_rows
    msis = where(t, "op", "msi")
    assert msis.num_rows == 4 * n
    lru = where(msis, "cache_policy", "lru-v6.8")
    assert lru["cache"].to_pylist()[16:] == ["miss-evict"] * (n - 16)
    # the victim of a pure LRU over a 17-cycle is the event 16 slots back
    ev = lru["event_id"].to_pylist()
    vev = lru["victim_event_id"].to_pylist()
    assert all(vev[i] == ev[i - 16] for i in range(16, n))
    assert lru["intid"].to_pylist() == [8192 + e for e in ev]
    assert set(lru["vcpu"].to_pylist()) == {0}
    meta = pq.read_metadata(out).metadata
    assert json.loads(meta[b"cache_policy"]) == POLICIES
    assert len(meta[b"trace_sha256"]) == 64


def test_default_policy_follows_kernel(thrash):
    (r,) = replay(thrash)  # generated traces say kernel 6.8
    assert r.policy == "lru-v6.8"
    (r,) = replay(thrash, kernel="6.10")
    assert r.policy == "per-its-v6.10"


def test_fixed_routing_spreads_lpis(tmp_path):
    p = tmp_path / "v4.msgpack"
    generate(p, vcpus=4, devices=2, events=8, iterations=2, routing="fixed")
    out = tmp_path / "o.parquet"
    replay(p, ["per-its-v6.10"], out=out)
    t = pq.read_table(out)
    msi = where(t, "op", "msi")
    # ICID(dev, ev) = (dev*e + ev) mod v, MAPC ICID c -> vCPU c
    want = [
        ((d * 8 + e) % 4) for d, e in zip(msi["device_id"].to_pylist(), msi["event_id"].to_pylist())
    ]
    assert msi["vcpu"].to_pylist() == want


def test_failed_expectation_reported_with_record_index(tmp_path):
    p = tmp_path / "x.msgpack"
    with TraceWriter(p, vm={"vcpus": 1, "itses": [{"base": 0x0800_0000}]}) as w:
        w.msi(0, 1, 2)  # ITS not enabled: -EBUSY
        w.expect("msi", {"ret": 1})
        w.expect("msi", {"ret": -16, "error": -16})
    (r,) = replay(p)
    assert r.failure_count == 1
    assert r.failures[0][0] == 2  # record 0 is the header; the MSI is 1
    assert "ret" in r.failures[0][1]


def test_bad_trace_leaves_no_output(tmp_path, thrash):
    data = thrash.read_bytes()
    bad = tmp_path / "bad.msgpack"
    bad.write_bytes(data[: len(data) - 100])
    out = tmp_path / "o.parquet"
    with pytest.raises(TraceFormatError):
        replay(bad, ["lru-v6.8"], out=out)
    assert not out.exists()
    assert not [f for f in os.listdir(tmp_path) if f.startswith("o.parquet")]


def test_recorder_trace_replays_to_same_state(tmp_path):
    vm = VM(2, kernel="7.0")
    vm.add_its()
    p = tmp_path / "rec.msgpack"
    with Recorder(vm, p) as rec:
        g = Guest(rec, rec.itses[0])
        g.enable_lpis()
        assert g.mapc(0, 0) == 0 and g.mapc(1, 1) == 0
        assert g.mapd(5, 4) == 0
        for e in range(4):
            g.set_lpi_config(8200 + e)
            assert g.mapti(5, e, 8200 + e, e % 2) == 0
        for e in range(4):
            assert rec.signal_msi(rec.itses[0], 5, e).ret == 1
        assert g.movi(5, 0, 1) == 0
        rec.ack(1, 8201)
        rec.expect("pending", intid=8200, vcpu=1, pending=True)
        assert g.discard(5, 3) == 0
        rec.itses[0].save_tables()
    (r,) = replay(p, ["per-its-v6.10"])
    assert r.failure_count == 0, r.failures
    # replay the trace into a model and compare with the recorded VM's state
    from gictools.replay import Replayer

    rp = Replayer(p, ["per-its-v6.10"])
    rp.run()
    assert rp.runs[0].vm.state() == vm.state()
    assert rp.runs[0].vm.memory.snapshot() == vm.memory.snapshot()


def test_block_and_single_msi_records_agree(tmp_path):
    """The same MSIs as single records and as one block replay to the same rows."""
    a, b = tmp_path / "a.msgpack", tmp_path / "b.msgpack"
    evs = [int(x) for x in np.random.default_rng(3).integers(0, 20, 300)]
    for path, blocked in ((a, True), (b, False)):
        generate(path, 1, 1, 17, 0)  # set-up only
        from gictools.trace.reader import TraceReader

        recs = list(TraceReader(path))
        hdr = TraceReader(path).header
        with TraceWriter(path, vm=hdr["vm"]) as w:
            for rec in recs:
                if rec[0] == 2:
                    w.command(rec[3], rec[4], t_ns=rec[1])
                elif rec[0] == 3:
                    w.reg(*rec[3:9], t_ns=rec[1])
                elif rec[0] == 4:
                    w.mem(rec[3], rec[4], t_ns=rec[1])
            if blocked:
                w.msi_block(
                    0,
                    np.arange(300, dtype=np.uint64),
                    np.zeros(300, np.uint32),
                    np.array(evs, np.uint32),
                )
            else:
                for i, e in enumerate(evs):
                    w.msi(0, 0, e, t_ns=i)
                    if e < 17:
                        w.expect("lpi", {"intid": 8192 + e, "pending": True})
    oa, ob = tmp_path / "a.parquet", tmp_path / "b.parquet"
    replay(a, POLICIES, out=oa)
    ra = replay(b, POLICIES, out=ob)
    assert [r.failures for r in ra] == [[]] * 4
    ta, tb = pq.read_table(oa), pq.read_table(ob)
    tb = where(tb, "op", "expect", pc.not_equal)
    cols = [
        "op",
        "device_id",
        "event_id",
        "intid",
        "vcpu",
        "error",
        "cache",
        "victim_event_id",
        "cache_entries",
        "cache_policy",
    ]
    key = lambda t: sorted(zip(*[t[c].to_pylist() for c in ["cache_policy", "seq"]]))  # noqa: E731
    assert len(key(ta)) == len(key(tb))
    for pol in POLICIES:
        fa = where(ta, "cache_policy", pol).select(cols).to_pylist()
        fb = where(tb, "cache_policy", pol).select(cols).to_pylist()
        assert fa == fb, pol


@pytest.mark.slow  # two 72k-event simulations: the smallest trace with two MSI blocks
def test_preset_latency_is_one_closed_loop_across_blocks(tmp_path):
    """Blocks are not simulated apart: the rows equal one simulation over every MSI."""
    from gictools.latency.events import simulate_events
    from gictools.latency.presets import load_preset

    p = tmp_path / "two-blocks.msgpack"
    generate(p, vcpus=2, devices=4, events=3, iterations=6000)  # 72,000 MSIs: 2 blocks
    out = tmp_path / "o.parquet"
    preset = load_preset("v6.8-rc1")
    (rep,) = replay(p, ["lru-v6.8"], out=out, preset=preset)
    msi = where(pq.read_table(out), "op", "msi")
    assert msi.num_rows == 72000 and msi["latency_ns"].null_count == 0
    inj = np.array(msi["injector"].to_pylist(), dtype=np.uint32)
    outcome = np.array(
        [{"hit": 0, "miss": 1, "miss-evict": 2}[c] for c in msi["cache"].to_pylist()], dtype=np.int8
    )
    keys = (np.array(msi["device_id"].to_pylist(), np.uint64) << np.uint64(32)) | np.array(
        msi["event_id"].to_pylist(), np.uint64
    )
    lat, wait, _ = simulate_events(
        preset,
        inj,
        outcome,
        vcpus=np.array(msi["vcpu"].to_pylist()),
        its=np.zeros(72000, np.int64),
        keys=keys,
    )
    assert msi["latency_ns"].to_pylist() == lat.tolist()
    assert msi["wait_ns"].to_pylist() == wait.tolist()
    assert rep.msis == 72000 and sum(rep.latency.values()) == 72000
