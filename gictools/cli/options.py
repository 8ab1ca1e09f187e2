"""The options verbs share, declared once: one name, one help text, one set of choices.

Choices are typer's (listed in --help, completed, case-insensitive); computing them never
imports the model.
"""

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import typer

ROUTINGS = ("as-measured", "fixed")
ALL = "all"  # --cache all: every registered policy


def _policy_names() -> tuple:
    from gictools.model.cache import policy_names  # the registry: no numpy, no model

    return policy_names()


def _kernels() -> tuple:
    from gictools.model.kernel import MILESTONES  # a table, no model import

    return tuple(MILESTONES)


def _kernel_checked(value: str | None) -> str | None:
    """--kernel: X.Y or X.Y.Z (a stable point release), checked before any work."""
    if value is None:
        return None
    from gictools.errors import GictoolsError
    from gictools.model.kernel import parse_version

    try:
        parse_version(value)
    except GictoolsError as e:
        raise typer.BadParameter(str(e)) from None
    return value


def _kernels_checked(values: list[str] | None) -> list[str] | None:
    for v in values or ():
        _kernel_checked(v)
    return values


def _presets() -> tuple:
    """The bundled latency presets: the TOML files' names (no import of the latency model)."""
    d = Path(__file__).parent.parent / "latency" / "presets"
    return tuple(sorted(p.stem for p in d.glob("*.toml")))


KERNELS = _kernels()
CACHE_POLICIES = _policy_names()
PRESETS = _presets()
# Literal types are typer's choices: listed in --help, completed, case-insensitive below.
# (a repeatable option needs an Enum: typer takes list[Enum], not list[Literal]; its members
# are str, so they pass wherever a policy name does)
CacheName = StrEnum("CacheName", {n: n for n in (*CACHE_POLICIES, ALL)})  # type: ignore[misc]
PresetChoice = StrEnum("PresetChoice", {n: n for n in PRESETS})  # type: ignore[misc]
SweepPresetChoice = PresetChoice  # fixed-v0 (no contention) is one of the bundled presets
RoutingName = Literal[ROUTINGS]  # type: ignore[valid-type]
PresetName = Literal[PRESETS]  # type: ignore[valid-type]

CacheOpt = Annotated[
    list[CacheName] | None,
    typer.Option(
        "--cache",
        "-c",
        case_sensitive=False,
        help="cache policy (repeat for several; all: every one) [default: the trace kernel's own]",
        show_default=False,
    ),
]


def cache_names(chosen: list | None) -> list[str] | None:
    """--cache values as policy names, `all` expanded in registry order, repeats dropped."""
    if not chosen:
        return None
    names: list[str] = []
    for c in map(str, chosen):
        for n in CACHE_POLICIES if c == ALL else (c,):
            if n not in names:
                names.append(n)
    return names


def _kernel_option(*names: str, callback, repeat: str = ""):
    """--kernel, one version (KernelOpt) or several (KernelsOpt): one help text."""
    return typer.Option(
        *names,
        callback=callback,
        autocompletion=lambda: list(KERNELS),
        help=f"KVM version to model, X.Y or X.Y.Z ({', '.join(KERNELS)}, or a stable point "
        f"release){repeat} [default: the trace's, else the newest]",
        show_default=False,
    )


KernelOpt = Annotated[str | None, _kernel_option(callback=_kernel_checked)]
KernelsOpt = Annotated[
    list[str] | None,
    _kernel_option("--kernel", callback=_kernels_checked, repeat="; repeat for several"),
]
PresetOpt = Annotated[
    PresetName | None,
    typer.Option(case_sensitive=False, help="latency preset (bundled)"),
]
PresetsOpt = Annotated[
    list[PresetChoice] | None,
    typer.Option(
        "--preset", case_sensitive=False, help="latency preset (bundled; repeat for several)"
    ),
]
SweepPresetsOpt = Annotated[
    list[SweepPresetChoice] | None,
    typer.Option(
        "--preset",
        case_sensitive=False,
        help="latency preset (bundled; fixed-v0: no contention, fixed cost per outcome) (repeat)",
    ),
]


ReplayPresetOpt = Annotated[
    PresetName | None,
    typer.Option(
        case_sensitive=False,
        help="latency preset (bundled; fixed-v0: no contention, a fixed cost per cache "
        "outcome) [default: fixed-v0]",
        show_default=False,
    ),
]
PresetFileOpt = Annotated[Path | None, typer.Option(help="latency preset file (TOML)")]
PresetFilesOpt = Annotated[
    list[Path] | None,
    typer.Option("--preset-file", help="latency preset file (TOML; repeat for several)"),
]
SeedOpt = Annotated[
    int | None,
    typer.Option(help="a stochastic interleaving with this seed [default: lock-step]"),
]
HostCpusOpt = Annotated[
    int | None,
    typer.Option(help="host CPUs for the contention model (default: the preset's)"),
]
PlotOpt = Annotated[
    Path | None,
    typer.Option(
        help="write PNG plots into this directory (needs matplotlib: pip install 'gictools[plot]')"
    ),
]
RoutingOpt = Annotated[
    RoutingName,
    typer.Option(
        case_sensitive=False,
        help="as-measured: every collection on vCPU 0 (the selftest before Oct 2025); fixed",
        show_default=True,
    ),
]
# vgic_lpi_stress's flags, shared by `gen lpi-stress` and `predict lpi-stress`
VcpusOpt = Annotated[int, typer.Option("--vcpus", "-v", min=1, help="vCPUs", show_default=True)]
DevicesOpt = Annotated[
    int,
    typer.Option("--devices", "-d", min=1, help="devices (one injector each)", show_default=True),
]
EventsOpt = Annotated[
    int, typer.Option("--events", "-e", min=1, help="events per device", show_default=True)
]
IterationsOpt = Annotated[
    int, typer.Option("--iterations", "-i", min=1, help="iterations", show_default=True)
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="print the result as JSON (docs/cli-json.md)")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")]
HistOpt = Annotated[
    bool,
    typer.Option(
        "--hist",
        help="also a text latency histogram per policy (power-of-two buckets, as "
        "bpftrace's hist())",
    ),
]
