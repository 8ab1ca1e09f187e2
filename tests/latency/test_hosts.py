"""Host profiles (gictools.latency.hosts): loading, pricing a preset, the target vCPU's loop,
the selftest versions, and --host / --selftest on the CLI."""

import json
import math

import numpy as np
import pytest
from cli_json import cli_json
from typer.testing import CliRunner

from gictools.analysis.predict import predict_lpi_stress
from gictools.analysis.published import PUBLISHED, held_out, rows_of
from gictools.cli import app
from gictools.errors import ConfigError
from gictools.latency.hosts import BUNDLED_HOSTS, Host, load_host, parse_host
from gictools.latency.presets import BUNDLED, load_preset, parse_preset
from gictools.latency.simulation import VcpuLoop
from gictools.trace.gen_lpi_stress import selftest_routing

runner = CliRunner()


@pytest.mark.parametrize("name", BUNDLED_HOSTS)
def test_bundled_hosts_load_and_name_published_rows(name):
    h = load_host(name)
    assert h.name == name and h.core > 0
    labels = {r.label for r in rows_of(name)}
    assert set(h.fitted_on) <= labels  # every fitting row is one of its machine's
    assert len(h.free) <= len(h.fitted_on)  # no more free parameters than rows fitting them


def test_the_second_machine_keeps_rows_held_out():
    rows = rows_of("lpi-2024b")
    held = [r for r in rows if held_out(r)]
    assert len(rows) == 10 and len(held) == 6
    assert len(PUBLISHED) == 16


@pytest.mark.parametrize(
    "data, msg",
    [
        ({"name": "x", "core": 0}, "core"),
        ({"name": "x", "atomic_ns": -1}, "atomic_ns"),
        ({"name": "x", "line_ns": "fast"}, "line_ns"),
        ({"name": "x", "nr_lr": 0}, "nr_lr"),
        ({"name": "x", "bogus": 1}, "bogus"),
        ({"name": "x", "free": ["speed"]}, "free"),
        ({"core": 1.0}, "name"),
    ],
)
def test_hostile_host_tables_name_the_key(data, msg):
    with pytest.raises(ConfigError, match=msg):
        parse_host(data, "h.toml")


def test_unknown_host_and_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="unknown host profile"):
        load_host("nosuch")
    with pytest.raises(ConfigError, match=r"h\.toml"):
        load_host(path=tmp_path / "h.toml")
    (tmp_path / "bad.toml").write_text("name = [")
    with pytest.raises(ConfigError, match=r"bad\.toml: not a TOML file"):
        load_host(path=tmp_path / "bad.toml")


def test_pricing_a_preset_known_answer():
    # v6.8-rc1 on a made-up host: every step's ns x core, + atomics x atomic_ns; the
    # presets' "host" hand-offs and remote lines from the profile; the vCPU section's 0 kept
    h = Host("t", core=0.5, line_ns=40.0, handoff_ns=300.0, atomic_ns=70.0, cpus=7, hz=1000)
    a = load_preset("v6.8-rc1", host="lpi-2024a")
    p = load_preset("v6.8-rc1", host=h)
    assert p.steps["entry"].ns == pytest.approx(a.steps["entry"].ns * 0.5)
    assert p.steps["lookup"].ns == pytest.approx(499.1 * 0.5)
    assert p.steps["queue"].ns == pytest.approx(2 * 70.0)
    assert p.locks["lpi_list_lock"].handoff_ns == 300.0 and p.locks["vcpu"].handoff_ns == 0.0
    assert p.walk_remote_line_ns == 40.0 and p.walk_per_entry_ns == pytest.approx(1.5)
    assert p.host_cpus == 7 and p.rcu.hz == 1000 and p.host is h


def test_reference_host_prices_as_the_seed_fit():
    # lpi-2024a is the reference (core 1): the fitted queue cost 179.7 = 2 atomics
    p = load_preset("series-v2")
    assert p.host.name == "lpi-2024a"
    assert p.steps["queue"].ns == pytest.approx(179.7) and p.locks["its_lock"].handoff_ns == 173.4


@pytest.mark.parametrize("name", BUNDLED)
@pytest.mark.parametrize("host", BUNDLED_HOSTS)
def test_exported_preset_reparses_to_the_same_prices(name, host):
    p = load_preset(name, host=host)
    d = json.loads(json.dumps(p.as_dict()))
    d["walk"].pop("moves_on_hit")  # the cache policy's fact, not a preset key
    d["host_cpus"] = d["host_cpus"] or "unlimited"
    q = parse_preset(d, "exported")
    assert {k: s.ns for k, s in q.steps.items()} == pytest.approx(
        {k: s.ns for k, s in p.steps.items()}
    )
    assert q.host.name == p.host.name and q.host.flush_ns == p.host.flush_ns


def test_flush_work_sorts_only_above_the_list_registers():
    h = Host("t", nr_lr=4)
    assert h.flush_work(0) == 0 and h.flush_work(4) == 4
    assert h.flush_work(32) == pytest.approx(32 + 32 * 5)  # walk + list_sort's n log2 n
    assert h.flush_work(256) == pytest.approx(256 + 256 * 8)


def test_vcpu_loop_share_known_answers():
    h = Host("t", flush_ns=1.0, handoff_ns=200.0, nr_lr=4)
    vcpu = np.zeros(8, dtype=np.int64)
    per_inj = [range(0, 4), range(4, 8)]  # two injectors, both on vCPU 0
    loop = VcpuLoop(h, vcpu, per_inj, acked=False)
    assert loop.share(0, 1) == pytest.approx(1 / 2)  # 1 pending, 2 injectors
    for k in range(2, 9):
        loop.share(0, k)
    assert loop.share(0, 9) == pytest.approx((9 + 9 * math.log2(9)) / 2)
    loop.done(0)  # one injector left: it carries the whole flush
    assert loop.share(0, 9) == pytest.approx(9 + 9 * math.log2(9))
    acked = VcpuLoop(h, vcpu, per_inj, acked=True)
    for k in range(1, 9):
        s = acked.share(0, k)
    # acked: about one pending LPI per injector, and a re-queue hand-off of ap_list_lock
    assert s == pytest.approx(2 / 2 + 200.0)


def test_single_stream_known_answer_on_the_second_machine():
    # one injector, v6.10, all hits after the first: 1e9 / (hit path), each step priced
    h = load_host("lpi-2024b")
    p = load_preset("v6.10", host=h)
    hit = sum(p.steps[s].ns for s in p.paths["hit"]) + h.flush_ns * h.flush_work(1)
    r = predict_lpi_stress(1, 1, 1, 20000, p, selftest="2024", lockstep=True, chunk=None)
    assert r["lpis_per_sec"] == pytest.approx(1e9 / hit, rel=0.002)
    # the SRCU read side and the bus lookup are on the hit path, each priced by core
    assert {"srcu", "io_bus", "lookup"} <= set(p.paths["hit"])
    assert p.steps["srcu"].ns == pytest.approx(350.0 * h.core)


@pytest.mark.parametrize("d, e", [(16, 16), (32, 1)])
def test_the_ceiling_is_the_target_vcpus_loop(d, e):
    # d injectors on vCPU 0 (2024 selftest), v6.10: they queue at the target's lines, and
    # one flush of its n pending LPIs passes per round: 1 / (2 atomics + flush / d)
    h = load_host("lpi-2024b")
    p = load_preset("v6.10", host=h)
    n = d * e
    per = 2 * h.atomic_ns + h.flush_ns * h.flush_work(n) / d
    r = predict_lpi_stress(d, d, e, 400, p, selftest="2024", seed=0)
    assert r["lpis_per_sec"] == pytest.approx(1e9 / per, rel=0.05)


def test_selftest_versions():
    assert selftest_routing("2024") == ("as-measured", False)
    assert selftest_routing("2025") == ("fixed", True)
    assert selftest_routing("2024", "fixed") == ("fixed", False)  # --routing overrides
    with pytest.raises(ConfigError, match="--selftest"):
        selftest_routing("2023")


def test_acked_selftest_requeues_under_the_targets_lock():
    # same routing, one injector: 2025's guest takes the LPI, so each injection queues it
    # again and pays the ap_list_lock hand-off from the vCPU
    h = load_host("lpi-2024b")
    p = load_preset("v6.10", host=h)
    a = predict_lpi_stress(1, 1, 1, 5000, p, selftest="2024", routing="fixed", lockstep=True)
    b = predict_lpi_stress(1, 1, 1, 5000, p, selftest="2025", lockstep=True)
    assert 1e9 / b["lpis_per_sec"] - 1e9 / a["lpis_per_sec"] == pytest.approx(
        h.handoff_ns, rel=0.01
    )
    assert b["config"]["routing"] == "fixed" and b["config"]["selftest"] == "2025"


def test_cli_host_and_selftest(tmp_path):
    doc = cli_json(
        "predict lpi-stress -i 50 -e 2 --preset v6.10 --host lpi-2024b --selftest 2024 --seeds 1"
    )
    assert doc["host"] == "lpi-2024b" and doc["config"]["routing"] == "as-measured"
    r = runner.invoke(app, ["predict", "lpi-stress", "--preset", "v6.10", "--host", "nosuch"])
    assert r.exit_code == 2 and "unknown host profile" in r.output
    t = tmp_path / "t.msgpack"
    r = runner.invoke(app, ["gen", "lpi-stress", "-e", "2", "-i", "2", "-o", str(t)])
    assert r.exit_code == 0, r.output
    from gictools.trace.reader import TraceReader

    with TraceReader(t) as rd:
        meta = rd.header["metadata"]
    assert meta["selftest"] == "2025" and meta["routing"] == "fixed"
    for verb in (["replay", str(t), "--preset", "v6.10"], ["compare", str(t), "--preset", "v6.10"]):
        a = runner.invoke(app, [*verb, "--json"])
        b = runner.invoke(app, [*verb, "--host", "lpi-2024b", "--json"])
        assert a.exit_code == 0 and b.exit_code == 0, (a.output, b.output)
        assert a.output != b.output  # the other machine prices the same MSIs differently


def test_fit_host_recovers_a_known_core():
    # "measure" one single-stream row on a machine whose core is 0.5, then fit core from the
    # reference profile: the fit finds the machine again
    from gictools.analysis.published import Row, fit_host, predict_row

    truth = load_host("lpi-2024b").with_(core=0.5)
    row = Row("lab", (1, 1, 1, 2000), "v6.8-rc1", 0.0)
    measured = predict_row(row, truth, seeds=1, per_thread=2000, jobs=1)["lpis_per_sec"]
    row = Row("lab", (1, 1, 1, 2000), "v6.8-rc1", measured)
    fitted = fit_host([row], load_host("lpi-2024b"), ["core"], per_thread=2000, rounds=1)
    assert fitted.core == pytest.approx(0.5, rel=0.02)
    assert fitted.free == ("core",) and fitted.fitted_on == (row.label,)
