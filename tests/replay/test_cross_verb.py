"""Cross-verb agreement (issue 22): replay, compare, a sweep cell and summarize give the same
figures for the same trace and preset, because they run the same path: identical
p50/p99/max latency, MSI and outcome counts, and modelled time. And predict's steady
state agrees with replay's on the equivalent generated trace."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from captures import FIXTURES, capture_inputs

from gictools.analysis.compare import compare_trace
from gictools.latency.presets import BUNDLED, load_preset
from gictools.model.cache import RECYCLE
from gictools.model.commands import encode_command
from gictools.replay import replay
from gictools.trace.gen_lpi_stress import ITS_BASE, RAM, setup_records
from gictools.trace.writer import TraceWriter

TRACES = Path(__file__).resolve().parents[2] / "traces"
KEYS = ("latency_p50_ns", "latency_p99_ns", "latency_max_ns", "msis", "hits", "evictions")


def _faulty(path):
    """lpi-stress tables (1 vCPU, 2 devices x 12 events mapped), then MSI blocks from two
    injectors that also name unmapped events and devices (slow path fails: nofill) around
    DISCARDs (invalidations); long blocks (block path) and short ones (per event)."""
    vm = {"vcpus": 1, "kernel": "6.8", "memory": [list(RAM)], "itses": [{"base": ITS_BASE}]}
    with TraceWriter(path, vm=vm) as w:
        for kind, args in setup_records(1, 2, 12, "fixed"):
            getattr(w, kind)(*args) if kind != "command" else w.command(0, args)
        rng = np.random.default_rng(7)
        for k in range(6):
            n = 3000 if k % 2 else 40
            dev = rng.integers(0, 3, n)
            ev = rng.integers(0, 14, n)
            ts = np.arange(n, dtype=np.int64) + k * 10_000
            w.msi_block(0, ts, dev, ev, rng.integers(0, 2, n))
            w.command(0, encode_command("DISCARD", DeviceID=0, EventID=k))
    return path


def _recycle(path):
    """usage-v2 reuses invalidated entries (RECYCLE) after each MOVI."""
    vm = {"vcpus": 1, "kernel": "6.8", "memory": [list(RAM)], "itses": [{"base": ITS_BASE}]}
    t = 0
    with TraceWriter(path, vm=vm) as w:
        for kind, args in setup_records(1, 1, 40, "fixed"):
            getattr(w, kind)(*args) if kind != "command" else w.command(0, args)
        for _ in range(10):
            for ev in range(16):
                t += 1000
                w.msi(0, 0, ev, t_ns=t, injector=0)
            w.command(0, encode_command("MOVI", DeviceID=0, EventID=0, ICID=0), t_ns=t)
    return path


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    from gictools.trace.import_qemu import import_qemu

    d = tmp_path_factory.mktemp("xverb")
    out = []
    for t in ("lpi-stress-v4-d4-e8-fixed", "lpi-stress-v16-d16-e16", "lpi-stress-v1-d1-e17"):
        dst = d / t / f"{t}.msgpack"
        dst.parent.mkdir()
        shutil.copy(TRACES / f"{t}.msgpack", dst)
        out.append(dst)
    for name, make in (("faulty", _faulty), ("recycle", _recycle)):
        (d / name).mkdir()
        out.append(make(d / name / f"{name}.msgpack"))
    fx = FIXTURES / "qemu"
    for cap in ("smp2-rebind", "smp2-traffic-affinity", "smp4-hotplug"):  # imported captures
        (d / cap).mkdir()
        dst = d / cap / f"{cap}.msgpack"
        import_qemu(fx / f"{cap}.trace.log.gz", dst, **capture_inputs(fx, cap))
        out.append(dst)
    return out


@pytest.fixture(scope="module")
def swept(traces, tmp_path_factory):
    """One dataset per trace, one cell per bundled preset (with the preset's own cache)."""
    from gictools.sweep.grid import cells_from_args
    from gictools.sweep.run import run_sweep
    from gictools.sweep.summarize import summarize

    root = tmp_path_factory.mktemp("ds")
    out = {}
    for t in traces:
        cells = []
        for name in BUNDLED:
            cells += cells_from_args([str(t)], [load_preset(name).cache], [], [name])
        ds = root / t.stem
        res = run_sweep(cells, ds, jobs=1)
        assert res.count("done") == len(cells)
        rows = {r["row"]["cache_policy"] + "/" + p: r["row"] for p, r in res.results.items()}
        out[t.stem] = (summarize(ds)["replay"], rows)
    return out


# the list-cache presets simulate every window MSI by MSI: seconds each, so CI only
QUICK = [
    n if n in ("fixed-v0", "v6.10") else pytest.param(n, marks=pytest.mark.slow) for n in BUNDLED
]


@pytest.mark.parametrize("name", QUICK)
def test_replay_and_compare_agree(traces, name):
    p = load_preset(name)
    for t in traces:
        (rep,) = replay(t, [p.cache], preset=p)
        d = rep.as_dict()
        (c,) = compare_trace(t, [p])
        for k in (*KEYS, "recycles"):
            assert c[k] == d[k], (t.stem, name, k)
        assert d["elapsed_ns"] == pytest.approx(c["elapsed_s"] * 1e9)


@pytest.mark.slow
@pytest.mark.parametrize("name", BUNDLED)
def test_replay_compare_sweep_and_summarize_agree(traces, swept, name):
    p = load_preset(name)
    for t in traces:
        (rep,) = replay(t, [p.cache], preset=p)
        d = rep.as_dict()
        (c,) = compare_trace(t, [p])
        groups, rows = swept[t.stem]
        (g,) = [g for g in groups if g["preset"] == name]
        (row,) = [r for k, r in rows.items() if f"preset={name}/" in k]
        where = f"{t.stem} {name}"
        for k in KEYS:
            assert c[k] == d[k], (where, "compare", k)
            assert row[k] == d[k], (where, "sweep cell", k)
        for k in ("latency_p50_ns", "latency_p99_ns", "latency_max_ns", "msis", "evictions"):
            assert g[k] == d[k], (where, "summarize", k)
        assert c["recycles"] == row["recycles"] == d["recycles"] == int(rep.outcomes[RECYCLE])
        assert row["elapsed_ns"] == d["elapsed_ns"] == pytest.approx(c["elapsed_s"] * 1e9)
        assert g["lpis_per_sec"] == pytest.approx(c["lpis_per_sec"])


def test_the_cases_cover_every_outcome_kind(traces):
    """The traces above reach every outcome under some policy (else agreement on them
    would prove less than it says)."""
    from gictools.model.cache import N_OUTCOMES

    seen = np.zeros(N_OUTCOMES, dtype=np.int64)
    for t in traces:
        for r in replay(t, ["none", "lru-v6.8", "usage-v2", "per-its-v6.10"]):
            seen += r.outcomes
    assert (seen > 0).all(), seen


@pytest.mark.parametrize("name", ["v6.8-rc1", "series-v2", "v6.10"])
def test_predict_steady_state_matches_replay(tmp_path, name):
    """predict (policy in closed loop) and replay (outcomes from the model, then the same
    closed loop) of lpi-stress -v 1 -d 2 -e 4, lock-step: the same per-injection latency
    once the cache is warm."""
    from gictools.analysis.predict import predict_lpi_stress
    from gictools.trace.gen_lpi_stress import generate

    t = tmp_path / "t.msgpack"
    generate(t, vcpus=1, devices=2, events=4, iterations=400)
    p = load_preset(name)
    (rep,) = replay(t, [p.cache], preset=p)
    r = predict_lpi_stress(1, 2, 4, 400, p, lockstep=True, fast_forward=False)
    d = rep.as_dict()
    assert r["hits"] == d["hits"]
    assert r["latency_p50_ns"] == pytest.approx(d["latency_p50_ns"], abs=1)
    assert r["latency_p99_ns"] == pytest.approx(d["latency_p99_ns"], abs=1)
