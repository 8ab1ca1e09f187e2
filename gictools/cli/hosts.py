"""CLI options of the host profiles and the selftest version (predict, compare, replay, gen).

Light, as every gictools.cli module: the names --help shows are constants here, checked
against the library's (tests/cli/test_hosts_options.py), so that `gictools --help` imports
neither the latency model (gictools.latency.hosts) nor the generator and numpy
(gictools.trace.gen_lpi_stress). The library applies the defaults where the option is used
(host None: DEFAULT_HOST).
"""

from typing import Annotated, Literal

import typer

HOSTS = ("lpi-2024a", "lpi-2024b")  # gictools.latency.hosts.BUNDLED_HOSTS
DEFAULT_HOST = "lpi-2024a"  # gictools.latency.hosts.DEFAULT_HOST

HostOpt = Annotated[
    str | None,
    typer.Option(
        "--host",
        help=f"host profile pricing the preset: {', '.join(HOSTS)} or a .toml file "
        f"(default: {DEFAULT_HOST}; docs/latency-model.md 'Host profiles')",
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
SELFTEST_DEFAULT: SelftestName = "2025"  # gictools.trace.gen_lpi_stress.DEFAULT_SELFTEST
