"""predict's bar counts injections over every seed (serial and in supervised processes),
reaching the total when the runs are done; an extrapolated run counts its rest at its end."""

import re

import pytest
from ptyrun import on_a_terminal

from gictools.analysis.predict import predict_lpi_stress
from gictools.cli.progress import si

ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")
COUNT = re.compile(r"\s(\d+)% (\S+)/(\S+)")


@pytest.mark.parametrize("jobs", [1, 2])
def test_progress_counts_every_seeds_injections(jobs):
    seen = []
    cfg = (4, 8, 17, 800)  # 108,800 injections a seed: the parallel path at jobs 2
    r = predict_lpi_stress(
        *cfg,
        "v6.8-rc1",
        seeds=3,
        jobs=jobs,
        chunk=20_000,
        progress=lambda d, t: seen.append((d, t)),
    )
    total = 3 * 8 * 17 * 800
    assert seen and {t for _, t in seen} == {total}
    done = [d for d, _ in seen]
    assert done == sorted(done) and done[-1] == total  # never backwards; all of it at the end
    assert len(r["runs"]) == 3


def test_the_bar_ends_at_the_seeds_injections():
    code, text = on_a_terminal(
        [
            "predict",
            "lpi-stress",
            *[
                "-v",
                "4",
                "-d",
                "4",
                "-e",
                "4",
                "-i",
                "2000",
                "--seeds",
                "2",
                "--preset",
                "v6.8-rc1",
            ],
        ],
        env={"COLUMNS": "200", "LINES": "40"},
    )
    lines = [ln for ln in re.split(r"[\r\n]", ANSI.sub("", text)) if ln]
    bars = [m.groups() for ln in lines if ln.startswith("predict") and (m := COUNT.search(ln))]
    assert code == 0, lines
    assert bars and bars[-1] == ("100", si(2 * 4 * 4 * 2000), si(2 * 4 * 4 * 2000)), lines


def test_bands_progress_counts_every_band_run():
    from gictools.analysis.predict import BAND_SEEDS, band_cases, predict_bands
    from gictools.latency.presets import load_preset

    p = load_preset("v6.8-rc1")
    seen = []
    rows = predict_bands(2, 2, 2, 500, p, progress=lambda d, t: seen.append((d, t)))
    total = len(band_cases(p)) * BAND_SEEDS * 2 * 2 * 500
    assert len(rows) == len(band_cases(p)) > 0
    assert {t for _, t in seen} == {total}
    done = [d for d, _ in seen]
    assert done == sorted(done) and done[-1] == total


def test_the_bar_with_bands_ends_at_every_runs_injections():
    from gictools.analysis.predict import BAND_SEEDS, band_cases
    from gictools.latency.presets import load_preset

    n = 2 * 2 * 500
    total = 5 * n + len(band_cases(load_preset("v6.8-rc1"))) * BAND_SEEDS * n
    args = ["predict", "lpi-stress", "-v", "2", "-d", "2", "-e", "2", "-i", "500"]
    code, text = on_a_terminal(
        [*args, "--preset", "v6.8-rc1", "--bands"], env={"COLUMNS": "200", "LINES": "40"}
    )
    lines = [ln for ln in re.split(r"[\r\n]", ANSI.sub("", text)) if ln]
    bars = [m.groups() for ln in lines if ln.startswith("predict") and (m := COUNT.search(ln))]
    assert code == 0, lines
    assert bars and bars[-1] == ("100", si(total), si(total)), lines
    assert {b[2] for b in bars} == {si(total)}  # one total from the start: never back to 0%
