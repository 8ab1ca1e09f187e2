"""The op-script format, defined once: what kvmcheck.c executes on /dev/kvm and the model runs.

A script is text, one operation a line; numbers are hex without 0x. Both runners print exactly
one answer line per script line, so answer i belongs to line i:

    vm ID NVCPUS MEMBASE MEMSIZE DISTBASE REDISTBASE ITSBASE FLAGS   a fresh VM -> "vm ID 0"
                           FLAGS: 1 no ITS device, 2 no KVM_DEV_ARM_VGIC_CTRL_INIT
    memw GPA HEXBYTES      guest memory write                        -> 0 | -14
    memr GPA LEN           guest memory read (aligned, <= 1 MiB)     -> "-" | "OFF=QWORD ..." | -14
    its_w OFF VAL          KVM_DEV_ARM_VGIC_GRP_ITS_REGS write       -> 0 | -errno
    its_r OFF              ... read                                  -> "=VAL" | -errno
    rd_w CPU OFF VAL32     KVM_DEV_ARM_VGIC_GRP_REDIST_REGS (32-bit) -> 0 | -errno
    rd_r CPU OFF           ... read                                  -> "=VAL" | -errno
    dist_w OFF VAL32       KVM_DEV_ARM_VGIC_GRP_DIST_REGS            -> 0 | -errno
    dist_r OFF                                                       -> "=VAL" | -errno
    msi DEVID EVID         KVM_SIGNAL_MSI to the ITS's doorbell      -> 1 | 0 | -errno
    cmd HEX32              write the command at CBASER's address + CWRITER, CWRITER += 32 (mod
                           the queue size): KVM processes the queue  -> "=CREADR" | -14 | -errno
    save | restore | itsreset   KVM_DEV_ARM_ITS_{SAVE,RESTORE}_TABLES, _CTRL_RESET -> 0 | -errno
    savep                  KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES      -> 0 | -errno

memr lists the non-zero little-endian qwords of the range by offset from GPA, so a saved table
compares entry by entry and an all-zero page costs one character. A malformed line answers
"!bad REASON"; any op before the first successful `vm` answers "!novm", an ITS op (its_*,
cmd, save, restore, itsreset) on a VM made without an ITS "!noits".
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from gictools.errors import GictoolsError

# The VM layout both runners use unless a trace or an image says otherwise (QEMU virt's RAM
# base; the distributor, ITS and redistributor frames below it, as QEMU virt places them).
MEM_BASE = 0x4000_0000
MEM_SIZE = 16 << 20  # the corpus VMs: 16 MiB of RAM is room for every table it uses
DIST_BASE = 0x0800_0000
ITS_BASE = 0x0808_0000
REDIST_BASE = 0x080A_0000

MAX_MEMR = 1 << 20  # bytes of one memr (kvmcheck.c: MAX_MEMR)
MAX_LINE = 4 << 20  # bytes of one line (kvmcheck.c: MAX_LINE)
MAX_VCPUS = 64  # kvmcheck.c: MAX_VCPUS
MAX_MEM = 8 << 30  # bytes of the memslot (kvmcheck.c: MAX_MEM)

GITS_CBASER, GITS_CWRITER, GITS_CREADR = 0x80, 0x88, 0x90
CBASER_PA_MASK = ((1 << 52) - 1) & ~0xFFF  # GITS_CBASER_ADDRESS: bits [51:12]

# op -> number of arguments (memw's second and cmd's only argument are hex data)
ARITY = {
    "vm": 8,
    "memw": 2,
    "memr": 2,
    "its_w": 2,
    "its_r": 1,
    "rd_w": 3,
    "rd_r": 2,
    "dist_w": 2,
    "dist_r": 1,
    "msi": 2,
    "cmd": 1,
    "save": 0,
    "restore": 0,
    "itsreset": 0,
    "savep": 0,
}
DATA_ARG = {"memw": 1, "cmd": 0}  # op -> index of its hex-bytes argument


class OpError(GictoolsError):
    """A script line that is not an op of this format."""


class Op(NamedTuple):
    name: str
    args: tuple[int, ...]  # the numeric arguments, in order (the data argument left out)
    data: bytes | None  # memw's bytes, cmd's 32 bytes


def line(name: str, *args: int | bytes) -> str:
    """One script line: ints in hex, bytes as hex digits."""
    if name not in ARITY or len(args) != ARITY[name]:
        raise ValueError(f"op {name} takes {ARITY.get(name)} arguments, got {len(args)}")
    parts = [name]
    for a in args:
        parts.append(a.hex() if isinstance(a, bytes | bytearray) else f"{a:x}")
    return " ".join(parts)


VM_NO_ITS, VM_NO_INIT = 1, 2  # the vm line's FLAGS
ITS_OPS = ("its_w", "its_r", "cmd", "save", "restore", "itsreset")


def vm_line(
    case_id: int, vcpus: int, mem_base: int = MEM_BASE, mem_size: int = MEM_SIZE, flags: int = 0
) -> str:
    return line("vm", case_id, vcpus, mem_base, mem_size, DIST_BASE, REDIST_BASE, ITS_BASE, flags)


def parse(text: str) -> Op:
    """One line -> Op; OpError says what is wrong."""
    words = text.split()
    if not words:
        raise OpError("empty line")
    name, rest = words[0], words[1:]
    if name not in ARITY:
        raise OpError(f"unknown op {name[:32]!r}")
    if len(rest) != ARITY[name]:
        raise OpError(f"{name} takes {ARITY[name]} arguments, got {len(rest)}")
    data = None
    args = []
    for i, w in enumerate(rest):
        if DATA_ARG.get(name) == i:
            if len(w) % 2:
                raise OpError("odd number of hex digits")
            try:
                data = bytes.fromhex(w)
            except ValueError:
                raise OpError("data is not hex") from None
            continue
        if len(w) > 16:
            raise OpError(f"argument {i + 1} of {name} is not a hex number")
        try:
            args.append(int(w, 16))
        except ValueError:
            raise OpError(f"argument {i + 1} of {name} is not a hex number") from None
    if name == "cmd" and data is not None and len(data) != 32:
        raise OpError("a command is 32 bytes")
    return Op(name, tuple(args), data)


def memr_answer(data: bytes) -> str:
    """memr's answer for these bytes: the non-zero little-endian qwords by offset, or "-"."""
    q = np.frombuffer(data, "<u8", count=len(data) // 8)
    nz = np.flatnonzero(q)  # tables are mostly zero: format only the entries
    return " ".join(f"{8 * int(i):x}={int(q[i]):x}" for i in nz) if len(nz) else "-"


def memr_words(answer: str) -> dict[int, int] | None:
    """The qwords of a memr answer, or None when it is an errno or malformed."""
    if answer == "-":
        return {}
    out = {}
    for w in answer.split():
        off, eq, val = w.partition("=")
        if not eq:
            return None
        try:
            out[int(off, 16)] = int(val, 16)
        except ValueError:
            return None
    return out


class Case(NamedTuple):
    """One VM's worth of ops: the `vm` line first."""

    case_id: int
    kind: str  # the generator's class name (corpus) or the input's name (kvm-check)
    lines: list[str]


def script(cases: list[Case]) -> str:
    return "".join(ln + "\n" for c in cases for ln in c.lines)


def split_answers(cases: list[Case], output: str) -> list[list[str]]:
    """Answers of a whole script, case by case; a short output (a crash) leaves cases short."""
    lines = output.splitlines()
    out, i = [], 0
    for c in cases:
        out.append(lines[i : i + len(c.lines)])
        i += len(c.lines)
    if i < len(lines):
        raise OpError(f"{len(lines) - i} answer lines more than the script's {i} lines")
    return out
