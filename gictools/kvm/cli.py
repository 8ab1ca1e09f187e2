"""`gictools kvm-check TRACE|IMAGE...`: the inputs on this host's /dev/kvm and on the model,
every difference printed, one line each (docs/kvm-check.md). register(app) is the hookup."""

from __future__ import annotations

import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

ARM64 = ("aarch64", "arm64")
RUN_TIMEOUT = 3600.0  # s: a run of kvmcheck (a 2M-op script takes seconds on hardware)


def kvm_check(
    inputs: Annotated[
        list[Path], typer.Argument(help="traces (.msgpack) or images", show_default=False)
    ],
    kernel: Annotated[
        str | None,
        typer.Option(help="model this kernel (default: the running one, from /proc/version)"),
    ] = None,
    cc: Annotated[str, typer.Option(help="C compiler that builds kvmcheck.c on this host")] = "cc",
    script: Annotated[
        Path | None, typer.Option(help="also write the op script here (to rerun or bisect)")
    ] = None,
) -> None:
    """Run traces and images on this arm64 host's KVM and on the model; print every difference.

    Exit 0: the kernel and the model agree on every answer; 1: differences (one line each);
    2: bad input, or not an arm64 host with /dev/kvm.
    """
    from gictools.errors import GictoolsError
    from gictools.kvm import compare, convert, host
    from gictools.kvm import model as M
    from gictools.kvm import ops as O

    def fail(msg: str) -> None:
        typer.echo(f"error: {msg}", err=True)
        raise typer.Exit(2)

    if platform.machine() not in ARM64:
        fail(f"kvm-check needs an arm64 KVM host (this is {platform.machine()})")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        fail("kvm-check needs /dev/kvm (missing or not accessible)")
    try:
        for p in inputs:
            if not p.is_file():
                raise GictoolsError(f"{p}: not a file")
        notes: list[str] = []
        cases = convert.cases_from_inputs([str(p) for p in inputs], notes)
        for note in notes:
            typer.echo(f"note: {note}", err=True)
        kinds = {c.case_id: str(p) for c, p in zip(cases, inputs)}
        cases = [c._replace(kind=kinds[c.case_id]) for c in cases]
        text = O.script(cases)
        if script is not None:
            script.write_text(text)
        uname = platform.release()
        version = kernel or host.upstream_version(Path("/proc/version").read_text(), uname)
        with tempfile.TemporaryDirectory(prefix="gictools-kvmcheck-") as d:
            binary = host.build(Path(d) / "kvmcheck", cc=cc)
            sp = Path(d) / "script.txt"
            sp.write_text(text)
            answers = O.split_answers(cases, host.run_binary(binary, sp, RUN_TIMEOUT))
        model = M.run_cases(cases, version)
    except GictoolsError as e:
        fail(str(e))
        return
    diffs = compare.diff_all(cases, answers, model)
    for line in diffs:
        typer.echo(line)
    n = sum(len(a) for a in answers)
    print(
        f"kvm-check: {len(cases)} inputs, {n} answers on {uname} (modelled as {version}): "
        f"{len(diffs)} differences",
        file=sys.stderr,
    )
    raise typer.Exit(1 if diffs else 0)


def register(app: typer.Typer) -> None:
    app.command("kvm-check")(kvm_check)
