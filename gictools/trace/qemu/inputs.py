"""The importer's input files: the log (plain or gzip) and the optional pmemsave dumps and
command line, each read into what the Importer takes.

Every input is bounded by what it can legitimately hold: an auxiliary file is read whole,
up to its limit, and a file that is neither regular nor a pipe (a device such as
/dev/zero, which never ends) is refused; a log line is at most MAX_LINE characters, and a
log whose first characters are not text is refused."""

import gzip
import io
import os
import re
import stat

from gictools.errors import ImportFormatError
from gictools.trace import format as F
from gictools.trace.qemu.machine import DEFAULT_PROP, LPI_BASE, MAX_RAM

# A queue is at most 1 MiB (GITS_CBASER.Size 255: 256 pages of 4 KiB): 32768 slots, one line
# each of about 74 characters; 256 a line leaves room for comments and spacing.
MAX_CMDQ_BYTES = 32768 * 256
# KVM reads at most 2^16 - 8192 configuration bytes (vgic_its_max_lpis), one line each of
# about 12 characters; 128 a line leaves room for comments and spacing.
MAX_LPIPROP_BYTES = ((1 << 16) - LPI_BASE) * 128
# A command line is at most ARG_MAX: a quarter of Linux's default 8 MiB stack.
MAX_CMDLINE_BYTES = 2 << 20
# A QEMU trace line is a few hundred characters; QEMU's own messages are lines too.
MAX_LINE = 1 << 16
TEXT_CHECKED = 4096  # characters at the start of a log that must be text


_FILE_KINDS = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _read_aux(path, limit, what, why):
    """The whole of auxiliary file path as text, refused beyond limit bytes (why: what bounds
    it), or when it is neither a regular file nor a pipe (a device may never end)."""
    with open(path, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
            kind = next((k for test, k in _FILE_KINDS if test(mode)), "not a regular file")
            raise ImportFormatError(
                f"{kind}: the {what} must be a regular file or a pipe", path=path
            )
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ImportFormatError(
            f"more than {limit:,} bytes: larger than any {what} can be ({why})", path=path
        )
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="replace")


def read_cmdq(path):
    """{slot: 32 raw bytes} from a NAME.cmdq.txt dump (all-zero slots are omitted there)."""
    slots = {}
    why = "a queue is at most 1 MiB: 32768 slots"
    with _read_aux(path, MAX_CMDQ_BYTES, "command queue dump", why) as f:
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
    why = "KVM reads at most 2^16 - 8192 configuration bytes"
    with _read_aux(path, MAX_LPIPROP_BYTES, "LPI configuration table dump", why) as f:
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
    with _read_aux(path, MAX_CMDLINE_BYTES, "QEMU command line", "ARG_MAX") as f:
        text = f.read().replace("\\,", ",")
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


def log_lines(f, path):
    """The lines of text log f, each at most MAX_LINE characters; ImportFormatError when the
    log starts with something other than text (a NUL byte, or bytes that are not UTF-8)."""
    checked, n = 0, 0
    while True:
        line = f.readline(MAX_LINE)
        if not line:
            return
        n += 1
        if checked < TEXT_CHECKED:
            checked += len(line)
            if "\x00" in line or "\ufffd" in line:
                raise ImportFormatError(
                    "not a text log (binary data in its first bytes): a QEMU `log`-backend "
                    "trace is text, plain or gzip",
                    line=n,
                    path=path,
                )
        if len(line) == MAX_LINE and not line.endswith("\n"):
            raise ImportFormatError(
                f"a line of more than {MAX_LINE:,} characters: not a QEMU trace line",
                line=n,
                path=path,
            )
        yield line
