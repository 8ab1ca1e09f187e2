"""Verbs that analyse a workload's latency and cache: predict, compare, mrc."""

from pathlib import Path
from typing import Annotated

import typer

from gictools.cli import group, kit
from gictools.cli.hosts import SELFTEST_DEFAULT, HostOpt, SelftestOpt
from gictools.cli.options import (
    DevicesOpt,
    EventsOpt,
    HistOpt,
    HostCpusOpt,
    IterationsOpt,
    JsonOpt,
    PlotOpt,
    PresetFileOpt,
    PresetFilesOpt,
    PresetOpt,
    PresetsOpt,
    QuietOpt,
    RoutingOpt,
    SeedOpt,
    VcpusOpt,
)
from gictools.cli.progress import progress


def register(app: typer.Typer) -> None:
    predict = group(
        app,
        "predict",
        "Predict a workload's LPIs/s with a latency preset (closed-loop contention model).",
    )
    predict.command("lpi-stress")(predict_lpi_stress)
    app.command()(compare)
    app.command()(mrc)


def predict_lpi_stress(
    vcpus: VcpusOpt = 1,
    devices: DevicesOpt = 1,
    events: EventsOpt = 16,
    iterations: IterationsOpt = 1000,
    preset: PresetOpt = None,
    preset_file: PresetFileOpt = None,
    routing: RoutingOpt = None,
    selftest: SelftestOpt = SELFTEST_DEFAULT,
    host: HostOpt = None,
    host_cpus: HostCpusOpt = None,
    seeds: Annotated[int, typer.Option(help="stochastic runs (seeds 0..N-1): min/median/max")] = 5,
    seed: Annotated[int | None, typer.Option(help="one run with this seed (reproducible)")] = None,
    lockstep: Annotated[
        bool,
        typer.Option(
            "--lockstep", help="the deterministic lock-step run (worst case for the hit rate)"
        ),
    ] = False,
    bands: Annotated[
        bool, typer.Option("--bands", help="also predict across unfitted parameters' ranges")
    ] = False,
    jobs: Annotated[
        int | None, typer.Option("-j", "--jobs", min=1, help="parallel processes")
    ] = None,
    plot: PlotOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
):
    """Predicted LPIs/s, hit rate, evictions and where the time went for vgic_lpi_stress."""
    from gictools import plotting
    from gictools.analysis.predict import (
        band_envelope,
        band_injections,
        format_bands,
        format_prediction,
        predict_bands,
    )
    from gictools.analysis.predict import predict_lpi_stress as _predict
    from gictools.latency.presets import load_preset

    if plot:
        kit.need_matplotlib()
    # injections of every seed, then of every band run's seeds
    with kit.errors(), progress("predict", None, quiet=quiet or json_out) as bar:
        p = load_preset(preset, preset_file, host=host)
        kw = {"routing": routing, "selftest": selftest, "host_cpus": host_cpus, "jobs": jobs}
        band_total = band_injections(p, devices * events * iterations)
        main_total = [0]

        def told(done: int, total: int) -> None:
            if bar.total is None:
                main_total[0] = total
                bar.set_total(total + (band_total if bands else 0))
            bar.update(done)

        r = _predict(
            vcpus,
            devices,
            events,
            iterations,
            p,
            seeds=seeds,
            seed=seed,
            lockstep=lockstep,
            progress=told,
            **kw,
        )
        if bands:
            r["bands"] = predict_bands(
                vcpus,
                devices,
                events,
                iterations,
                p,
                progress=lambda d, t: bar.update(main_total[0] + d),
                **kw,
            )
            r["band"] = band_envelope(r, r["bands"])
    with kit.errors():
        files = plotting.predict_plots(r, plot) if plot else []
    text = format_prediction(r) + ("\n" + format_bands(r["bands"], r) if bands else "")
    doc = kit.json_doc("predict", **kit.integer_latencies(r))
    kit.print_result(json_out, doc, lambda: text, files)


def compare(
    trace: Annotated[Path, typer.Argument(help="trace file")],
    preset: PresetsOpt = None,
    preset_file: PresetFilesOpt = None,
    host: HostOpt = None,
    host_cpus: HostCpusOpt = None,
    seed: SeedOpt = None,
    plot: PlotOpt = None,
    hist: HistOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
):
    """Side-by-side latency presets over one trace: LPIs/s, hit rate, evictions, p50/p99/max."""
    from gictools.analysis.compare import as_json, compare_trace, format_table
    from gictools.analysis.compare import plot as _plot
    from gictools.latency.presets import load_preset
    from gictools.report import hist_json, hist_text

    if plot:
        kit.need_matplotlib()
    with kit.errors():
        presets = [load_preset(p, host=host) for p in preset or []]
        presets += [load_preset(path=f, host=host) for f in preset_file or []]
        with progress("compare", quiet=quiet or json_out) as bar:

            def staged(stage, done, total):
                bar.describe(stage)
                bar.set_total(total)
                bar.update(done)

            results = compare_trace(trace, presets, host_cpus, progress=staged, seed=seed)
        files = _plot(results, plot, trace=trace.name) if plot else []
    doc = kit.json_doc("compare", results=as_json(results))
    if hist:
        for r, d in zip(results, doc["results"]):
            d["latency_hist"] = hist_json(r["_latency"])
    text = format_table(results)
    if hist:
        hists = [
            hist_text(f"latency_ns[{r['preset']}, {r['cache']}]", r["_latency"]) for r in results
        ]
        text = "\n\n".join([text, *hists])
    kit.print_result(json_out, doc, lambda: text, files)


def mrc(
    trace: Annotated[Path, typer.Argument(help="trace file")],
    usage_capacity: Annotated[
        list[int] | None,
        typer.Option(help="capacities to simulate usage-v2 at (repeat; default: a few)"),
    ] = None,
    max_msis: Annotated[
        int,
        typer.Option(
            min=1,
            max=(1 << 32) - 1,
            help="refuse a trace of more MSIs (exit 2): memory is 4 bytes per MSI plus "
            "a few hundred per distinct translation (the curve has a point for each); "
            "the whole stream is analysed, never a sample",
        ),
    ] = 1 << 24,
    plot: PlotOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
):
    """Cache capacity analysis: miss-ratio curve, usage-v2, per-ITS footprint. The exact
    LRU miss-ratio curve, usage-v2 at chosen capacities, per-ITS footprint; the capacity
    for 99 % hits and where the 16 x vCPUs rule lands."""
    from gictools.errors import GictoolsError
    from gictools.mrc import analyse_accesses, format_report, trace_accesses
    from gictools.mrc import plot as _plot

    if plot:
        kit.need_matplotlib()
    with kit.errors():
        if usage_capacity and min(usage_capacity) < 1:
            raise GictoolsError("--usage-capacity must be >= 1")
        with progress("mrc", quiet=quiet or json_out) as bar:

            def step(done, total):
                if total != bar.total:
                    bar.set_total(total)
                bar.update(done)

            acc = trace_accesses(trace, step, max_msis)
        r = analyse_accesses(acc, usage_capacity)
        files = _plot(r, plot, trace.name) if plot else []
    from gictools.mrc import INVALIDATIONS_IGNORED

    doc = kit.json_doc("mrc", **r, note=INVALIDATIONS_IGNORED)
    kit.print_result(json_out, doc, lambda: format_report(r, trace.name), files)
