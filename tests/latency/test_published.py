"""The two published vgic_lpi_stress tables, each predicted on its machine's host profile
(gictools.analysis.published): every number and every kernel ratio within 1.5x, the held-out
rows included, and --bands containing every measurement. Slow: minutes (run with -m slow).
The numbers at the published -i; the bands at 4000 injections per thread."""

import pytest

from gictools.analysis.published import (
    PUBLISHED,
    band_check,
    held_out,
    kernel_ratios,
    residuals,
)

pytestmark = pytest.mark.slow
FACTOR = 1.5  # issue 26: every published number within 1.5x


@pytest.fixture(scope="module")
def results():
    # at the published -i (the first pass, every translation missing once, weighs on the
    # rows at fewer iterations); the heaviest row leaps its steady state (Simulation.leap)
    return residuals(seeds=3, per_thread=None)


def test_every_published_number_within_the_factor(results):
    assert len(results) == len(PUBLISHED) == 16
    for row, predicted, ratio, _ in results:
        assert 1 / FACTOR <= ratio <= FACTOR, (row.machine, row.label, predicted, row.measured)


def test_held_out_rows_within_the_factor(results):
    held = [(row, q) for row, _, q, h in results if h]
    # lpi-2024b: 6 of its 10 rows fixed no parameter; lpi-2024a: v6.8-rc1 -v 64 -d 64 -e 1
    assert len(held) >= 7
    assert {row.machine for row, _ in held} == {"lpi-2024a", "lpi-2024b"}
    for row, q in held:
        assert held_out(row) and 1 / FACTOR <= q <= FACTOR, (row.label, q)


def test_kernel_ratios_within_the_factor(results):
    ratios = kernel_ratios(results)
    assert len(ratios) == 8  # 3 series-v2/v6.8 (lpi-2024a), 5 v6.10/v6.8 (lpi-2024b)
    for machine, cfg, pair, predicted, measured in ratios:
        assert 1 / FACTOR <= predicted / measured <= FACTOR, (machine, cfg, pair)


@pytest.mark.parametrize("row", PUBLISHED, ids=lambda r: f"{r.machine} {r.label}")
def test_bands_contain_the_measurement(row):
    env = band_check(row, seeds=2, per_thread=4000, jobs=1)
    assert env["contains"], env
