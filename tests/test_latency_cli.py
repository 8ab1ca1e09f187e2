"""predict / compare / mrc on the command line: JSON fields, seeds, plots, --plot checks."""

import json
import sys

import pytest
from typer.testing import CliRunner

from gictools.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    from gictools.trace.gen_lpi_stress import generate

    t = tmp_path_factory.mktemp("latcli") / "s.msgpack"
    generate(t, 2, 4, 17, 10)
    return t


def _predict(*extra):
    args = ["predict", "lpi-stress", "-v", "2", "-d", "3", "-e", "17", "-i", "20"]
    r = runner.invoke(app, [*args, "--preset", "v6.8-rc1", "--json", *extra])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def test_predict_json_reports_the_seed_spread():
    d = _predict("--seeds", "3")
    assert d["seeds"] == [0, 1, 2] and len(d["runs"]) == 3
    rates = sorted(x["lpis_per_sec"] for x in d["runs"])
    assert (d["lpis_per_sec_min"], d["lpis_per_sec"], d["lpis_per_sec_max"]) == tuple(rates)
    assert d["evictions_min"] <= d["evictions"] <= d["evictions_max"]
    assert all(x["method"] in ("simulated", "extrapolated") for x in d["runs"])
    one = _predict("--seed", "1")
    assert one["runs"][0]["lpis_per_sec"] == d["runs"][1]["lpis_per_sec"]  # --seed reproduces
    lock = _predict("--lockstep")
    assert lock["interleaving"].startswith("lock-step") and lock["seeds"] == [None]


def test_plot_without_matplotlib_fails_before_the_work(trace, monkeypatch, tmp_path):
    import gictools.analysis.compare as compare

    def boom(*a, **k):
        raise AssertionError("the replay ran")

    monkeypatch.setattr(compare, "compare_trace", boom)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    for cmd in (["compare", str(trace), "--preset", "v6.10"], ["mrc", str(trace)]):
        r = runner.invoke(app, [*cmd, "--plot", str(tmp_path / "p")])
        assert r.exit_code == 2 and "needs matplotlib" in r.output
    assert not (tmp_path / "p").exists()


def test_compare_plot_titles_name_trace_workload_and_cpus(trace, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.axes import Axes

    titles, ylabels = [], []
    real_title, real_ylabel = Axes.set_title, Axes.set_ylabel
    monkeypatch.setattr(
        Axes, "set_title", lambda s, t, *a, **k: titles.append(t) or real_title(s, t, *a, **k)
    )
    monkeypatch.setattr(
        Axes, "set_ylabel", lambda s, t, *a, **k: ylabels.append(t) or real_ylabel(s, t, *a, **k)
    )
    r = runner.invoke(
        app,
        [
            "compare",
            str(trace),
            "--preset",
            "v6.8-rc1",
            "--preset",
            "series-v2",
            "--host-cpus",
            "8",
            "--plot",
            str(tmp_path / "plots"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert len(titles) == 3
    for t in titles:
        assert "s.msgpack" in t and "lpi-stress -v 2 -d 4 -e 17 -i 10" in t and "8 host CPUs" in t
    assert "p50" in titles[0] and "p99" in titles[0]
    assert any("window of" in y for y in ylabels)


def test_mrc_plot_and_report(trace, tmp_path):
    pytest.importorskip("matplotlib")
    r = runner.invoke(app, ["mrc", str(trace), "--plot", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    assert "68 distinct translations" in r.output and "16 x 2 vCPUs = 32" in r.output
    for f in ("mrc.png", "footprint.png"):
        assert (tmp_path / "m" / f).stat().st_size > 1000


def test_compare_reports_progress_per_stage(trace):
    from gictools.analysis.compare import compare_trace

    seen = {}
    compare_trace(
        trace, ["v6.8-rc1", "v6.10"], progress=lambda s, d, t: seen.setdefault(s, []).append((d, t))
    )
    assert set(seen) == {"replay v6.8-rc1", "replay v6.10"}  # one replay per preset
    for calls in seen.values():
        done, total = calls[-1]
        assert done == total > 0 and all(d <= t for d, t in calls)
