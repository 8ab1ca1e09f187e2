"""The importer's input files: the log (plain or gzip) and the optional pmemsave dumps and
command line, each read into what the Importer takes."""

import gzip
import io
import re

from gictools.errors import ImportFormatError
from gictools.trace import format as F
from gictools.trace.qemu.machine import DEFAULT_PROP, LPI_BASE, MAX_RAM


def read_cmdq(path):
    """{slot: 32 raw bytes} from a NAME.cmdq.txt dump (all-zero slots are omitted there)."""
    slots = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            s = line.split("#", 1)[0].split()
            if not s:
                continue
            try:
                if len(s) != 5:
                    raise ValueError
                slot = int(s[0], 16)
                words = [int(w, 16) for w in s[1:]]
                # a queue is at most 1 MiB: 32768 slots
                if any(not 0 <= w < 1 << 64 for w in words) or not 0 <= slot < 1 << 15:
                    raise ValueError
            except ValueError:
                raise ImportFormatError(
                    "expected 'SLOT DW0 DW1 DW2 DW3' in hex (SLOT < 0x8000)", line=n, path=path
                ) from None
            slots[slot] = b"".join(w.to_bytes(8, "little") for w in words)
    return slots


def read_lpiprop(path):
    """(default byte, {INTID: byte}) from a NAME.lpiprop.txt dump."""
    default, entries = DEFAULT_PROP, {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if line.startswith("#"):
                m = re.search(r"most common value 0x([0-9a-fA-F]{1,4})\b", line)
                if m:
                    default = int(m.group(1), 16)
                continue
            s = line.split()
            if not s:
                continue
            try:
                if len(s) != 2:
                    raise ValueError
                intid, byte = int(s[0], 16), int(s[1], 16)
                if not LPI_BASE <= intid <= F.U32_MAX or not 0 <= byte <= 0xFF:
                    raise ValueError
            except ValueError:
                raise ImportFormatError(
                    "expected 'INTID CONFIG-BYTE' in hex (0x2000 <= INTID < 2^32)",
                    line=n,
                    path=path,
                ) from None
            entries[intid] = byte
    if not 0 <= default <= 0xFF:
        raise ImportFormatError(f"default config byte {default:#x} out of range", path=path)
    return default, entries


def read_cmdline(path):
    """{"vcpus": N or None, "ram": bytes or None} from a QEMU command line file."""
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read(1 << 20).replace("\\,", ",")
    out = {"vcpus": None, "ram": None}
    m = re.search(r"(?:^|\s)-smp\s+(?:cpus=)?([0-9]{1,12})", text)
    if m:
        out["vcpus"] = int(m.group(1))
        if not 1 <= out["vcpus"] <= F.MAX_VCPUS:
            raise ImportFormatError(
                f"-smp {out['vcpus']}: a VM has 1..{F.MAX_VCPUS} vCPUs", path=path
            )
    m = re.search(r"(?:^|\s)-m\s+(?:size=)?([0-9]{1,12})([MGTK]?)", text)
    if m:
        mult = {"": 1 << 20, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "K": 1 << 10}[m.group(2)]
        out["ram"] = int(m.group(1)) * mult
        if not 0 < out["ram"] <= MAX_RAM:
            raise ImportFormatError(
                f"-m {m.group(1)}{m.group(2)}: RAM must be 1 byte .. {MAX_RAM >> 30} GiB",
                path=path,
            )
    return out


def open_text(path, file=None):
    """The log as text lines; file, if given, is the opened file on disk (gzip or not), whose
    position tells how far the reading got (the on-disk bytes, for a progress bar)."""
    raw = file if file is not None else open(path, "rb")
    magic = raw.read(2)
    raw.seek(0)
    if magic == b"\x1f\x8b":
        raw = gzip.GzipFile(fileobj=raw, mode="rb")
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline=None)


# --- typed records ---------------------------------------------------------------------------
# Rec is final (a TraceWriter method and its arguments); the others are decided in finish().
