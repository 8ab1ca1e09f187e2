"""Miss-ratio curves: known answers (cyclic streams) and the LRU policy itself."""

import json

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from gictools.cli import app
from gictools.model.cache.lru_v6_8 import LruV68
from gictools.mrc import analyse, lru_curve, stack_distances


def test_cyclic_stream_misses_below_k_and_hits_from_k():
    k, n = 17, 17 * 40
    curve = lru_curve(stack_distances(np.arange(n) % k))
    assert len(curve) == k
    for c, m in curve:
        assert m == (1.0 if c < k else k / n)  # after warm-up, every access hits at k


@given(st.lists(st.integers(0, 12), min_size=1, max_size=120), st.integers(1, 3))
def test_random_streams_agree_with_the_lru_policy_at_every_capacity(stream, vcpus_unit):
    keys = np.array(stream, dtype=np.int64)
    curve = dict(map(tuple, lru_curve(stack_distances(keys))))
    for cap in curve:
        pol = LruV68(1)
        pol.capacity = cap
        pol.doorbells[0x10040] = 0
        misses = 0
        for x in stream:
            if pol.lookup(0x10040, x, 0) is None:
                misses += 1
                pol.fill(0x10040, x, 0, 1)
        assert misses / len(stream) == curve[cap]


def test_kernel_rule_and_capacity_for_99():
    k, n = 20, 20 * 200
    ev = np.arange(n, dtype=np.int64) % k
    z = np.zeros(n, dtype=np.int64)
    r = analyse(z, z, ev, 1)
    assert r["capacity_for_99"] == 20 and r["distinct"] == 20
    assert r["kernel_rule"]["capacity"] == 16 and not r["kernel_rule"]["enough"]
    assert dict(map(tuple, r["usage_v2"]))[20] == k / n
    assert r["per_its_footprint"][0][-1] == [n, 20]


def test_cli_mrc_json(tmp_path):
    from gictools.trace.gen_lpi_stress import generate

    t = tmp_path / "s.msgpack"
    generate(t, 1, 1, 17, 30)
    r = CliRunner().invoke(app, ["mrc", str(t), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["lru"][0][0] == 1 and len(d["lru"]) == 17
    assert d["lru"][15][1] == 1.0 and d["capacity_for_99"] is None  # 17/510 cold misses
    assert d["kernel_rule"]["capacity"] == 16


def test_cli_mrc_bad_inputs(tmp_path):
    from gictools.trace.gen_lpi_stress import generate

    t = tmp_path / "s.msgpack"
    generate(t, 1, 1, 3, 5)
    r = CliRunner().invoke(app, ["mrc", str(t), "--usage-capacity", "0"])
    assert r.exit_code == 2 and "--usage-capacity" in r.output
    r = CliRunner().invoke(app, ["mrc", str(t), "--usage-capacity", "100"])
    assert r.exit_code == 0 and "     100" in r.output  # beyond the distinct keys: all cold
    r = CliRunner().invoke(app, ["mrc", str(tmp_path / "missing.msgpack")])
    assert r.exit_code == 2 and "Traceback" not in r.output
