"""Build kvmcheck.c, run it on a KVM host, and name the kernel that answered."""

from __future__ import annotations

import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from gictools.errors import GictoolsError
from gictools.supervise import run_program

SOURCE = "kvmcheck.c"
BUILD_TIMEOUT = 120  # s: one small C file
# "Debian 6.1.192-3", "Debian 6.12.118-1~deb12u1": the upstream release a distribution kernel is
UPSTREAM_RE = re.compile(r"\b(?:Debian|Ubuntu)\s+(\d+\.\d+(?:\.\d+)?)")
RELEASE_RE = re.compile(r"^(\d+\.\d+(?:\.\d+)?)")


class HostError(GictoolsError):
    """The host cannot run the check: no compiler, no /dev/kvm, the program failed."""


def source_path() -> Path:
    return Path(str(resources.files("gictools.kvm").joinpath(SOURCE)))


def build(out: Path, cc: str = "cc", static: bool = True) -> Path:
    """Compile kvmcheck.c to out with cc (-static when the toolchain can, else dynamic)."""
    if shutil.which(cc) is None:
        raise HostError(f"no C compiler {cc!r} on PATH (kvm-check builds kvmcheck.c from source)")
    src = source_path()
    attempts = [["-static"], []] if static else [[]]
    err = ""
    for extra in attempts:
        cmd = [cc, "-O2", "-Wall", *extra, "-o", str(out), str(src)]
        try:
            rc, _, stderr = run_program(cmd, BUILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise HostError(f"{cc}: building {src} took more than {BUILD_TIMEOUT} s") from None
        if rc == 0:
            return out
        err = (stderr.strip().splitlines() or ["?"])[-1]
    raise HostError(f"{cc} could not build {src}: {err}")


def upstream_version(proc_version: str, release: str) -> str:
    """The upstream X.Y.Z a kernel is: "Debian 6.1.192-3" in /proc/version names the stable
    release a Debian ABI like 6.1.0-57-arm64 carries; otherwise uname -r's leading X.Y[.Z]."""
    found = UPSTREAM_RE.findall(
        proc_version
    )  # the last: the compiler's "Debian 12.2.0" comes first
    if found:
        return found[-1]
    m = RELEASE_RE.match(release.strip())
    if not m:
        raise HostError(f"cannot tell the kernel version from uname -r {release!r}")
    return m.group(1)


def run_binary(binary: Path, script_path: Path, timeout: float) -> str:
    """kvmcheck's answers for a script file on this host's /dev/kvm."""
    try:
        rc, stdout, stderr = run_program([str(binary), str(script_path)], timeout)
    except subprocess.TimeoutExpired:
        raise HostError(f"kvmcheck ran longer than {timeout:.0f} s") from None
    if rc != 0:
        last = (stderr.strip().splitlines() or [f"exit status {rc}"])[-1]
        raise HostError(f"kvmcheck failed: {last}")
    return stdout
