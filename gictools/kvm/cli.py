"""`gictools kvm-check TRACE|IMAGE...`: the inputs on this host's /dev/kvm and on the model,
every difference printed, one line each (docs/kvm-check.md). register(app) is the hookup."""

from __future__ import annotations

import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer

ARM64 = ("aarch64", "arm64")
RUN_TIMEOUT = 3600.0  # s: a run of kvmcheck (a 2M-op script takes seconds on hardware)


def kvm_check(
    inputs: Annotated[
        Optional[list[Path]],  # noqa: UP045  # typer 0.29 takes `X | None` arguments as required
        typer.Argument(help="traces (.msgpack) or images", show_default=False),
    ] = None,
    kernel: Annotated[
        str | None,
        typer.Option(help="model this kernel (default: the running one, from /proc/version)"),
    ] = None,
    cc: Annotated[str, typer.Option(help="C compiler that builds kvmcheck.c on this host")] = "cc",
    script: Annotated[
        Path | None, typer.Option(help="also write the op script here (to rerun or bisect)")
    ] = None,
    corpus_file: Annotated[
        Path | None,
        typer.Option(
            "--corpus",
            help="also run these generated cases (fixtures/kvm-answers/cases.msgpack.gz)",
        ),
    ] = None,
) -> None:
    """Run traces and images on this arm64 host's KVM and on the model; print every difference.

    Exit 0: the kernel and the model agree on every answer; 1: differences (one line each);
    2: bad input, or not an arm64 host with /dev/kvm.
    """
    from gictools.cli.kit import fail  # one line, exit 2, as every verb
    from gictools.errors import GictoolsError
    from gictools.kvm import compare, convert, corpus, host
    from gictools.kvm import model as M
    from gictools.kvm import ops as O

    if platform.machine() not in ARM64:
        fail(f"kvm-check needs an arm64 KVM host (this is {platform.machine()})")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        fail("kvm-check needs /dev/kvm (missing or not accessible)")
    inputs = inputs or []
    if not inputs and corpus_file is None:
        fail("give traces or images, or --corpus CASES")
    try:
        for p in inputs:
            if not p.is_file():
                raise GictoolsError(f"{p}: not a file")
        notes: list[str] = []
        cases = convert.cases_from_inputs([str(p) for p in inputs], notes)
        for note in notes:
            typer.echo(f"note: {note}", err=True)
        cases = [c._replace(kind=str(p)) for c, p in zip(cases, inputs)]
        if corpus_file is not None:
            base = len(cases)  # case ids stay unique: the corpus' follow the inputs'
            cases += [c._replace(case_id=base + c.case_id) for c in corpus.load_cases(corpus_file)]
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
        f"kvm-check: {len(cases)} cases, {n} answers on {uname} (modelled as {version}): "
        f"{len(diffs)} differences",
        file=sys.stderr,
    )
    raise typer.Exit(1 if diffs else 0)


def register(app: typer.Typer) -> None:
    app.command("kvm-check")(kvm_check)
