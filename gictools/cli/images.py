"""Verbs on guest-memory images of the ITS tables (KVM ITS ABI rev 0): save, restore,
roundtrip, inspect. The image format: docs/image-format.md."""

import os
from pathlib import Path
from typing import Annotated

import typer

from gictools.cli import files, kit
from gictools.cli.options import JsonOpt, KernelOpt, QuietOpt
from gictools.cli.progress import StagedProgress, progress


def register(app: typer.Typer) -> None:
    for verb in (save, restore, roundtrip, inspect):
        app.command()(verb)


NOT_AN_IMAGE = {
    "trace": "a trace, not an image (gictools save TRACE -o IMAGE writes one)",
    "parquet": "a Parquet file (replay output), not an image",
    "compressed": "a compressed file (gzip/zstd), not an image (images are not compressed)",
}
ImageArg = Annotated[Path, typer.Argument(help="image file (docs/image-format.md)")]


def save(
    trace: Annotated[Path, typer.Argument(help="trace file (- for stdin)")],
    out: Annotated[Path, typer.Option("-o", "--out", help="image file to write (- for stdout)")],
    at_saves: Annotated[
        bool, typer.Option("--at-saves", help="also write OUT-<k> at each save_tables record")
    ] = False,
    kernel: KernelOpt = None,
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
            kernel=kernel,
        )
    kit.print_report("save", out, lines, json_out, err=to_stdout)


def restore(
    image: ImageArg,
    kernel: KernelOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
):
    """Restore an image into a fresh VM (KVM's order); print its devices, ITEs, collections
    and pending LPIs per vCPU. A failing restore names its first bad entry."""
    from gictools.errors import ImageError
    from gictools.saverestore import restore_image

    files.refuse_kind(image, NOT_AN_IMAGE)
    with kit.errors(), StagedProgress(quiet or json_out) as step:
        try:
            lines = restore_image(
                image, progress=lambda done, total: step("restore", done, total), kernel=kernel
            )
        except ImageError as e:
            if e.step is None:
                raise  # not an image, or a damaged file: the error says where
            _restore_failed(image, e, kernel, json_out)
    kit.print_report("restore", image, lines, json_out, ok=True, problems=[])


def describe_problem(p: dict) -> str:
    """One problem of inspect_problems in words: where (table, entry, address), errno, what."""
    if p.get("table"):
        where = f"{p['table']} entry {p['index']} at {p['address']:#x}"
        where = f"ITS {p['its']} {where}" if p.get("its") is not None else where
    elif p.get("address") is not None:
        where = f"address {p['address']:#x}"
    else:
        where = f"step {p['step']}"
    return f"{where}: {p['what']} ({p['error']})"


def _restore_failed(image: Path, e, kernel: str | None, json_out: bool):
    """The restore failed at a step: find its first bad entry (the restore walk in inspect
    mode meets the same entry first), print it, suggest inspect, exit 2."""
    from gictools.saverestore import inspect_problems

    try:
        _, _, problems = inspect_problems(image, kernel)
    except Exception:  # the failure itself is the answer; the hint is a bonus
        problems = []
    first = f"; first bad entry: {describe_problem(problems[0])}" if problems else ""
    hint = f"; `gictools inspect {image}` lists every problem"
    if json_out:
        doc = kit.json_doc(
            "restore", file=os.fspath(image), ok=False, error=kit.describe(e), problems=problems
        )
        kit.print_json(doc)
    kit.fail(f"{kit.describe(e)}{first}{hint}")


def roundtrip(
    source: Annotated[Path, typer.Argument(help="trace or image file")],
    kernel: KernelOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
):
    """save -> restore into a fresh VM -> save: report byte and model-state differences."""
    from gictools.saverestore import roundtrip as _roundtrip

    with kit.errors(), progress("roundtrip", None, quiet=quiet or json_out):
        ok, lines = _roundtrip(source, kernel=kernel)
    kit.print_report("roundtrip", source, lines, json_out, ok=ok)
    raise typer.Exit(0 if ok else kit.EXIT_CHECK_FAILED)


def inspect(
    image: ImageArg,
    kernel: KernelOpt = None,
    ignore_checksum: Annotated[
        bool,
        typer.Option(
            "--ignore-checksum",
            help="read an image whose checksum does not match (tables edited by hand)",
        ),
    ] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
):
    """Decode every ITS table entry of an image; flag malformed ones with their address.
    Exit 1 when restore would fail; --json lists the problems as data."""
    from gictools.saverestore import inspect_problems

    files.refuse_kind(image, NOT_AN_IMAGE)
    with kit.errors(), progress("inspect", None, quiet=quiet or json_out):
        ok, lines, problems = inspect_problems(image, kernel, verify_checksum=not ignore_checksum)
    kit.print_report("inspect", image, lines, json_out, ok=ok, problems=problems)
    raise typer.Exit(0 if ok else kit.EXIT_CHECK_FAILED)
