"""The latency model: mechanisms, not numbers (plus one calibration regression check)."""

import json

import numpy as np
import pytest
from cli_json import cli_json
from typer.testing import CliRunner

from gictools.analysis.compare import compare_events, compare_trace, format_table
from gictools.analysis.predict import predict_lpi_stress
from gictools.cli import app
from gictools.errors import ConfigError
from gictools.latency.events import simulate_events
from gictools.latency.presets import BUNDLED, bundled_path, load_preset, parse_preset
from gictools.model.cache import EVICT, HIT, MISS

runner = CliRunner()


def _preset(
    hit_locks=(), lookup_lock=None, cache="per-its-v6.10", rcu_ns=None, walk=None, host_cpus=1024
):
    """A small synthetic preset: entry 100, lookup 50, queue 100, slow path 300."""
    steps = {
        "entry": {"ns": 100},
        "lookup": {"ns": 50, "action": "lookup", **({"lock": lookup_lock} if lookup_lock else {})},
        "translate": {"ns": 300, "lock": "its_lock"},
        "fill": {"ns": 50, "lock": ["its_lock"], "action": "fill"},
        "queue": {"ns": 100, **({"lock": list(hit_locks)} if hit_locks else {})},
    }
    paths = {
        "hit": ["entry", "lookup", "queue"],
        "miss": ["entry", "lookup", "translate", "fill", "queue"],
    }
    if rcu_ns is not None:
        steps["rcu_wait"] = {"ns": rcu_ns, "lock": "its_lock", "sleeps": True}
        # a fixed grace period: the test's bound is exact
        paths["evict"] = ["entry", "lookup", "translate", "fill", "rcu_wait", "queue"]
        paths["recycle"] = paths["evict"]
    d = {
        "name": "synthetic",
        "cache": cache,
        "host_cpus": host_cpus,
        "locks": {
            "vm_lock": {"scope": "vm", "handoff_ns": 0},
            "its_lock": {"scope": "its", "kind": "mutex", "handoff_ns": 0, "wake_ns": 0},
            "vcpu": {"scope": "vcpu", "handoff_ns": 0},
        },
        "steps": steps,
        "paths": paths,
    }
    if walk:
        d["walk"] = walk
    return parse_preset(d, "test")


# --- presets are data -------------------------------------------------------------------------
@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_presets_load(name):
    p = load_preset(name)
    assert p.name == name and p.paths["hit"][0] == "entry"
    json.dumps(p.as_dict())


def test_preset_file_copy_and_edit(tmp_path):
    text = bundled_path("v6.10").read_text().replace('name = "v6.10"', 'name = "mine"')
    text = text.replace("ns = 250.0", "ns = 2500.0")  # a slower lookup
    f = tmp_path / "mine.toml"
    f.write_text(text)
    mine = load_preset(path=f)
    assert mine.name == "mine" and mine.steps["lookup"].ns == 2500.0
    slow = predict_lpi_stress(1, 1, 1, 1000, mine)["lpis_per_sec"]
    fast = predict_lpi_stress(1, 1, 1, 1000, "v6.10")["lpis_per_sec"]
    assert slow < fast


@pytest.mark.parametrize(
    "mutate, msg",
    [
        (lambda d: d["steps"]["queue"].update(lock="nosuch"), "not a lock"),
        (lambda d: d["paths"].update(miss=["entry", "translate", "fill", "queue"]), "start like"),
        (lambda d: d["steps"]["entry"].update(ns=-1), "below"),
        (lambda d: d.update(cache="lru-v9"), "not a policy"),
        (lambda d: d["locks"]["vm_lock"].update(scope="cpu"), "scope"),
        (lambda d: d.update(colour="red"), "unknown key"),
    ],
)
def test_preset_validation_names_the_key(mutate, msg):
    d = {
        "name": "x",
        "cache": "per-its-v6.10",
        "locks": {"vm_lock": {"scope": "vm", "handoff_ns": 0}},
        "steps": {
            "entry": {"ns": 1},
            "lookup": {"ns": 1, "action": "lookup"},
            "translate": {"ns": 1},
            "fill": {"ns": 1, "action": "fill"},
            "queue": {"ns": 1},
        },
        "paths": {
            "hit": ["entry", "lookup", "queue"],
            "miss": ["entry", "lookup", "translate", "fill", "queue"],
        },
    }
    parse_preset(json.loads(json.dumps(d)))
    mutate(d)
    with pytest.raises(ConfigError, match=msg):
        parse_preset(d)


def test_unknown_preset_name():
    with pytest.raises(ConfigError, match="unknown latency preset"):
        load_preset("v9.9")


# --- mechanisms -------------------------------------------------------------------------------
def _rate(preset, d, **kw):
    return predict_lpi_stress(
        64,
        d,
        1,
        2000,
        preset,
        routing="fixed",
        lockstep=True,
        chunk=None,
        vcpu_threads_busy=False,
        **kw,
    )["lpis_per_sec"]


def test_fully_serialized_path_cannot_scale():
    # every step of the hit path under one VM-wide lock: throughput is 1 / (sum of steps)
    p = parse_preset(
        {
            **_preset().as_dict(),
            "name": "ser",
            "locks": {"vm_lock": {"scope": "vm", "handoff_ns": 0}, "its_lock": {"scope": "its"}},
            "steps": {
                "entry": {"ns": 100, "lock": "vm_lock"},
                "lookup": {"ns": 50, "lock": "vm_lock", "action": "lookup"},
                "translate": {"ns": 300, "lock": "its_lock"},
                "fill": {"ns": 50, "lock": "its_lock", "action": "fill"},
                "queue": {"ns": 100, "lock": "vm_lock"},
            },
            "walk": {},
        },
        "t",
    )
    r1, r8, r32 = _rate(p, 1), _rate(p, 8), _rate(p, 32)
    assert r8 == pytest.approx(r1, rel=0.02) and r32 == pytest.approx(r1, rel=0.02)
    assert r32 <= 1e9 / 250 * 1.001


def test_lock_free_hit_path_scales_until_cpus_run_out():
    p = _preset()  # no lock on the hit path; per-vCPU queue not locked
    r1 = _rate(p, 1)
    r8 = _rate(p, 8)
    assert r8 == pytest.approx(8 * r1, rel=0.03)
    # 32 injectors on 8 host CPUs: no better than 8 injectors
    r32_on_8 = _rate(p, 32, host_cpus=8)
    assert r32_on_8 == pytest.approx(r8, rel=0.05)
    assert _rate(p, 32) == pytest.approx(32 * r1, rel=0.05)


def test_shared_target_vcpu_section_caps_lock_free_injection():
    # as-measured routing: every LPI on vCPU 0, so its section (100 ns) caps the rate
    p = _preset(hit_locks=("vcpu",))
    r = predict_lpi_stress(64, 64, 1, 200, p, lockstep=True, chunk=None)["lpis_per_sec"]
    assert r == pytest.approx(1e9 / 100, rel=0.03)
    fixed = predict_lpi_stress(64, 64, 1, 200, p, routing="fixed", lockstep=True, chunk=None)
    assert fixed["lpis_per_sec"] > 3 * r


def test_one_rcu_wait_per_eviction_bounds_throughput_by_grace_period():
    gp = 1_000_000  # 1 ms
    p = _preset(cache="usage-v2", rcu_ns=gp)
    # 17 events through 16 slots: every injection misses and evicts
    r = predict_lpi_stress(1, 1, 17, 20, p, lockstep=True, chunk=None)
    assert r["evictions"] > 0.9 * r["injections"]
    assert r["lpis_per_sec"] <= 1e9 / gp * 1.05
    # more injectors do not help: the grace period is waited holding its_lock
    r4 = predict_lpi_stress(1, 4, 17, 5, p, lockstep=True, chunk=None)
    assert r4["lpis_per_sec"] <= 1e9 / gp * 1.05
    assert r4["time_share"]["steps"]["rcu_wait"] > 0.1


def test_series_v2_collapses_on_seventeen_events():
    fits = predict_lpi_stress(1, 1, 16, 100, "series-v2")["lpis_per_sec"]
    thrash = predict_lpi_stress(1, 1, 17, 100, "series-v2")
    assert thrash["hit_rate"] == 0.0 and thrash["lpis_per_sec"] < fits / 1000


def test_closed_loop_is_deterministic_and_seeds_reproduce():
    a = predict_lpi_stress(4, 8, 5, 40, "series-v2", lockstep=True, chunk=None)
    b = predict_lpi_stress(4, 8, 5, 40, "series-v2", lockstep=True, chunk=None)
    assert a == b
    s1 = predict_lpi_stress(4, 8, 17, 40, "v6.8-rc1", seed=3)
    s2 = predict_lpi_stress(4, 8, 17, 40, "v6.8-rc1", seed=3)
    s3 = predict_lpi_stress(4, 8, 17, 40, "v6.8-rc1", seed=4)
    assert s1 == s2 and s1["runs"][0]["seed"] == 3
    assert s1["lpis_per_sec"] != s3["lpis_per_sec"]  # the seed matters
    inj = np.array([i % 5 for i in range(3000)])
    out = np.array([HIT if i % 7 else (EVICT if i % 3 else MISS) for i in range(3000)])
    p = load_preset("v6.8-rc1")
    l1, w1, _ = simulate_events(p, inj, out, host_cpus=4)
    l2, w2, _ = simulate_events(p, inj, out, host_cpus=4)
    assert np.array_equal(l1, l2) and np.array_equal(w1, w2)


@pytest.mark.parametrize(
    "preset, cfg",
    [
        ("v6.8-rc1", (8, 8, 16, 500)),
        ("series-v2", (16, 16, 16, 250)),
        ("v6.10", (4, 8, 4, 1500)),
        ("v6.8-rc1", (4, 4, 17, 600)),  # over-committed: threads progress unequally
    ],
)
def test_fast_forward_and_extrapolation_match_full_simulation(preset, cfg):
    full = predict_lpi_stress(*cfg, preset, seed=1, fast_forward=False, chunk=None)
    fast = predict_lpi_stress(*cfg, preset, seed=1, chunk=20_000)
    run = fast["runs"][0]
    assert run["fast_forwarded_events"] + run["simulated_events"] <= cfg[1] * cfg[2] * cfg[3]
    assert run["simulated_events"] <= full["runs"][0]["simulated_events"]
    assert fast["lpis_per_sec"] == pytest.approx(full["lpis_per_sec"], rel=0.04)
    assert fast["hits"] == pytest.approx(full["hits"], rel=0.02, abs=cfg[1] * cfg[2])


def test_over_committed_stochastic_run_hits_and_respects_the_grace_period_bound():
    # 4 threads x 17 events through 64 slots (v = 4): over-committed by 4 translations
    r = predict_lpi_stress(4, 4, 17, 150, "series-v2", seed=2)
    lock = predict_lpi_stress(4, 4, 17, 150, "series-v2", lockstep=True, chunk=None)
    assert r["hits"] > 0 and r["hit_rate"] > 0.5
    assert r["runs"][0]["method"] == "simulated"  # not steady: simulated to the last thread
    # one ITS, synchronize_rcu() under its_lock: grace periods never overlap, and an
    # eviction and a recycle each wait for one
    shortest = 1e9 / load_preset("series-v2").rcu.hz  # a draw is at least one tick
    for x in (r, lock):
        assert x["evictions"] + x["recycles"] <= x["elapsed_s"] * 1e9 / shortest


def test_simulate_events_latency_includes_waits():
    p = load_preset("v6.8-rc1")
    n = 2000
    inj = np.arange(n) % 8
    out = np.full(n, HIT)
    lat, wait, summ = simulate_events(p, inj, out)
    assert lat.dtype == np.int64 and lat.shape == wait.shape == (n,)
    assert (wait >= 0).all() and (wait <= lat).all()
    assert wait[n // 2 :].mean() > 0  # 8 injectors queue on lpi_list_lock
    one, w1, _ = simulate_events(p, np.zeros(50), np.full(50, HIT))
    assert (w1 == 0).all() and len(set(one.tolist())) == 1  # alone: no waiting


def test_v68_lock_is_the_bottleneck_and_series_moves_it():
    a = predict_lpi_stress(64, 64, 1, 300, "v6.8-rc1", seed=1)["time_share"]["locks"]
    b = predict_lpi_stress(64, 64, 1, 300, "series-v2", seed=1)["time_share"]["locks"]
    assert max(a, key=a.get) == "lpi_list_lock"
    assert "lpi_list_lock" not in b or b["lpi_list_lock"] < 0.01
    assert max(b, key=b.get) == "vcpu"


@pytest.mark.slow
def test_calibration_rows_reproduced():
    # a regression check on the shipped numbers, as seed medians over 3 seeds at the
    # published -i (docs/latency-model.md §4.1 has the residuals this tolerance comes from).
    # Not at fewer iterations: the first pass (every translation misses once, through
    # its_lock) weighs ~0.4 ms, which put series-v2 -v 16 -d 16 -e 16 at 0.958 of measured
    # at -i 117 against 1.013 at -i 10000. ~17 s in all (fast-forward).
    from gictools.analysis.predict import CALIBRATION

    for (v, d, e, i), meas in CALIBRATION.items():
        for name, measured in meas.items():
            r = predict_lpi_stress(v, d, e, i, name, seeds=3)
            assert r["lpis_per_sec"] == pytest.approx(measured, rel=0.05), (v, d, e, name)


# --- compare and the CLI ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stress_trace(tmp_path_factory):
    from gictools.trace.gen_lpi_stress import generate

    t = tmp_path_factory.mktemp("lat") / "s.msgpack"
    generate(t, 2, 4, 17, 20)
    return t


def test_compare_trace_side_by_side(stress_trace):
    res = compare_trace(stress_trace, ["v6.8-rc1", "series-v2", "v6.10"])
    by = {r["preset"]: r for r in res}
    assert by["v6.10"]["hit_rate"] > 0.9 and by["v6.8-rc1"]["hit_rate"] == 0.0
    assert by["series-v2"]["evictions"] > 0
    assert (
        by["series-v2"]["lpis_per_sec"]
        < by["v6.8-rc1"]["lpis_per_sec"]
        < by["v6.10"]["lpis_per_sec"]
    )
    assert "LPIs/s" in format_table(res)
    ev = [(0, d, e, d) for _ in range(20) for e in range(17) for d in range(4)]
    res2 = compare_events(ev, ["v6.10"], 2)
    assert res2[0]["msis"] == len(ev)


def test_cli_predict_json():
    d = cli_json("predict lpi-stress -v 2 -d 2 -e 2 -i 50 --preset v6.8-rc1")
    assert (
        d["lpis_per_sec"] > 0
        and 0 <= d["hit_rate"] <= 1
        and "lpi_list_lock"
        in d["time_share"]["locks"] | d["time_share"]["steps"] | {"lpi_list_lock": 0}
    )
    r = runner.invoke(app, ["predict", "lpi-stress", "--preset", "nope"])
    # a choice: refused while parsing, the known presets listed
    assert r.exit_code == 2 and "--preset: 'nope' is not one of" in r.output and "v6.10" in r.output


def test_cli_compare(stress_trace, tmp_path):
    r = runner.invoke(
        app, ["compare", str(stress_trace), "--preset", "v6.8-rc1", "--preset", "v6.10"]
    )
    assert r.exit_code == 0, r.output
    assert "v6.8-rc1" in r.output and "p99" in r.output


def test_cli_compare_plots(stress_trace, tmp_path):
    pytest.importorskip("matplotlib")
    r = runner.invoke(
        app,
        [
            "compare",
            str(stress_trace),
            "--preset",
            "v6.8-rc1",
            "--preset",
            "v6.10",
            "--plot",
            str(tmp_path / "plots"),
        ],
    )
    assert r.exit_code == 0, r.output
    for f in ("latency_cdf.png", "hit_rate.png", "time_share.png"):
        assert (tmp_path / "plots" / f).stat().st_size > 1000
