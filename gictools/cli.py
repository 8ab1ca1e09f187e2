"""The gictools command line: parse, call the library, print. No model logic here."""

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from gictools import __version__
from gictools.errors import GictoolsError

app = typer.Typer(
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Model, record, replay and save/restore KVM's virtual GICv3 ITS.",
)
gen_app = typer.Typer(no_args_is_help=True, help="Generate workload traces.")
app.add_typer(gen_app, name="gen")

EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 1, 2

# vgic_lpi_stress's flags, shared by `gen lpi-stress` and `predict lpi-stress`
VcpusOpt = Annotated[int, typer.Option("-v", help="vCPUs")]
DevicesOpt = Annotated[int, typer.Option("-d", help="devices (one injector each)")]
EventsOpt = Annotated[int, typer.Option("-e", help="events per device")]
IterationsOpt = Annotated[int, typer.Option("-i", help="iterations")]


def _fail(e: Exception):
    typer.echo(f"gictools: error: {e}", err=True)
    raise typer.Exit(EXIT_BAD_INPUT) from None


def _progress(total: int, quiet: bool, label: str):
    """A rich progress bar on a terminal; None (quiet) when piped or --quiet."""
    if quiet or not sys.stdout.isatty() or total <= 0:
        return None, None
    from rich.progress import BarColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    prog = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        "[progress.percentage]{task.percentage:>3.0f}%",
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        transient=True,
    )
    task = prog.add_task(label, total=total)
    return prog, lambda done: prog.update(task, completed=done)


@app.command()
def version():
    """Print the version and run a one-line self-check of the model."""
    from gictools import VM
    from gictools.guest import Guest

    vm = VM(1)
    its = vm.add_its()
    g = Guest(vm, its)
    g.enable_lpis()
    ok = (g.mapc(0, 0), g.mapd(0, 4), g.mapti(0, 1, 8192, 0)) == (0, 0, 0)
    ok = ok and vm.signal_msi(its, 0, 1).ret == 1 and vm.pending_lpis(0) == [8192]
    typer.echo(f"gictools {__version__}: self-check {'ok' if ok else 'FAILED'}")
    raise typer.Exit(0 if ok else EXIT_CHECK_FAILED)


@app.command()
def replay(
    traces: Annotated[
        list[Path], typer.Argument(help="trace files (msgpack, v1); several: one Parquet file")
    ],
    cache: Annotated[
        list[str] | None,
        typer.Option(
            "--cache",
            "-c",
            help="cache policy (repeat for several): none, lru-v6.8, usage-v2, "
            "per-its-v6.10; default: the trace kernel's own",
        ),
    ] = None,
    kernel: Annotated[str | None, typer.Option(help="KVM version to model, e.g. 6.8, 7.0")] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            help="latency preset: v6.8-rc1, series-v2, v6.10 (contention model) or fixed-v0 "
            "(a fixed cost per cache outcome; the default)"
        ),
    ] = None,
    preset_file: Annotated[Path | None, typer.Option(help="latency preset file (TOML)")] = None,
    host_cpus: Annotated[
        int | None, typer.Option(help="host CPUs for the contention model")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("-o", "--out", help="write per-event Parquet here")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            help="with -o and several --cache: replay the policies in this many processes",
        ),
    ] = 1,
):
    """Replay traces through the model, one pass per cache policy; print a summary."""
    import os
    import time

    from gictools.replay import FIXED_PRESET, open_replayers, run_replayers
    from gictools.report import summary_table

    if out is not None:
        problem = None
        if out.is_dir():
            problem = "is a directory"
        elif not out.parent.is_dir():
            problem = "no such directory"
        elif out.exists() and any(t.exists() and os.path.samefile(t, out) for t in traces):
            problem = "is one of the input traces"
        if problem:
            typer.echo(f"gictools: error: -o {out}: {problem}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT)
    t0 = time.perf_counter()
    try:
        p = None
        if preset_file or (preset and preset != FIXED_PRESET):
            from gictools.latency.presets import load_preset

            p = load_preset(preset, preset_file)
        rps = open_replayers(traces, cache or ["default"], kernel, p, host_cpus)
        parallel = jobs > 1 and out is not None and len(cache or []) > 1
        tty = not (quiet or json_out or parallel) and sys.stderr.isatty()
        total = _count_events(traces) if tty else 0
        if total:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            prog = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                TextColumn("{task.completed:,}/{task.total:,} events"),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            task = prog.add_task("replay", total=total, rate="")

            def events(n):
                dt = time.perf_counter() - t0
                prog.update(task, completed=n, rate=f"{n / dt:,.0f} events/s" if dt else "")

            with prog:
                reports = run_replayers(rps, out, events=events)
        else:
            reports = run_replayers(rps, out, jobs=jobs)
    except (GictoolsError, OSError) as e:
        _fail(e)
    elapsed = time.perf_counter() - t0
    events_total = sum(rp.seq for rp in rps)
    if json_out:
        typer.echo(
            json.dumps(
                {
                    "traces": [{"name": rp.trace, "sha256": rp.sha256} for rp in rps],
                    "latency_preset": p.name if p else FIXED_PRESET,
                    "elapsed_s": round(elapsed, 3),
                    "events": events_total,
                    "reports": [rep.as_dict() for rep in reports],
                },
                indent=2,
            )
        )
    else:
        for rp in rps:
            mine = [rep for rep in reports if rep.trace == rp.trace]
            if len(rps) > 1:
                typer.echo(f"trace {rp.trace} (sha256 {rp.sha256[:16]}...)")
            typer.echo(summary_table(mine))
            for rep in mine:
                if rep.unchecked:
                    kinds = ", ".join(f"{k} x{v}" for k, v in sorted(rep.unchecked.items()))
                    typer.echo(f"[{rep.policy}] unchecked expectations (unknown kinds): {kinds}")
        typer.echo(
            f"latency preset: {p.name if p else FIXED_PRESET}"
            + ("" if p else " (fixed cost per cache outcome, no contention; see --preset)")
        )
        rate = events_total / elapsed if elapsed > 0 else 0.0
        typer.echo(f"replayed {events_total:,} events in {elapsed:.2f} s ({rate:,.0f} events/s)")
        if out:
            typer.echo(f"wrote {out}")
    failed = False
    for rep in reports:
        tag = f"[{rep.policy}]" if len(rps) == 1 else f"[{rep.trace} {rep.policy}]"
        for rec, msg in rep.failures:
            typer.echo(f"FAILED {tag} record {rec}: {msg}", err=True)
        if rep.failure_count > len(rep.failures):
            typer.echo(f"FAILED {tag} ... {rep.failure_count - len(rep.failures)} more", err=True)
        failed |= rep.failure_count > 0
    raise typer.Exit(EXIT_CHECK_FAILED if failed else 0)


def _count_events(traces) -> int:
    """Events in the traces (MSIs one by one), for the progress bar: one quick pass."""
    from gictools.trace import format as F
    from gictools.trace.reader import TraceReader

    n = 0
    for t in traces:
        for rec in TraceReader(t):
            n += rec[1] if rec[0] == F.MSI_BLOCK else 1
    return n


@app.command()
def info(trace: Annotated[Path, typer.Argument(help="trace file")]):
    """Header, counts by record kind, span of IDs and duration of a trace."""
    from gictools.report import TraceInfo
    from gictools.trace.reader import TraceReader

    try:
        rd = TraceReader(trace)
        inf = TraceInfo()
        for rec in rd:
            inf.add(rec)
    except (GictoolsError, OSError) as e:
        _fail(e)
    typer.echo(inf.text(rd.header))


@app.command()
def dump(
    trace: Annotated[Path, typer.Argument(help="trace file")],
    limit: Annotated[int | None, typer.Option("--limit", "-n", help="stop after N records")] = None,
):
    """List a trace's records, commands disassembled."""
    from gictools.report import describe_record
    from gictools.trace.reader import TraceReader

    try:
        rd = TraceReader(trace)
        for rec in rd:
            if limit is not None and rd.record_index >= limit:
                break
            typer.echo(f"{rd.record_index:>8} @{rd.offset:<10} {describe_record(rec)}")
    except (GictoolsError, OSError) as e:
        _fail(e)
    except BrokenPipeError:
        raise typer.Exit(0) from None


@gen_app.command("lpi-stress")
def gen_lpi_stress(
    vcpus: VcpusOpt = 1,
    devices: DevicesOpt = 1,
    events: EventsOpt = 16,
    iterations: IterationsOpt = 1000,
    routing: Annotated[
        str, typer.Option(help="as-measured (all to vCPU 0, pre-Oct-2025 selftest) or fixed")
    ] = "as-measured",
    out: Annotated[Path, typer.Option("-o", "--out", help="output trace")] = Path(
        "lpi-stress.msgpack"
    ),
):
    """The kernel selftest vgic_lpi_stress's workload as a trace (same flags and defaults)."""
    from gictools.trace.gen_lpi_stress import generate

    try:
        n = generate(out, vcpus, devices, events, iterations, routing)
    except (GictoolsError, OSError) as e:
        _fail(e)
    typer.echo(f"wrote {out}: {n:,} MSIs")


import_app = typer.Typer(no_args_is_help=True, help="Import traces recorded by other tools.")
app.add_typer(import_app, name="import")


@import_app.command("qemu")
def import_qemu(
    log: Annotated[Path, typer.Argument(help="QEMU `log`-backend trace (plain or .gz)")],
    out: Annotated[Path, typer.Option("-o", "--out", help="trace file to write")],
    cmdq: Annotated[
        Path | None, typer.Option(help="raw command queue dump (NAME.cmdq.txt)")
    ] = None,
    lpiprop: Annotated[
        Path | None, typer.Option(help="LPI config table dump (NAME.lpiprop.txt)")
    ] = None,
    cmdline: Annotated[
        Path | None, typer.Option(help="QEMU command line (NAME.cmdline.txt): -m, -smp")
    ] = None,
):
    """Convert a QEMU GICv3 ITS trace into a trace v1 file (docs/import-qemu.md)."""
    from gictools.trace.import_qemu import import_qemu as _import

    try:
        s = _import(log, out, cmdq=cmdq, lpiprop=lpiprop, cmdline=cmdline)
    except (GictoolsError, OSError) as e:
        _fail(e)
    typer.echo(s.text())


@app.command()
def save(
    trace: Annotated[Path, typer.Argument(help="trace file")],
    out: Annotated[Path, typer.Option("-o", "--out", help="image file to write")],
    at_saves: Annotated[
        bool, typer.Option("--at-saves", help="also write OUT-<k> at each save_tables record")
    ] = False,
):
    """Replay a trace, then save a guest-memory image (KVM ITS ABI rev 0) of the end state."""
    from gictools.saverestore import save_trace

    try:
        lines = save_trace(trace, out, at_saves=at_saves)
    except (GictoolsError, OSError) as e:
        _fail(e)
    typer.echo("\n".join(lines))


@app.command()
def restore(image: Annotated[Path, typer.Argument(help="image file")]):
    """Restore an image into a fresh VM (KVM's order); print its devices, ITEs, collections
    and pending LPIs per vCPU."""
    from gictools.saverestore import restore_image

    try:
        lines = restore_image(image)
    except (GictoolsError, OSError) as e:
        _fail(e)
    typer.echo("\n".join(lines))


def _check(fn, arg):
    """Run a library check returning (ok, lines); print; exit 0 / 1 / 2."""
    try:
        ok, lines = fn(arg)
    except (GictoolsError, OSError) as e:
        _fail(e)
    typer.echo("\n".join(lines))
    raise typer.Exit(0 if ok else EXIT_CHECK_FAILED)


@app.command()
def roundtrip(source: Annotated[Path, typer.Argument(help="trace or image file")]):
    """save -> restore into a fresh VM -> save: report byte and model-state differences."""
    from gictools.saverestore import roundtrip as _roundtrip

    _check(_roundtrip, source)


@app.command()
def inspect(image: Annotated[Path, typer.Argument(help="image file")]):
    """Decode every ITS table entry of an image; flag malformed ones with their address."""
    from gictools.saverestore import inspect_image

    _check(inspect_image, image)


predict_app = typer.Typer(
    no_args_is_help=True,
    help="Predict a workload's LPIs/s with a latency preset (closed-loop contention model).",
)
app.add_typer(predict_app, name="predict")


@predict_app.command("lpi-stress")
def predict_lpi_stress(
    vcpus: VcpusOpt = 1,
    devices: DevicesOpt = 1,
    events: EventsOpt = 16,
    iterations: IterationsOpt = 1000,
    preset: Annotated[str | None, typer.Option(help="v6.8-rc1, series-v2, v6.10")] = None,
    preset_file: Annotated[Path | None, typer.Option(help="latency preset file (TOML)")] = None,
    routing: Annotated[
        str, typer.Option(help="as-measured (all to vCPU 0) or fixed")
    ] = "as-measured",
    host_cpus: Annotated[int | None, typer.Option(help="host CPUs (default: the preset's)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the prediction as JSON")] = False,
):
    """Predicted LPIs/s, hit rate, evictions and where the time went for vgic_lpi_stress."""
    from gictools.latency.predict import format_prediction
    from gictools.latency.predict import predict_lpi_stress as _predict
    from gictools.latency.presets import load_preset

    try:
        r = _predict(
            vcpus,
            devices,
            events,
            iterations,
            load_preset(preset, preset_file),
            routing=routing,
            host_cpus=host_cpus,
        )
    except (GictoolsError, OSError) as e:
        _fail(e)
    typer.echo(json.dumps(r, indent=2) if json_out else format_prediction(r))


@app.command()
def compare(
    trace: Annotated[Path, typer.Argument(help="trace file")],
    preset: Annotated[list[str] | None, typer.Option(help="latency preset (repeat)")] = None,
    preset_file: Annotated[list[Path] | None, typer.Option(help="preset file (repeat)")] = None,
    host_cpus: Annotated[
        int | None, typer.Option(help="host CPUs for the contention model")
    ] = None,
    plot: Annotated[Path | None, typer.Option(help="write PNG plots into this directory")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the comparison as JSON")] = False,
):
    """Side-by-side latency presets over one trace: LPIs/s, hit rate, evictions, p50/p99/max."""
    from gictools.latency.compare import as_json, compare_trace, format_table
    from gictools.latency.compare import plot as _plot
    from gictools.latency.presets import load_preset

    try:
        presets = [load_preset(p) for p in preset or []]
        presets += [load_preset(path=f) for f in preset_file or []]
        results = compare_trace(trace, presets, host_cpus)
        files = _plot(results, plot) if plot else []
    except (GictoolsError, OSError) as e:
        _fail(e)
    typer.echo(json.dumps(as_json(results), indent=2) if json_out else format_table(results))
    for f in files:
        typer.echo(f"wrote {f}", err=json_out)


def main():
    app()
