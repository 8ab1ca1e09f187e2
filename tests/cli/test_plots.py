"""Issue 25 point 7: plots a developer pastes into a cover letter. mrc.png on a log y axis
with coinciding curves both visible, integer ticks for counts, hit_rate.png lines told apart
and legends off the data, sweep plots titled by what they show without `1e6` offsets,
predict --plot like compare --plot, summarize --plot saying what it left out and why."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gictools import plotting
from gictools.cli import app

pytest.importorskip("matplotlib")
runner = CliRunner()
ROOT = Path(__file__).parent.parent.parent
T4 = str(ROOT / "traces" / "lpi-stress-v4-d4-e8-fixed.msgpack")
T1 = str(ROOT / "traces" / "lpi-stress-v1-d1-e17.msgpack")


@pytest.fixture
def figures(monkeypatch):
    """The figures the verbs save, by file name, drawn (so tick labels exist)."""
    seen = {}
    save = plotting.save

    def keep(fig, path, files, **kw):
        fig.canvas.draw()
        seen[Path(path).name] = (fig, [a for a in fig.axes])
        labels = {
            axis: [t.get_text() for t in getattr(a, f"get_{axis}ticklabels")()]
            for a in fig.axes
            for axis in ("x", "y")
        }
        offsets = [
            a.xaxis.get_offset_text().get_text() + a.yaxis.get_offset_text().get_text()
            for a in fig.axes
        ]
        legends = [_legend_outside(a) for a in fig.axes if a.get_legend() is not None]
        seen[Path(path).name] = {
            "axes": fig.axes,
            "labels": labels,
            "offsets": offsets,
            "legends_outside": legends,
            "title": fig.axes[0].get_title(),
        }
        save(fig, path, files, **kw)

    monkeypatch.setattr(plotting, "save", keep)
    return seen


def _legend_outside(ax) -> bool:
    r = ax.figure.canvas.get_renderer()
    return ax.get_legend().get_window_extent(r).x0 >= ax.get_window_extent(r).x1


def _pngs_ok(d: Path, names):
    for n in names:
        data = (d / n).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, n


def test_mrc_plots(tmp_path, figures):
    r = runner.invoke(app, ["mrc", T4, "--plot", str(tmp_path)])
    assert r.exit_code == 0, r.output
    _pngs_ok(tmp_path, ["mrc.png", "footprint.png"])
    mrc = figures["mrc.png"]
    (ax,) = mrc["axes"]
    assert ax.get_yscale() == "log" and ax.get_xscale() == "log"
    lru, usage = ax.get_lines()[:2]
    assert lru.get_linewidth() > usage.get_linewidth() and usage.get_marker() == "s"
    assert mrc["legends_outside"] == [True]
    assert all("e" not in t and "^" not in t for t in mrc["labels"]["x"] if t)
    fp = figures["footprint.png"]
    ys = [t for t in fp["labels"]["y"] if t]
    assert ys and all(float(t.replace(",", "")).is_integer() for t in ys)


def test_compare_plots_tell_lines_apart(tmp_path, figures):
    args = ["compare", T4, "--preset", "v6.10", "--preset", "fixed-v0", "--plot", str(tmp_path)]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    _pngs_ok(tmp_path, ["latency_cdf.png", "hit_rate.png", "time_share.png"])
    (ax,) = figures["hit_rate.png"]["axes"]
    a, b = ax.get_lines()[:2]
    # the two presets' hit rates coincide on this trace: different dashes, markers, phases
    assert a.get_marker() != b.get_marker() and a.get_linestyle() != b.get_linestyle()
    assert a.get_markevery()[0] != b.get_markevery()[0]
    assert a.get_linewidth() > b.get_linewidth()
    for name in ("latency_cdf.png", "hit_rate.png", "time_share.png"):
        assert figures[name]["legends_outside"] == [True], name
        assert figures[name]["offsets"] == [""], name


def test_predict_plot_like_compare(tmp_path, figures):
    r = runner.invoke(
        app,
        [
            "predict",
            "lpi-stress",
            "-e",
            "4",
            "-i",
            "20",
            "--preset",
            "v6.10",
            "--plot",
            str(tmp_path),
        ],
    )
    assert r.exit_code == 0, r.output
    _pngs_ok(tmp_path, ["time_share.png", "lpis.png"])
    assert f"wrote {tmp_path / 'lpis.png'}" in r.stdout
    assert "Predicted LPIs/s" in figures["lpis.png"]["title"]
    assert not any("e+" in t or "e6" in t for t in figures["lpis.png"]["labels"]["x"])


def test_summarize_plot_titles_and_skips(tmp_path, figures):
    ds = tmp_path / "ds"
    r = runner.invoke(
        app, ["sweep", "-t", T4, "-t", T1, "-c", "none", "-c", "lru-v6.8", "-o", str(ds), "-j", "1"]
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["summarize", str(ds), "--plot", str(tmp_path / "p")])
    assert r.exit_code == 0, r.output
    assert (
        "note: sweep-hit-rate.png: left out none/default/fixed-v0: no cache lookups (policy none)"
        in r.stderr
    )
    hit = figures["sweep-hit-rate.png"]
    assert (
        hit["title"]
        == "Translation-cache hit rate per policy/kernel/preset, summed over 2 trace(s)"
    )
    assert all(t.endswith("%") for t in hit["labels"]["x"] if t)
    lpis = figures["sweep-lpis.png"]
    assert lpis["offsets"] == [""]
    assert any(t.endswith("M") or t.endswith("k") for t in lpis["labels"]["x"])


def test_plot_help_says_needs_matplotlib():
    for verb in (["mrc"], ["compare"], ["summarize"], ["predict", "lpi-stress"]):
        r = runner.invoke(app, [*verb, "--help"], env={"COLUMNS": "200"})
        assert "needs matplotlib" in r.output, verb


def test_human_numbers():
    assert [plotting.human(v) for v in (0, 950, 12_000)] == ["0", "950", "12,000"]
    assert [plotting.human(v, 4e6) for v in (0, 5e5, 1.5e6)] == ["0M", "0.5M", "1.5M"]
    assert [plotting.human(v, 3e5) for v in (0, 5e4, 2e5)] == ["0k", "50k", "200k"]
