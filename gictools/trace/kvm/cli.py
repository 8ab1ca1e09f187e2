"""`gictools record kvm` and `gictools import kvm`: the verbs of the KVM recorder.

register(app) adds them to the root app's `record` and `import` groups (made on first use). Only
typer and gictools.cli at module level, so `gictools --help` stays fast.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from gictools.cli import group

SCRIPT = Path(__file__).with_name("record.sh")


def record_kvm(
    script: Annotated[
        bool, typer.Option("--script", help="print the recorder script to stdout")
    ] = False,
    install: Annotated[
        Path | None,
        typer.Option("--install", help="write the recorder script to this file, executable"),
    ] = None,
):
    """Record one VM's ITS activity on an arm64 KVM host (docs/record-kvm.md).

    The host needs no Python: the recorder is a POSIX shell script (busybox is enough) using the kernel's own tracing (tracefs kprobes and the kvm:kvm_mmio tracepoint), run as root. 1. Get it: `gictools record kvm --install record.sh` (or `--script > record.sh`) and copy it to the host. 2. Record from VM creation on: `./record.sh -o vm.log -- qemu-system-aarch64 ...`, or attach to a running VMM: `./record.sh -o vm.log [-t SEC] -p PID` (the VM's past is lost). 3. Anywhere: `gictools import kvm vm.log -o vm.msgpack --check-cache`, then `gictools replay vm.msgpack`.

    Lost events (ring-buffer overruns, kprobe misses, probe hits missing from the log) are written into the log and make the script exit 3; the importer refuses such a log unless --allow-lost.
    """
    from gictools.cli import kit

    text = SCRIPT.read_text()
    if script:
        kit.echo(text.rstrip("\n"))
        return
    if install is not None:
        with kit.errors():
            tmp = install.with_name(f".{install.name}.tmp{os.getpid()}")
            tmp.write_text(text)
            tmp.chmod(0o755)
            os.replace(tmp, install)
        kit.echo(f"wrote {install}: run it as root on the arm64 KVM host (see -h)")
        return
    kit.echo(f"recorder script: {SCRIPT}\n(--script prints it, --install FILE writes it)")


def import_kvm(
    log: Annotated[Path, typer.Argument(help="the log `record.sh` wrote")],
    out: Annotated[Path, typer.Option("-o", "--out", help="trace file to write")],
    expect: Annotated[
        str,
        typer.Option(help="EXPECT records for MSI results: all, errors (ret != 1) or none"),
    ] = "all",
    allow_lost: Annotated[
        bool, typer.Option("--allow-lost", help="import even if the recorder lost events")
    ] = False,
    vm: Annotated[
        int | None, typer.Option("--vm", help="which VM of the log (k-th KVM_CREATE_VM)")
    ] = None,
    vcpus: Annotated[
        int | None, typer.Option(help="vCPUs, for a log attached mid-life (no creation)")
    ] = None,
    its_base: Annotated[
        str | None, typer.Option(help="ITS base address, for a log attached mid-life")
    ] = None,
    redist_base: Annotated[
        str | None, typer.Option(help="redistributor base, for a log attached mid-life")
    ] = None,
    check_cache: Annotated[
        bool,
        typer.Option(
            "--check-cache",
            help="replay with the recorded kernel's cache policy and compare its hits, misses "
            "and fills with the kernel's; exit 1 on a difference",
        ),
    ] = False,
):
    """Convert a `gictools record kvm` log into a trace (docs/record-kvm.md).

    The trace holds the VM as its creation showed it, the guest's and the VMM's ITS and redistributor register writes, the guest memory KVM read before each operation (command-queue entries, LPI configuration bytes, pending bits, tables), device controls and MSIs, with KVM's results as EXPECT records: `gictools replay` then checks the model against the kernel that was recorded. The log comes from `record.sh` (see `gictools record kvm --help`); a .gz log is read as is.
    """
    from gictools.cli import files as cli_files
    from gictools.cli import kit
    from gictools.trace.kvm.importer import EXPECT_MODES
    from gictools.trace.kvm.importer import import_kvm as _import

    if expect not in EXPECT_MODES:
        kit.fail(f"--expect {expect!r}: one of {', '.join(EXPECT_MODES)}")
    bases = {}
    for name, v in (("--its-base", its_base), ("--redist-base", redist_base)):
        if v is not None:
            try:
                bases[name] = int(v, 0)
            except ValueError:
                kit.fail(f"{name} {v!r}: not a number")
    if vcpus is not None and not 1 <= vcpus <= 4096:
        kit.fail(f"--vcpus {vcpus}: 1..4096")
    cli_files.check_outputs([out], inputs=[log])
    with kit.errors():
        s = _import(
            log,
            out,
            expect=expect,
            allow_lost=allow_lost,
            vm_index=vm,
            vcpus=vcpus,
            its_base=bases.get("--its-base"),
            redist_base=bases.get("--redist-base"),
        )
    kit.echo("\n".join(s.summary_lines(out)))
    if check_cache:
        from gictools.trace.kvm.compare import model_cache_counts

        with kit.errors():
            line, differs = s.cache_verdict(model_cache_counts(out))
        kit.echo(line)
        if differs:
            raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    group(app, "record", "Record workloads on real hosts.").command("kvm")(record_kvm)
    group(app, "import", "Import traces recorded by other tools.").command("kvm")(import_kvm)
