"""Run the differential check on both Debian kernels under nested QEMU, in one command.

    python -m gictools.kvm.nested                     # the stored corpus, both kernels: diffs
    python -m gictools.kvm.nested --corpus [-n 4000]  # regenerate the corpus and record answers
    python -m gictools.kvm.nested TRACE|IMAGE...      # kvm-check of these inputs, both kernels

kvmcheck.c is cross-compiled with aarch64-linux-gnu-gcc -static; each kernel boots once with
every case in one script (docs/kvm-check.md). The boot is done by nested.sh, a script not
shipped here that boots Debian's arm64 kernels with EL2 under QEMU TCG (so /dev/kvm and KVM's
vgic-its run inside) and runs `nested.sh run KERNEL PAYLOAD_DIR OUT`. Env: NESTED (the path of
nested.sh; the default is the development machine's), WORK (nested.sh's work dir, per caller).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gictools.errors import GictoolsError
from gictools.kvm import compare, corpus, host
from gictools.kvm import model as M
from gictools.kvm import ops as O
from gictools.supervise import run_program

KERNELS = ("6.1.0-57-arm64", "6.12.118+deb12-arm64")
NESTED = os.environ.get("NESTED", "/work/shared/kvm-nested/nested.sh")
CROSS_CC = "aarch64-linux-gnu-gcc"
RUN_TIMEOUT = 1900  # s: nested.sh stops QEMU after its TIMEOUT (1800 s by default)
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "kvm-answers"
RUN_SH = """#!/bin/sh
cat /proc/version
uname -r
./kvmcheck cases.txt
echo "kvmcheck-rc $?"
"""


def boot(kver: str, cases: list[O.Case], binary: Path) -> tuple[str, str, list[list[str]], float]:
    """Boot kernel kver with the script; (upstream version, uname -r, answers, seconds)."""
    with tempfile.TemporaryDirectory(prefix="kvmcheck-") as d:
        pay = Path(d) / "payload"
        pay.mkdir()
        (pay / "kvmcheck").write_bytes(binary.read_bytes())
        (pay / "kvmcheck").chmod(0o755)
        (pay / "cases.txt").write_text(O.script(cases))
        (pay / "run").write_text(RUN_SH)
        (pay / "run").chmod(0o755)
        out = Path(d) / "out.txt"
        t0 = time.monotonic()
        try:  # nested.sh bounds QEMU itself (its TIMEOUT); this bounds nested.sh
            rc, _, stderr = run_program([NESTED, "run", kver, str(pay), str(out)], RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise host.HostError(f"nested run of {kver}: over {RUN_TIMEOUT} s") from None
        secs = time.monotonic() - t0
        if rc != 0 or not out.exists():
            raise host.HostError(f"nested run of {kver} failed: {stderr.strip()[-300:]}")
        lines = out.read_text().split("\n")
    if len(lines) < 3 or not lines[-2].startswith("kvmcheck-rc "):
        raise host.HostError(f"{kver}: kvmcheck did not finish (output {len(lines)} lines)")
    if lines[-2] != "kvmcheck-rc 0":
        raise host.HostError(f"{kver}: {lines[-2]}")
    version = host.upstream_version(lines[0], lines[1])
    answers = O.split_answers(cases, "\n".join(lines[2:-2]) + "\n")
    return version, lines[1], answers, secs


def cross_build(d: Path) -> Path:
    return host.build(d / "kvmcheck", cc=CROSS_CC, static=True)


def check(cases: list[O.Case], kernels: tuple[str, ...], record: bool) -> int:
    """Run cases on each kernel and the model; print every difference; record answers if asked."""
    n_diff = 0
    with tempfile.TemporaryDirectory(prefix="kvmcheck-build-") as d:
        binary = cross_build(Path(d))
        for kver in kernels:
            version, release, answers, secs = boot(kver, cases, binary)
            t0 = time.monotonic()
            model = M.run_cases(cases, version)
            diffs = compare.diff_all(cases, answers, model)
            n_ans = sum(len(a) for a in answers)
            for line in diffs:
                print(f"{version}: {line}")
            print(
                f"{release} ({version}): {len(cases)} cases, {n_ans} answers, {len(diffs)} "
                f"differences; boot+run {secs:.1f} s, model {time.monotonic() - t0:.1f} s",
                file=sys.stderr,
            )
            n_diff += len(diffs)
            if record:
                path = FIXTURES / f"{version}.msgpack.gz"
                corpus.save_answers(path, version, release, cases, answers)
                print(f"recorded {path} ({path.stat().st_size} bytes)", file=sys.stderr)
    return n_diff


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m gictools.kvm.nested", description=__doc__.split("\n")[0]
    )
    ap.add_argument("inputs", nargs="*", help="traces or images (default: the stored corpus)")
    ap.add_argument(
        "--corpus", action="store_true", help="regenerate the corpus and record answers"
    )
    ap.add_argument("-n", "--cases", type=int, default=4000, help="cases to generate (--corpus)")
    ap.add_argument("--seed", type=int, default=20)
    ap.add_argument(
        "--kernel", action="append", choices=KERNELS, help="only this kernel (repeatable)"
    )
    a = ap.parse_args(argv)
    kernels = tuple(a.kernel or KERNELS)
    try:
        if a.corpus:
            cases = corpus.generate(a.cases, a.seed)
            FIXTURES.mkdir(parents=True, exist_ok=True)
            corpus.save_cases(FIXTURES / corpus.CASES_FILE, cases, a.seed)
        elif a.inputs:
            from gictools.kvm.convert import cases_from_inputs

            notes: list[str] = []
            cases = cases_from_inputs(a.inputs, notes)
            for note in notes:
                print(f"note: {note}", file=sys.stderr)
            cases = [c._replace(kind=Path(p).name) for c, p in zip(cases, a.inputs)]
        else:
            cases = corpus.load_cases(FIXTURES / corpus.CASES_FILE)
        n = check(cases, kernels, record=a.corpus)
    except GictoolsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 1 if n and not a.corpus else 0


if __name__ == "__main__":
    sys.exit(main())
