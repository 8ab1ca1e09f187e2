"""Verbs on grids of runs: sweep (a hive-partitioned Parquet dataset), summarize."""

from pathlib import Path
from typing import Annotated

import typer

from gictools.cli import kit
from gictools.cli.options import (
    CacheOpt,
    HostCpusOpt,
    JsonOpt,
    KernelsOpt,
    PlotOpt,
    PresetFilesOpt,
    QuietOpt,
    SweepPresetsOpt,
    cache_names,
)


def register(app: typer.Typer) -> None:
    app.command()(sweep)
    app.command()(summarize)


def sweep(
    out: Annotated[Path, typer.Option("-o", "--out", help="dataset directory (created)")],
    trace: Annotated[
        list[str] | None, typer.Option("--trace", "-t", help="trace file or glob (repeat)")
    ] = None,
    cache: CacheOpt = None,
    kernel: KernelsOpt = None,
    preset: SweepPresetsOpt = None,
    preset_file: PresetFilesOpt = None,
    grid: Annotated[
        Path | None, typer.Option(help="TOML grid file: \\[replay] and/or \\[predict] tables")
    ] = None,
    host_cpus: HostCpusOpt = None,
    jobs: Annotated[
        int | None,
        typer.Option("-j", "--jobs", min=1, help="local worker processes (default: CPUs)"),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            envvar="DASK_SCHEDULER_ADDRESS",
            help="run the cells on this Dask scheduler (tcp://HOST:PORT) instead",
        ),
    ] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
):
    """Replay (or predict) every cell of a grid into one Parquet dataset. The dataset is
    hive-partitioned (docs/sweep.md); finished cells are skipped when run again."""
    from gictools.sweep import cli_support as S

    with kit.errors():
        cells = S.plan(trace, cache_names(cache), kernel, preset, preset_file, grid, host_cpus)
        code, text = S.run(cells, out, jobs, scheduler, json_out, quiet)
    kit.echo(text[0])
    for line in text[1:]:
        kit.echo(line, err=True)
    raise typer.Exit(code)


def summarize(
    dataset: Annotated[Path, typer.Argument(help="a sweep's dataset directory")],
    plot: PlotOpt = None,
    json_out: JsonOpt = False,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="exit 0 when damaged files were skipped")
    ] = False,
):
    """Per policy x kernel x preset: MSIs, hit rate, evictions, p50/p99 latency, LPIs/s.
    A damaged file in the dataset is skipped with a warning, and the exit is 1 unless
    --skip-bad."""
    from gictools.sweep.summarize import format_summary
    from gictools.sweep.summarize import plot as _plot
    from gictools.sweep.summarize import summarize as _summarize

    if not dataset.is_dir():
        kit.fail(f"{dataset}: " + ("not a directory" if dataset.exists() else "No such directory"))
    if plot:
        kit.need_matplotlib()
    with kit.errors():
        s = _summarize(dataset)
        skipped: list[str] = []
        files = _plot(s, plot, skipped) if plot else []
    for line in skipped if plot else ():
        kit.echo(f"note: {line}", err=True)
    doc = kit.json_doc("summarize", **kit.integer_latencies(s))
    for bad in s["skipped"]:
        kit.echo(f"warning: {bad['file']}: {bad['reason']}; skipped", err=True)
    kit.print_result(json_out, doc, lambda: format_summary(s), files)
    if s["skipped"] and not skip_bad:
        raise typer.Exit(kit.EXIT_CHECK_FAILED)
