"""compare's in-memory replay collector gives the outcomes the temp-Parquet path gave."""

import os
import tempfile

import numpy as np
import pyarrow.parquet as pq
import pytest
from captures import FIXTURES, capture_inputs

from gictools.analysis.compare import msi_outcomes_from_trace
from gictools.model.cache import POLICIES, Outcome
from gictools.model.cache.keys import vm_keys
from gictools.model.commands import encode_command
from gictools.replay import Replayer
from gictools.trace.gen_lpi_stress import ITS_BASE, RAM, generate, setup_records
from gictools.trace.import_qemu import import_qemu
from gictools.trace.writer import TraceWriter

FIX = FIXTURES / "qemu"


def _via_parquet(trace, policy):
    """The former implementation: replay into a temporary Parquet file and read it back."""
    fd, tmp = tempfile.mkstemp(suffix=".parquet", prefix="gictools-compare-")
    os.close(fd)
    try:
        Replayer(trace, [policy], None, tmp).run()
        t = pq.read_table(
            tmp,
            columns=["op", "cache", "injector", "vcpu", "its", "device_id", "event_id", "error"],
        )
    finally:
        os.unlink(tmp)
    op = t.column("op").to_pylist()
    sel = np.array([o == "msi" for o in op], dtype=bool)
    cache = [c for c, s in zip(t.column("cache").to_pylist(), sel) if s]
    err = np.array(t.column("error").to_pylist(), dtype=object)[sel]
    outcome = np.array(
        [Outcome.of_column(c, e not in (0, None)) for c, e in zip(cache, err)], dtype=np.int8
    )

    def col(name):
        a = t.column(name).to_numpy(zero_copy_only=False)[sel]
        return np.array([0 if v is None or v != v else v for v in a], dtype=np.int64)

    dev, ev = col("device_id"), col("event_id")
    return col("injector"), outcome, col("vcpu"), col("its"), vm_keys(col("its"), dev, ev)


def _faulty(path):
    """lpi-stress tables (1 vCPU: 16 entries, 2 devices x 12 events mapped), then MSI blocks
    that also name unmapped events and devices (errors) around a DISCARD (invalidation)."""
    vm = {"vcpus": 1, "kernel": "6.8", "memory": [list(RAM)], "itses": [{"base": ITS_BASE}]}
    with TraceWriter(path, vm=vm) as w:
        for kind, args in setup_records(1, 2, 12, "fixed"):
            getattr(w, kind)(*args) if kind != "command" else w.command(0, args)
        rng = np.random.default_rng(7)
        for k in range(6):
            n = 3000 if k % 2 else 40  # a long block (numpy columns) and a short one (rows)
            dev = rng.integers(0, 3, n)  # device 2 is not mapped
            ev = rng.integers(0, 14, n)  # events 12, 13 are not mapped
            ts = np.arange(n, dtype=np.int64) + k * 10_000
            w.msi_block(0, ts, dev, ev, rng.integers(0, 2, n))
            w.command(0, encode_command("DISCARD", DeviceID=0, EventID=k))


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    d = tmp_path_factory.mktemp("cmp")
    # blocks of MSIs (numpy columns) past the cache capacity, and short blocks (rows)
    generate(d / "big.msgpack", vcpus=2, devices=3, events=40, iterations=30)
    generate(d / "small.msgpack", vcpus=1, devices=1, events=3, iterations=5)
    _faulty(d / "faulty.msgpack")
    out = [d / "big.msgpack", d / "small.msgpack", d / "faulty.msgpack"]
    for name in ("smp2-rebind",):  # an imported capture: MAPTI/MOVI/DISCARD between MSIs
        dst = d / f"{name}.msgpack"
        import_qemu(FIX / f"{name}.trace.log.gz", dst, **capture_inputs(FIX, name))
        out.append(dst)
    return out


@pytest.mark.parametrize("policy", list(POLICIES))
def test_in_memory_outcomes_match_the_temp_parquet_path(traces, policy):
    seen = set()
    for trace in traces:
        new = msi_outcomes_from_trace(trace, policy)
        old = _via_parquet(trace, policy)
        assert len(new[0]) > 0
        for a, b in zip(new, old):
            assert np.asarray(a).dtype == np.asarray(b).dtype
            np.testing.assert_array_equal(a, b)
        seen |= set(new[1].tolist())
    if policy != "none":  # errors and evictions were compared, not only hits
        assert {Outcome.MISS_NOFILL, Outcome.HIT} <= seen
    if policy in ("lru-v6.8", "usage-v2"):  # the bounded caches
        assert seen & {Outcome.EVICT, Outcome.RECYCLE}
