"""gictools replay: traces through the model, one pass per cache policy, a summary per trace."""

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from gictools.cli import files, kit
from gictools.cli.hosts import HostOpt
from gictools.cli.options import (
    CacheOpt,
    HistOpt,
    HostCpusOpt,
    JsonOpt,
    KernelOpt,
    PresetFileOpt,
    QuietOpt,
    ReplayPresetOpt,
    SeedOpt,
    cache_names,
)
from gictools.cli.progress import progress, progress_shown


def register(app: typer.Typer) -> None:
    app.command()(replay)


def replay(
    traces: Annotated[
        list[Path],
        typer.Argument(help="trace files (msgpack, v1; - for stdin); several: one Parquet file"),
    ],
    cache: CacheOpt = None,
    kernel: KernelOpt = None,
    preset: ReplayPresetOpt = None,
    preset_file: PresetFileOpt = None,
    host: HostOpt = None,
    host_cpus: HostCpusOpt = None,
    seed: SeedOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("-o", "--out", help="write per-event Parquet here (- for stdout)"),
    ] = None,
    hist: HistOpt = False,
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
    traces = files.expand_inputs(traces)
    for t in traces:
        files.refuse_kind(t, NOT_A_TRACE)
    policies = cache_names(cache)
    to_stdout = out is not None and os.fspath(out) == kit.STDIO
    if to_stdout:
        files.check_outputs([out])
    if jobs is None:
        jobs = default_jobs(len(policies or []), out is not None)
    req = Request(policies, kernel, preset, preset_file, host, host_cpus, seed, jobs)
    show = Show(json_out, quiet, hist)
    with files.spooled_inputs(traces) as (paths, names), files.spooled_output(out) as dest:
        if dest is not None and not to_stdout:
            files.check_outputs([dest], inputs=paths)
        done = _replay(req, show, paths, names, Output(dest, out, to_stdout))
    raise typer.Exit(done())  # the report once the Parquet is out (a failed copy: no report)


NOT_A_TRACE = {
    "image": "an image, not a trace (gictools restore or inspect read images)",
    "parquet": "a Parquet file (replay output), not a trace",
}


@dataclass(frozen=True)
class Request:
    """What was asked of a replay (the options, parsed)."""

    policies: list[str] | None
    kernel: str | None
    preset: str | None
    preset_file: Path | None
    host: str | None  # the host profile pricing the preset
    host_cpus: int | None
    seed: int | None
    jobs: int


@dataclass(frozen=True)
class Show:
    """How the result is shown."""

    json_out: bool
    quiet: bool
    hist: bool


@dataclass(frozen=True)
class Output:
    """Where the Parquet goes: dest (a path, or a spool for stdout), as the user named it."""

    dest: Path | None
    name: Path | None
    to_stdout: bool


def default_jobs(policies: int, with_out: bool) -> int:
    """--jobs when not given: the usable CPUs (at most one per policy) when several policies
    write one Parquet file, their groups replayed side by side; one otherwise (without -o
    the parallel path has nothing to splice)."""
    if policies < 2 or not with_out:
        return 1
    from gictools.supervise import cpu_count  # the one CPU-count rule

    return max(1, min(policies, cpu_count()))


def _replay(req: Request, show: Show, traces: list[Path], names: list[str], out: Output):
    """Run the replay; returns the function that prints its report and gives the exit code."""
    from gictools.latency.presets import DEFAULT_PRESET, load_preset
    from gictools.replay import open_replayers, run_replayers

    t0 = time.perf_counter()
    with kit.errors():
        name = None if req.preset_file else req.preset or DEFAULT_PRESET
        p = load_preset(name, req.preset_file, host=req.host)
        policies = req.policies or ["default"]
        rps = open_replayers(traces, policies, req.kernel, p, req.host_cpus, names, seed=req.seed)
        shown = progress_shown(show.quiet or show.json_out)
        total = _count_events(rps) if shown else None
        with progress("replay", None, quiet=not shown) as bar:

            def events(n: int) -> None:
                """The runner's progress, on every path (--jobs too): n of the traces'
                events replayed by every policy. Indeterminate until the first call."""
                if bar.total is None and total:
                    bar.set_total(total)
                bar.update(n)

            reports = run_replayers(rps, out.dest, events=events, jobs=req.jobs)
    elapsed = time.perf_counter() - t0
    return lambda: _report(show, out, (rps, reports), (p, req.seed), elapsed)


def _report(show: Show, out: Output, ran, latency: tuple, elapsed: float) -> int:
    """The summary (text or JSON; on stderr when the Parquet went to stdout), FAILED lines;
    the exit code. latency: (the preset, the seed)."""
    rps, reports = ran
    preset, seed = latency
    say = (lambda text: kit.echo(text, err=True)) if out.to_stdout else kit.echo
    if show.json_out:
        say(kit.to_json(_json(rps, reports, latency, elapsed, show.hist)))
    else:
        _print_text(say, rps, reports, show.hist)
        say(
            f"latency preset: {preset.name}"
            + (
                " (no contention, fixed cost per cache outcome; see --preset)"
                if preset.contention_free
                else ""
            )
            + (", lock-step" if seed is None else f", stochastic, seed {seed}")
        )
        events_total = sum(rp.seq for rp in rps)
        rate = events_total / elapsed if elapsed > 0 else 0.0
        say(f"replayed {events_total:,} events in {elapsed:.2f} s ({rate:,.0f} events/s)")
        if out.dest:
            say(f"wrote {out.name if not out.to_stdout else 'stdout'}")
    return kit.EXIT_CHECK_FAILED if _print_failures(rps, reports) else 0


def _json(rps, reports, latency: tuple, elapsed: float, hist: bool) -> dict[str, Any]:
    from gictools.report import hist_json

    docs = [rep.as_dict() for rep in reports]
    if hist:
        for doc, rep in zip(docs, reports):
            doc["latency_hist"] = hist_json(rep.latency)
    return kit.json_doc(
        "replay",
        traces=[{"name": rp.trace, "sha256": rp.sha256} for rp in rps],
        latency_preset=latency[0].name,
        latency_seed=latency[1],
        elapsed_s=round(elapsed, 3),
        events=sum(rp.seq for rp in rps),
        reports=docs,
    )


def _print_text(say, rps, reports, hist: bool) -> None:
    from gictools.report import hist_text, summary_table

    for rp in rps:
        mine = [rep for rep in reports if rep.trace == rp.trace]
        if len(rps) > 1:
            say(f"trace {rp.trace} (sha256 {rp.sha256[:16]}...)")
        say(summary_table(mine))
        for rep in mine:
            if rep.unchecked:
                kinds = ", ".join(f"{k} x{v}" for k, v in sorted(rep.unchecked.items()))
                say(f"[{rep.policy}] unchecked expectations (unknown kinds): {kinds}")
        for rep in mine if hist else ():
            say("\n" + hist_text(f"latency_ns[{rep.policy}]", rep.latency))


def _print_failures(rps, reports) -> bool:
    """FAILED lines on stderr for every failed expectation; whether there was one."""
    failed = False
    for rep in reports:
        tag = f"[{rep.policy}]" if len(rps) == 1 else f"[{rep.trace} {rep.policy}]"
        for rec, msg in rep.failures:
            typer.echo(f"FAILED {tag} record {rec}: {msg}", err=True)
        if rep.failure_count > len(rep.failures):
            typer.echo(f"FAILED {tag} ... {rep.failure_count - len(rep.failures)} more", err=True)
        failed |= rep.failure_count > 0
    return failed


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
