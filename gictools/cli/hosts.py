"""CLI options of the host profiles and the selftest version (predict, compare, replay, gen)."""

from typing import Annotated, Literal

import typer

from gictools.latency.hosts import BUNDLED_HOSTS, DEFAULT_HOST
from gictools.trace.gen_lpi_stress import DEFAULT_SELFTEST  # noqa: F401  (the library default)

HostOpt = Annotated[
    str | None,
    typer.Option(
        "--host",
        help=f"host profile pricing the preset: {', '.join(BUNDLED_HOSTS)} or a .toml file "
        f"[default: {DEFAULT_HOST}] (docs/latency-model.md 'Host profiles')",
        show_default=False,
    ),
]
SelftestName = Literal["2024", "2025"]  # gictools.trace.gen_lpi_stress.SELFTESTS
SelftestOpt = Annotated[
    SelftestName,
    typer.Option(
        "--selftest",
        help="vgic_lpi_stress version: 2024 (the published tables: every LPI on vCPU 0, never "
        "acknowledged) or 2025 (MAPC fixed, the guest takes and acknowledges its LPIs); "
        "sets --routing's default",
        show_default=True,
    ),
]
SELFTEST_DEFAULT: SelftestName = "2025"  # DEFAULT_SELFTEST
