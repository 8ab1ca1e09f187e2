"""The gictools command line: parse, call the library, print. No model logic here.

Only typer and gictools.clikit are imported at module level: each command imports what
it needs, so `gictools --help` starts fast (docs/cli-json.md: the --json documents).
"""

import contextlib
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from gictools import __version__, clikit
from gictools.cli_hosts import SELFTEST_DEFAULT, HostOpt, SelftestOpt
from gictools.clikit import (
    EXIT_BAD_INPUT,
    EXIT_CHECK_FAILED,
    CacheOpt,
    DevicesOpt,
    EventsOpt,
    HostCpusOpt,
    IterationsOpt,
    JsonOpt,
    KernelOpt,
    KernelsOpt,
    PlotOpt,
    PresetFileOpt,
    PresetFilesOpt,
    PresetOpt,
    PresetsOpt,
    QuietOpt,
    RoutingOpt,
    SeedOpt,
    SweepPresetsOpt,
    VcpusOpt,
)
from gictools.errors import GictoolsError


def _version_callback(value: bool):
    if value:
        clikit.echo(f"gictools {__version__}")
        raise typer.Exit()


app = typer.Typer(
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Model, record, replay and save/restore KVM's virtual GICv3 ITS.",
)


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_version_callback,
            is_eager=True,
            help="print the version and exit",
        ),
    ] = False,
):
    """Model, record, replay and save/restore KVM's virtual GICv3 ITS."""


gen_app = typer.Typer(no_args_is_help=True, help="Generate workload traces.")
app.add_typer(gen_app, name="gen")


@app.command()
def replay(
    traces: Annotated[
        list[Path],
        typer.Argument(help="trace files (msgpack, v1; - for stdin); several: one Parquet file"),
    ],
    cache: CacheOpt = None,
    kernel: KernelOpt = None,
    preset: Annotated[
        str | None,
        typer.Option(
            help="latency preset: v6.8-rc1, series-v2, v6.10 (contention model) or fixed-v0 "
            "(no contention, a fixed cost per cache outcome; the default)"
        ),
    ] = None,
    preset_file: PresetFileOpt = None,
    host: HostOpt = None,
    host_cpus: HostCpusOpt = None,
    seed: SeedOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("-o", "--out", help="write per-event Parquet here (- for stdout)"),
    ] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            help="with -o and several --cache: replay the policies in this many processes "
            "[default: one per policy, up to the usable CPUs]",
            show_default=False,
        ),
    ] = None,
):
    """Replay traces through the model, one pass per cache policy; print a summary.
    A trace `-` is read from stdin (copied to a temporary file first: the SHA-256 in the
    Parquet metadata and parallel policies need it twice); `-o -` writes the Parquet file
    to stdout once the replay succeeded, and the summary then goes to stderr."""
    traces = clikit.expand_inputs(traces)
    policies = [str(c) for c in cache] if cache else None  # CacheName members as plain names
    to_stdout = out is not None and os.fspath(out) == clikit.STDIO
    if to_stdout:
        clikit.check_outputs([out])
    if jobs is None:
        jobs = default_jobs(len(policies or []), out is not None)
    with clikit.spooled_inputs(traces) as (paths, names), clikit.spooled_output(out) as dest:
        code = _replay(
            paths,
            names,
            policies,
            kernel,
            preset,
            preset_file,
            host_cpus,
            dest,
            out,
            json_out,
            quiet,
            jobs,
            to_stdout,
            seed=seed,
            host=host,
        )
    raise typer.Exit(code)


def default_jobs(policies: int, with_out: bool) -> int:
    """--jobs when not given: the usable CPUs (at most one per policy) when several policies
    write one Parquet file, their groups replayed side by side; one otherwise (without -o
    the parallel path has nothing to splice)."""
    if policies < 2 or not with_out:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(policies, cpus))


def _replay(
    traces,
    names,
    cache,
    kernel,
    preset,
    preset_file,
    host_cpus,
    out,
    out_name,
    json_out,
    quiet,
    jobs,
    to_stdout,
    seed=None,
    host=None,
) -> int:
    import time

    from gictools.latency.presets import DEFAULT_PRESET, load_preset
    from gictools.replay import open_replayers, run_replayers
    from gictools.report import summary_table

    if out is not None and not to_stdout:
        clikit.check_outputs([out], inputs=traces)
    t0 = time.perf_counter()
    with clikit.errors():
        p = load_preset(None if preset_file else preset or DEFAULT_PRESET, preset_file, host=host)
        rps = open_replayers(traces, cache or ["default"], kernel, p, host_cpus, names, seed=seed)
        parallel = jobs > 1 and out is not None and len(cache or []) > 1
        tty = not (quiet or json_out or parallel) and sys.stderr.isatty()
        total = _count_events(rps) if tty else None
        with clikit.progress("replay", total, quiet=not tty) as bar:
            reports = run_replayers(rps, out, events=bar.update, jobs=jobs)
    elapsed = time.perf_counter() - t0
    events_total = sum(rp.seq for rp in rps)
    say = (lambda text: typer.echo(text, err=True)) if to_stdout else typer.echo
    if json_out:
        doc = clikit.json_doc(
            "replay",
            traces=[{"name": rp.trace, "sha256": rp.sha256} for rp in rps],
            latency_preset=p.name,
            latency_seed=seed,
            elapsed_s=round(elapsed, 3),
            events=events_total,
            reports=[rep.as_dict() for rep in reports],
        )
        say(clikit.to_json(doc))
    else:
        for rp in rps:
            mine = [rep for rep in reports if rep.trace == rp.trace]
            if len(rps) > 1:
                say(f"trace {rp.trace} (sha256 {rp.sha256[:16]}...)")
            say(summary_table(mine))
            for rep in mine:
                if rep.unchecked:
                    kinds = ", ".join(f"{k} x{v}" for k, v in sorted(rep.unchecked.items()))
                    say(f"[{rep.policy}] unchecked expectations (unknown kinds): {kinds}")
        say(
            f"latency preset: {p.name}"
            + (
                " (no contention, fixed cost per cache outcome; see --preset)"
                if p.contention_free
                else ""
            )
            + (", lock-step" if seed is None else f", stochastic, seed {seed}")
        )
        rate = events_total / elapsed if elapsed > 0 else 0.0
        say(f"replayed {events_total:,} events in {elapsed:.2f} s ({rate:,.0f} events/s)")
        if out:
            say(f"wrote {out_name if not to_stdout else 'stdout'}")
    failed = False
    for rep in reports:
        tag = f"[{rep.policy}]" if len(rps) == 1 else f"[{rep.trace} {rep.policy}]"
        for rec, msg in rep.failures:
            typer.echo(f"FAILED {tag} record {rec}: {msg}", err=True)
        if rep.failure_count > len(rep.failures):
            typer.echo(f"FAILED {tag} ... {rep.failure_count - len(rep.failures)} more", err=True)
        failed |= rep.failure_count > 0
    return EXIT_CHECK_FAILED if failed else 0


def _count_events(rps) -> int:
    """Events in the traces (MSIs one by one), for the progress bar: the headers' counts,
    or one quick pass over a trace written without them."""
    from gictools.trace import format as F
    from gictools.trace.reader import TraceReader

    n = 0
    for rp in rps:
        if rp.reader.events_total is not None:
            n += rp.reader.events_total
            continue
        with TraceReader(rp.path) as rd:
            for rec in rd:
                n += rec[1] if rec[0] == F.MSI_BLOCK else 1
    return n


@app.command()
def info(
    traces: Annotated[
        list[Path], typer.Argument(help="trace files or globs (- for stdin)", show_default=False)
    ],
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
):
    """Header, counts by record kind, span of IDs and duration of each trace."""
    from gictools.report import TraceInfo, info_text
    from gictools.trace.reader import TraceReader

    docs, failed = [], False
    for i, path in enumerate(clikit.expand_inputs(traces)):
        try:
            with TraceReader(clikit.input_source(path)) as rd:
                inf = TraceInfo()
                for rec in clikit.track(rd, "info", quiet=quiet or json_out):
                    inf.add(rec)
        except BrokenPipeError:
            clikit.pipe_closed()
        except (GictoolsError, OSError) as e:
            # keep going over the other traces; the exit status says one failed
            clikit.echo(f"gictools: error: {e}", err=True)
            failed = True
            continue
        name = clikit.input_name(path)
        if json_out:
            docs.append(inf.as_dict(name, rd.header))
        else:
            if i:
                clikit.echo()
            clikit.echo(info_text(inf, name, rd.header))
    if json_out:
        clikit.print_json(clikit.json_doc("info", traces=docs))
    raise typer.Exit(EXIT_BAD_INPUT if failed else 0)


def _ints(values: list[str] | None, what: str) -> set | None:
    """--device 0x10 --device 3: the set of ints (hex or decimal), None if not given."""
    if not values:
        return None
    out = set()
    for v in values:
        for part in v.split(","):
            try:
                out.add(int(part, 0))
            except ValueError:
                raise typer.BadParameter(f"{part!r} is not an integer", param_hint=what) from None
    return out


def _time_ns(v: str | None, what: str) -> int | None:
    """A time as ns: 1500, 1.5us, 2ms, 0.1s."""
    if v is None:
        return None
    from gictools.report import parse_time_ns

    try:
        return parse_time_ns(v)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint=what) from None


@app.command()
def dump(
    trace: Annotated[Path, typer.Argument(help="trace file (- for stdin)")],
    count: Annotated[
        int | None,
        typer.Option(
            "-n", "--count", "--limit", min=0, help="print N records (with --expand, N MSIs)"
        ),
    ] = None,
    expand: Annotated[
        bool, typer.Option("--expand", "-x", help="MSI blocks as one line per MSI")
    ] = False,
    device: Annotated[
        list[str] | None, typer.Option("--device", help="only this DeviceID (repeat, or a,b)")
    ] = None,
    event: Annotated[
        list[str] | None, typer.Option("--event", help="only this EventID (repeat, or a,b)")
    ] = None,
    vcpu: Annotated[
        list[str] | None, typer.Option("--vcpu", help="only records naming this vCPU index")
    ] = None,
    its: Annotated[list[str] | None, typer.Option("--its", help="only this ITS index")] = None,
    op: Annotated[
        list[str] | None,
        typer.Option(
            "--op",
            help="only these record kinds or command mnemonics (msi, command, reg, mem, "
            "ctrl, expect, ack, MAPTI, INV, ...; repeat, or a,b)",
        ),
    ] = None,
    start: Annotated[
        str | None, typer.Option("--from", help="from this time (ns, or 1.5us, 2ms, 0.1s)")
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="up to this time, inclusive")] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="one JSON object per line (docs/cli-json.md)")
    ] = False,
):
    """List a trace's records as trace-cmd report does: index, offset, kind, fields."""
    from gictools.report import DumpFilter, dump_lines
    from gictools.trace.reader import TraceReader

    flt = DumpFilter(
        devices=_ints(device, "--device"),
        events=_ints(event, "--event"),
        vcpus=_ints(vcpu, "--vcpu"),
        itses=_ints(its, "--its"),
        ops=None if not op else {x for v in op for x in v.split(",") if x},
        t_from=_time_ns(start, "--from"),
        t_to=_time_ns(end, "--to"),
    )
    try:
        flt.check()
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--op") from None
    if count == 0:
        raise typer.Exit(0)
    with clikit.errors():
        rd = TraceReader(clikit.input_source(trace))
        for n, line in enumerate(dump_lines(rd, flt, expand=expand, as_json=json_out), 1):
            clikit.echo(clikit.to_json(line, compact=True) if json_out else line)
            if n == count:
                rd.close()
                break


@gen_app.command("lpi-stress")
def gen_lpi_stress(
    vcpus: VcpusOpt = 1,
    devices: DevicesOpt = 1,
    events: EventsOpt = 16,
    iterations: IterationsOpt = 1000,
    routing: RoutingOpt = None,
    selftest: SelftestOpt = SELFTEST_DEFAULT,
    out: Annotated[
        Path,
        typer.Option(
            "-o",
            "--out",
            help="output trace (.gz / .zst compress; - for stdout)",
            show_default=True,
        ),
    ] = Path("lpi-stress.msgpack"),
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
):
    """The kernel selftest vgic_lpi_stress's workload as a trace (same flags and defaults)."""
    clikit.check_outputs([out])
    from gictools.trace.gen_lpi_stress import generate, selftest_routing

    routing = selftest_routing(selftest, routing)[0]
    total = devices * events * iterations
    with clikit.errors(), clikit.progress("gen", total, quiet=quiet or json_out) as bar:
        n = generate(
            clikit.output_target(out),
            vcpus,
            devices,
            events,
            iterations,
            routing,
            progress=bar.advance,
            selftest=selftest,
        )
    to_stdout = os.fspath(out) == clikit.STDIO
    if json_out and not to_stdout:
        clikit.print_json(clikit.json_doc("gen", out=os.fspath(out), msis=n))
    else:
        clikit.echo(
            f"wrote {clikit.input_name(out) if not to_stdout else 'stdout'}: {n:,} MSIs",
            err=to_stdout,
        )


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
    migrate_to: Annotated[
        Path | None,
        typer.Option(help="the live migration's destination trace: LOG is its source"),
    ] = None,
    dst_cmdq: Annotated[Path | None, typer.Option(help="the destination's --cmdq")] = None,
    dst_lpiprop: Annotated[Path | None, typer.Option(help="the destination's --lpiprop")] = None,
    dst_cmdline: Annotated[Path | None, typer.Option(help="the destination's --cmdline")] = None,
    as_json: JsonOpt = False,
):
    """Convert a QEMU GICv3 ITS trace (or a live migration's two) into a trace v1 file
    (docs/import-qemu.md)."""
    from gictools.trace.import_qemu import import_qemu as _import

    dst = dict(dst_cmdq=dst_cmdq, dst_lpiprop=dst_lpiprop, dst_cmdline=dst_cmdline)
    if migrate_to is None and any(dst.values()):
        clikit.fail("--dst-cmdq/--dst-lpiprop/--dst-cmdline need --migrate-to")
    clikit.check_outputs([out], inputs=[log, migrate_to])
    with clikit.errors(), clikit.progress("import", unit="bytes", quiet=as_json) as bar:
        s = _import(
            log,
            out,
            cmdq=cmdq,
            lpiprop=lpiprop,
            cmdline=cmdline,
            migrate_to=migrate_to,
            progress=lambda done, total: (bar.set_total(total), bar.update(done)),
            **dst,
        )
    if as_json:
        clikit.print_json(clikit.json_doc("import-qemu", **s.as_json()))
    else:
        clikit.echo(s.text())


@app.command()
def save(
    trace: Annotated[Path, typer.Argument(help="trace file (- for stdin)")],
    out: Annotated[Path, typer.Option("-o", "--out", help="image file to write (- for stdout)")],
    at_saves: Annotated[
        bool, typer.Option("--at-saves", help="also write OUT-<k> at each save_tables record")
    ] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
):
    """Replay a trace, then save a guest-memory image (KVM ITS ABI rev 0) of the end state.
    With `-o -` the image goes to stdout once complete, and the report to stderr."""
    clikit.check_outputs([out], inputs=[trace])
    to_stdout = os.fspath(out) == clikit.STDIO
    if to_stdout and at_saves:
        clikit.fail("--at-saves writes OUT-<k> files: give -o a file name, not -")
    from gictools.saverestore import save_trace

    with (
        clikit.errors(),
        clikit.spooled_inputs([trace]) as (paths, names),
        clikit.spooled_output(out) as dest,
        _StagedProgress(quiet or json_out) as step,
    ):
        lines = save_trace(
            paths[0],
            dest,
            at_saves=at_saves,
            name=names[0],
            out_name="stdout" if to_stdout else None,
            progress=step,
        )
    _print_report("save", out, lines, json_out, err=to_stdout)


class _StagedProgress:
    """A progress callback (stage, done, total) drawing one clikit.progress bar per stage:
    "replay" counts events, "write"/"restore" count bytes."""

    UNITS = {"replay": "events"}

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.stack = contextlib.ExitStack()
        self.stage: str | None = None
        self.bar: Any = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stack.close()

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if stage != self.stage:
            self.stack.close()
            self.stage = stage
            self.bar = self.stack.enter_context(
                clikit.progress(stage, total, quiet=self.quiet, unit=self.UNITS.get(stage, "bytes"))
            )
        self.bar.update(done)


@app.command()
def restore(
    image: Annotated[Path, typer.Argument(help="image file")],
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
):
    """Restore an image into a fresh VM (KVM's order); print its devices, ITEs, collections
    and pending LPIs per vCPU."""
    from gictools.saverestore import restore_image

    with clikit.errors(), _StagedProgress(quiet or json_out) as step:
        lines = restore_image(image, progress=lambda done, total: step("restore", done, total))
    _print_report("restore", image, lines, json_out)


def _print_report(kind, path, lines, json_out, err=False, **extra):
    if json_out:
        doc = clikit.json_doc(kind, file=os.fspath(path), **extra, report=lines)
        if err:
            clikit.echo(clikit.to_json(doc), err=True)
        else:
            clikit.print_json(doc)
    else:
        clikit.echo("\n".join(lines), err=err)


def _check(kind, fn, arg, json_out):
    """Run a library check returning (ok, lines); print; exit 0 / 1 / 2."""
    with clikit.errors():
        ok, lines = fn(arg)
    _print_report(kind, arg, lines, json_out, ok=ok)
    raise typer.Exit(0 if ok else EXIT_CHECK_FAILED)


@app.command()
def roundtrip(
    source: Annotated[Path, typer.Argument(help="trace or image file")],
    json_out: JsonOpt = False,
):
    """save -> restore into a fresh VM -> save: report byte and model-state differences."""
    from gictools.saverestore import roundtrip as _roundtrip

    _check("roundtrip", _roundtrip, source, json_out)


@app.command()
def inspect(
    image: Annotated[Path, typer.Argument(help="image file")],
    json_out: JsonOpt = False,
):
    """Decode every ITS table entry of an image; flag malformed ones with their address."""
    from gictools.saverestore import inspect_image

    _check("inspect", inspect_image, image, json_out)


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
    json_out: JsonOpt = False,
):
    """Predicted LPIs/s, hit rate, evictions and where the time went for vgic_lpi_stress."""
    from gictools.analysis.predict import (
        band_envelope,
        format_bands,
        format_prediction,
        predict_bands,
    )
    from gictools.analysis.predict import predict_lpi_stress as _predict
    from gictools.latency.presets import load_preset

    with clikit.errors():
        p = load_preset(preset, preset_file, host=host)
        kw = {"routing": routing, "selftest": selftest, "host_cpus": host_cpus, "jobs": jobs}
        r = _predict(
            vcpus, devices, events, iterations, p, seeds=seeds, seed=seed, lockstep=lockstep, **kw
        )
        if bands:
            r["bands"] = predict_bands(vcpus, devices, events, iterations, p, **kw)
            r["band"] = band_envelope(r, r["bands"])
    if json_out:
        clikit.print_json(clikit.json_doc("predict", **r))
        return
    clikit.echo(format_prediction(r))
    if bands:
        clikit.echo(format_bands(r["bands"], r))


@app.command()
def compare(
    trace: Annotated[Path, typer.Argument(help="trace file")],
    preset: PresetsOpt = None,
    preset_file: PresetFilesOpt = None,
    host: HostOpt = None,
    host_cpus: HostCpusOpt = None,
    seed: SeedOpt = None,
    plot: PlotOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
):
    """Side-by-side latency presets over one trace: LPIs/s, hit rate, evictions, p50/p99/max."""
    from gictools.analysis.compare import as_json, compare_trace, format_table
    from gictools.analysis.compare import plot as _plot
    from gictools.latency.presets import load_preset

    if plot:
        clikit.need_matplotlib()
    with clikit.errors():
        presets = [load_preset(p, host=host) for p in preset or []]
        presets += [load_preset(path=f, host=host) for f in preset_file or []]
        with clikit.progress(f"compare {trace.name}", quiet=quiet) as bar:

            def staged(stage, done, total):
                bar.describe(f"{trace.name}: {stage}")
                bar.set_total(total)
                bar.update(done)

            results = compare_trace(trace, presets, host_cpus, progress=staged, seed=seed)
        files = _plot(results, plot, trace=trace.name) if plot else []
    doc = clikit.json_doc("compare", results=as_json(results))
    clikit.print_result(json_out, doc, lambda: format_table(results), files)


@app.command()
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
    """Replay (or predict) every cell of a grid into one hive-partitioned Parquet dataset
    (docs/sweep.md); finished cells are skipped when run again."""
    from gictools.sweep import cli_support as S

    with clikit.errors():
        cells = S.plan(trace, cache, kernel, preset, preset_file, grid, host_cpus)
        code, text = S.run(cells, out, jobs, scheduler, json_out, quiet)
    clikit.echo(text[0])
    for line in text[1:]:
        clikit.echo(line, err=True)
    raise typer.Exit(code)


@app.command()
def summarize(
    dataset: Annotated[Path, typer.Argument(help="a sweep's dataset directory")],
    plot: PlotOpt = None,
    json_out: JsonOpt = False,
):
    """Per policy x kernel x preset: MSIs, hit rate, evictions, p50/p99 latency, LPIs/s."""
    from gictools.sweep.summarize import format_summary
    from gictools.sweep.summarize import plot as _plot
    from gictools.sweep.summarize import summarize as _summarize

    if plot:
        clikit.need_matplotlib()
    with clikit.errors():
        s = _summarize(dataset)
        files = _plot(s, plot) if plot else []
    doc = clikit.json_doc("summarize", **s)
    clikit.print_result(json_out, doc, lambda: format_summary(s), files)


@app.command()
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
    """Cache capacity analysis: exact LRU miss-ratio curve, usage-v2 at chosen capacities,
    per-ITS footprint; the capacity for 99 % hits and where the 16 x vCPUs rule lands."""
    from gictools.mrc import analyse_accesses, format_report, trace_accesses
    from gictools.mrc import plot as _plot

    if plot:
        clikit.need_matplotlib()
    with clikit.errors():
        if usage_capacity and min(usage_capacity) < 1:
            raise GictoolsError("--usage-capacity must be >= 1")
        with clikit.progress(f"mrc {trace.name}", quiet=quiet) as bar:

            def step(done, total):
                if total != bar.total:
                    bar.set_total(total)
                bar.update(done)

            acc = trace_accesses(trace, step, max_msis)
        r = analyse_accesses(acc, usage_capacity)
        files = _plot(r, plot, trace.name) if plot else []
    doc = clikit.json_doc("mrc", **r)
    clikit.print_result(json_out, doc, lambda: format_report(r, trace.name), files)
