"""Verbs on guest-memory images of the ITS tables (KVM ITS ABI rev 0): save, restore,
roundtrip, inspect."""

import os
from pathlib import Path
from typing import Annotated

import typer

from gictools.cli import files, kit
from gictools.cli.options import JsonOpt, QuietOpt
from gictools.cli.progress import StagedProgress, progress


def register(app: typer.Typer) -> None:
    for verb in (save, restore, roundtrip, inspect):
        app.command()(verb)


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
    files.check_outputs([out], inputs=[trace])
    to_stdout = os.fspath(out) == kit.STDIO
    if to_stdout and at_saves:
        kit.fail("--at-saves writes OUT-<k> files: give -o a file name, not -")
    from gictools.saverestore import save_trace

    with (
        kit.errors(),
        files.spooled_inputs([trace]) as (paths, names),
        files.spooled_output(out) as dest,
        StagedProgress(quiet or json_out) as step,
    ):
        lines = save_trace(
            paths[0],
            dest,
            at_saves=at_saves,
            name=names[0],
            out_name="stdout" if to_stdout else None,
            progress=step,
        )
    kit.print_report("save", out, lines, json_out, err=to_stdout)


NOT_AN_IMAGE = {
    "trace": "a trace, not an image (gictools save TRACE -o IMAGE writes one)",
    "parquet": "a Parquet file (replay output), not an image",
    "compressed": "a compressed file (gzip/zstd), not an image (images are not compressed)",
}


def restore(
    image: Annotated[Path, typer.Argument(help="image file")],
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
):
    """Restore an image into a fresh VM (KVM's order); print its devices, ITEs, collections
    and pending LPIs per vCPU."""
    from gictools.saverestore import restore_image

    files.refuse_kind(image, NOT_AN_IMAGE)
    with kit.errors(), StagedProgress(quiet or json_out) as step:
        lines = restore_image(image, progress=lambda done, total: step("restore", done, total))
    kit.print_report("restore", image, lines, json_out)


def _check(kind, fn, arg, json_out, quiet=False):
    """Run a library check returning (ok, lines); print; exit 0 / 1 / 2. The library
    reports no progress: an indeterminate bar with the time so far."""
    with kit.errors(), progress(kind, None, quiet=quiet or json_out):
        ok, lines = fn(arg)
    kit.print_report(kind, arg, lines, json_out, ok=ok)
    raise typer.Exit(0 if ok else kit.EXIT_CHECK_FAILED)


def roundtrip(
    source: Annotated[Path, typer.Argument(help="trace or image file")],
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
):
    """save -> restore into a fresh VM -> save: report byte and model-state differences."""
    from gictools.saverestore import roundtrip as _roundtrip

    _check("roundtrip", _roundtrip, source, json_out, quiet)


def inspect(
    image: Annotated[Path, typer.Argument(help="image file")],
    json_out: JsonOpt = False,
):
    """Decode every ITS table entry of an image; flag malformed ones with their address."""
    from gictools.saverestore import inspect_image

    files.refuse_kind(image, NOT_AN_IMAGE)
    _check("inspect", inspect_image, image, json_out)
