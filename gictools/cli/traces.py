"""Verbs that make and read traces: gen, import, info, dump."""

import os
from pathlib import Path
from typing import Annotated

import typer

from gictools.cli import files, group, kit
from gictools.cli.hosts import SELFTEST_DEFAULT, SelftestOpt
from gictools.cli.options import (
    DevicesOpt,
    EventsOpt,
    IterationsOpt,
    JsonOpt,
    QuietOpt,
    RoutingOpt,
    VcpusOpt,
)
from gictools.cli.progress import progress, track


def register(app: typer.Typer) -> None:
    app.command()(info)
    app.command()(dump)
    group(app, "gen", "Generate workload traces.").command("lpi-stress")(gen_lpi_stress)
    imp = group(app, "import", "Import traces recorded by other tools.")
    imp.command("qemu")(import_qemu)


def info(
    traces: Annotated[
        list[Path], typer.Argument(help="trace files or globs (- for stdin)", show_default=False)
    ],
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
):
    """Header, counts by record kind, span of IDs and duration of each trace."""
    from gictools.errors import GictoolsError
    from gictools.report import TraceInfo, info_text
    from gictools.trace.reader import TraceReader

    docs, failed = [], False
    for i, path in enumerate(files.expand_inputs(traces)):
        try:
            with TraceReader(files.input_source(path)) as rd:
                inf = TraceInfo(rd.header)
                for rec in track(rd, "info", quiet=quiet or json_out):
                    inf.add(rec)
        except BrokenPipeError:
            kit.pipe_closed()
        except (GictoolsError, OSError) as e:
            # keep going over the other traces; the exit status says one failed
            kit.echo(f"gictools: error: {kit.describe(e)}", err=True)
            failed = True
            continue
        name = files.input_name(path)
        if json_out:
            docs.append(inf.as_dict(name, rd.header))
        else:
            if i:
                kit.echo()
            kit.echo(info_text(inf, name, rd.header))
    if json_out:
        kit.print_json(kit.json_doc("info", traces=docs))
    raise typer.Exit(kit.EXIT_BAD_INPUT if failed else 0)


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


def _ids_opt(help: str):
    return Annotated[list[str] | None, typer.Option(help=help)]


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
    device: _ids_opt("only this DeviceID (repeat, or a,b)") = None,  # type: ignore[valid-type]
    event: _ids_opt("only this EventID (repeat, or a,b)") = None,  # type: ignore[valid-type]
    vcpu: _ids_opt("only records naming this vCPU index") = None,  # type: ignore[valid-type]
    its: _ids_opt("only this ITS index") = None,  # type: ignore[valid-type]
    op: _ids_opt(  # type: ignore[valid-type]
        "only these record kinds or command mnemonics (msi, command, reg, mem, "
        "ctrl, expect, ack, MAPTI, INV, ...; repeat, or a,b)"
    ) = None,
    start: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="from this time after the first record (0.1s, 2ms, 1.5us; a bare number is ns)",
        ),
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="up to this time, inclusive")] = None,
    absolute: Annotated[
        bool,
        typer.Option(
            "--abs", help="times (and --from/--to) on the trace's own clock, not the first record"
        ),
    ] = False,
    nsec: Annotated[bool, typer.Option("--nsec", "-t", help="times as sec.nsec")] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="one JSON object per line (docs/cli-json.md)")
    ] = False,
):
    """List a trace's records as trace-cmd report does: index, offset, time, kind, fields.
    Times are sec.usec after the first record (--abs: on the trace's clock)."""
    from gictools.report import Clock, DumpFilter, dump_lines
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
    flt.clock = Clock(absolute, nsec)
    if count == 0:
        raise typer.Exit(0)
    n = 0
    with kit.errors():
        rd = TraceReader(files.input_source(trace))
        for n, line in enumerate(dump_lines(rd, flt, expand=expand, as_json=json_out), 1):
            kit.echo(kit.to_json(line, compact=True) if json_out else line)
            if n == count:
                rd.close()
                break
    if n == 0 and rd.record_index > 0:  # records are numbered from 1 (0: the header)
        kit.echo(f"gictools: note: no record of {rd.record_index:,} matches", err=True)


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
    files.check_outputs([out])
    from gictools.trace.gen_lpi_stress import generate, selftest_routing

    routing = selftest_routing(selftest, routing)[0]

    total = devices * events * iterations
    to_stdout = os.fspath(out) == kit.STDIO
    target = files.output_target(out)
    with kit.errors(), progress("gen", total, quiet=quiet or json_out) as bar:
        try:
            n = generate(
                target,
                vcpus,
                devices,
                events,
                iterations,
                routing,
                progress=bar.advance,
                selftest=selftest,
            )
        except OSError as e:
            if to_stdout:  # the only stream gen writes to: > /dev/full, a closed pipe
                kit.stdout_failed(e)
            raise
    if json_out and not to_stdout:
        kit.print_json(kit.json_doc("gen", out=os.fspath(out), msis=n))
    else:
        kit.echo(
            f"wrote {files.input_name(out) if not to_stdout else 'stdout'}: {n:,} MSIs",
            err=to_stdout,
        )


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
    from gictools.trace.qemu import import_qemu as _import

    dst = dict(dst_cmdq=dst_cmdq, dst_lpiprop=dst_lpiprop, dst_cmdline=dst_cmdline)
    if migrate_to is None and any(dst.values()):
        kit.fail("--dst-cmdq/--dst-lpiprop/--dst-cmdline need --migrate-to")
    files.check_outputs([out], inputs=[log, migrate_to])
    not_a_log = {
        "binary": "not a text log (not a QEMU `log`-backend trace: those are text, plain or .gz)",
        "trace": "a gictools trace already, not a QEMU text log",
        "image": "a gictools image, not a QEMU text log",
        "parquet": "a Parquet file, not a QEMU text log",
    }
    for p in (log, migrate_to):
        if p is not None and not os.fspath(p).endswith(".gz"):
            files.refuse_kind(p, not_a_log)
    with kit.errors(), progress("import", unit="bytes", quiet=as_json) as bar:
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
        kit.print_json(kit.json_doc("import-qemu", **s.as_json()))
    else:
        kit.echo(s.text())
