"""The gictools image format: its layout, record schema and checking parser (no VM here;
saving and restoring are in gictools/image.py, which re-exports these names).

Image file layout (all integers little-endian):

    offset 0   magic   b"GICTIMG\\0"                      8 bytes
    offset 8   major, minor version                      u16, u16   (this is 1.0)
    offset 12  reserved, 0                               u32
    offset 16  body length N                             u64
    offset 24  body: a sequence of msgpack records       N bytes
    offset 24+N  SHA-256 of bytes [0, 24+N)              32 bytes

Body records, in this order (each a msgpack array, element 0 a tag string; the element
names after the tag are declared once, in RECORDS, and both directions use that table):

    ["vm", {"vcpus", "vcpu_ids", "kernel", "memory": [[base, size], ...], "cache"}]   once, first
    ["redist", vcpu, GICR_CTLR, GICR_PROPBASER, GICR_PENDBASER]                         per vCPU
    ["its", index, base, GITS_CTLR, GITS_IIDR, GITS_CBASER, GITS_CREADR, GITS_CWRITER,
            [GITS_BASER0 .. GITS_BASER7]]                                               per ITS
    ["mem", gpa, data]          runs of non-zero pages, ascending, page-aligned, inside RAM
    ["end", number of records before it]

The reserved header field must be 0. A reader refuses an unknown major version; minor
versions only append.
"""

import hashlib
import io
import os
import struct
from collections.abc import Callable
from typing import Any, BinaryIO

import msgpack

from gictools import regs as R
from gictools.errors import ImageError, StrPath
from gictools.model.memory import PAGE_SIZE

MAGIC = b"GICTIMG\0"
VERSION = (1, 0)
_HEADER = struct.Struct("<8sHHIQ")
HEADER_SIZE = _HEADER.size  # 24
DIGEST_SIZE = 32
MAX_RUN = 16 << 20  # bytes per "mem" record
_IO_CHUNK = 1 << 20  # file reads while hashing and decoding: memory stays flat
# The decoder's buffer: one whole "mem" record (its data, tag, address, headers) fits.
_MAX_BUFFER = MAX_RUN + 4096
ITS_REGS = ("GITS_CTLR", "GITS_IIDR", "GITS_CBASER", "GITS_CREADR", "GITS_CWRITER")
REDIST_REGS = ("GICR_CTLR", "GICR_PROPBASER", "GICR_PENDBASER")

# The body's record schema, declared once: tag -> the names of the elements after the tag.
# The writer packs [tag, *values in this order]; the reader checks the length and names them.
RECORDS = {
    "vm": ("config",),
    "redist": ("vcpu", *REDIST_REGS),
    "its": ("index", "base", *ITS_REGS, "GITS_BASER"),
    "mem": ("gpa", "data"),
    "end": ("count",),
}

ImageSource = bytes | bytearray | memoryview | StrPath
"""An image in memory, or the path of an image file."""


def _record(tag: str, **values: object) -> list[object]:
    """[tag, *values] in RECORDS order (a missing or extra name is a programming error)."""
    names = RECORDS[tag]
    if set(values) != set(names):
        raise TypeError(f"record {tag!r} takes {names}, got {tuple(values)}")
    return [tag] + [values[n] for n in names]


class _Image:
    """A parsed, validated image: config, registers, memory runs (no VM built yet)."""

    def __init__(self) -> None:
        self.vm: dict[str, Any] = {}  # the "vm" record's config (the first record)
        self.redists: dict[int, list[int]] = {}  # vCPU -> REDIST_REGS values
        self.itses: list[tuple[int, int, dict[str, Any], int]] = []  # (index, base, regs, offset)
        self.mem: list[tuple[int, bytes, int]] = []  # (gpa, data, file offset)


def _int(
    v: object, what: str, off: int, path: StrPath | None, lo: int = 0, hi: int = (1 << 64) - 1
) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise ImageError(
            f"{what}: expected an integer in [{lo:#x}, {hi:#x}], got {v!r}", offset=off, path=path
        )
    return v


class _Body:
    """A file-like view of the body bytes [HEADER_SIZE, HEADER_SIZE + n) of an image file."""

    def __init__(self, f: BinaryIO, n: int) -> None:
        self.f, self.left = f, n

    def read(self, size: int = -1) -> bytes:
        if size < 0 or size > self.left:
            size = self.left
        data = self.f.read(size)
        self.left -= len(data)
        return data


def _check_header(
    f: BinaryIO, file_size: int, path: StrPath | None, verify_checksum: bool = True
) -> int:
    """Check magic, version, reserved field, length and digest, streaming; returns body length.
    verify_checksum=False skips the digest (inspect --ignore-checksum: hand-edited tables)."""
    if file_size < HEADER_SIZE + DIGEST_SIZE:
        raise ImageError(f"file too short for an image ({file_size} bytes)", offset=0, path=path)
    f.seek(0)
    head = f.read(HEADER_SIZE)
    magic, major, minor, reserved, n = _HEADER.unpack(head)
    if magic != MAGIC:
        raise ImageError("not a gictools image (bad magic)", offset=0, path=path)
    if major != VERSION[0]:
        raise ImageError(
            f"image version {major}.{minor} not supported (this reads {VERSION[0]}.x)",
            offset=8,
            path=path,
        )
    if reserved:
        raise ImageError(f"reserved header field is {reserved:#x}, must be 0", offset=12, path=path)
    if HEADER_SIZE + n + DIGEST_SIZE != file_size:
        raise ImageError(
            f"body length {n} does not match the file size {file_size}", offset=16, path=path
        )
    if not verify_checksum:
        return n
    h = hashlib.sha256(head)
    left = n
    while left:
        chunk = f.read(min(_IO_CHUNK, left))
        if not chunk:
            raise ImageError("file shrank while being read", offset=file_size - left, path=path)
        h.update(chunk)
        left -= len(chunk)
    if h.digest() != f.read(DIGEST_SIZE):
        raise ImageError(
            "checksum mismatch (file corrupt or truncated)", offset=HEADER_SIZE + n, path=path
        )
    return n


def _parse_vm(c: object, off: int, path: StrPath | None) -> dict[str, Any]:
    if not isinstance(c, dict):
        raise ImageError("bad 'vm' record", offset=off, path=path)
    try:
        vcpus = _int(c["vcpus"], "vm.vcpus", off, path, 1, 4096)
        ids = [_int(i, "vm.vcpu_ids", off, path, 0, 0xFFFF_FFFF) for i in c["vcpu_ids"]]
        slots = [
            (_int(s[0], "vm.memory base", off, path), _int(s[1], "vm.memory size", off, path))
            for s in c["memory"]
        ]
        kernel, cache = c["kernel"], c["cache"]
        if not isinstance(kernel, str) or not isinstance(cache, str):
            raise TypeError("kernel and cache must be strings")
    except (KeyError, TypeError, IndexError) as e:
        raise ImageError(f"bad 'vm' record: {e!r}", offset=off, path=path) from None
    return {"vcpus": vcpus, "vcpu_ids": ids, "memory": slots, "kernel": kernel, "cache": cache}


class _Walk:
    """Where the record walk stands: records seen, the last memory byte, end and memory seen."""

    def __init__(self) -> None:
        self.count = 0
        self.last_gpa = -1
        self.ended = False
        self.mem_started = False


def _named(rec: object, walk: _Walk, off: int, path: StrPath | None) -> tuple[str, dict]:
    """(tag, {name: value}) of one decoded record, its shape checked against RECORDS."""
    if walk.ended:
        raise ImageError("data after the end record", offset=off, path=path)
    if not isinstance(rec, list) or not rec or not isinstance(rec[0], str):
        raise ImageError("a record must be an array starting with a tag", offset=off, path=path)
    tag = rec[0]
    names = RECORDS.get(tag)
    if names is None:
        raise ImageError(f"unknown record tag {tag!r}", offset=off, path=path)
    if walk.count == 0 and tag != "vm":
        raise ImageError("the first record must be 'vm'", offset=off, path=path)
    if len(rec) != 1 + len(names):
        raise ImageError(
            f"bad {tag!r} record: {len(rec) - 1} elements, expected {len(names)}",
            offset=off,
            path=path,
        )
    if walk.mem_started and tag in ("vm", "redist", "its"):
        raise ImageError(f"{tag!r} record after the memory records", offset=off, path=path)
    return tag, dict(zip(names, rec[1:]))


def _take_its(img: _Image, r: dict, off: int, path: StrPath | None) -> None:
    basers = r["GITS_BASER"]
    if not isinstance(basers, list) or len(basers) != R.GITS_BASER_NR_REGS:
        raise ImageError("bad 'its' record: GITS_BASER", offset=off, path=path)
    idx = _int(r["index"], "ITS index", off, path, len(img.itses), len(img.itses))
    base = _int(r["base"], "ITS base", off, path)
    regs: dict[str, Any] = {x: _int(r[x], x, off, path) for x in ITS_REGS}
    regs["GITS_BASER"] = [_int(x, "GITS_BASER", off, path) for x in basers]
    img.itses.append((idx, base, regs, off))


def _take_mem(walk: _Walk, r: dict, off: int, path: StrPath | None) -> tuple[int, bytes]:
    data = r["data"]
    if not isinstance(data, bytes):
        raise ImageError("bad 'mem' record: data is not bytes", offset=off, path=path)
    gpa = _int(r["gpa"], "mem gpa", off, path)
    if gpa % PAGE_SIZE or gpa <= walk.last_gpa:
        raise ImageError(
            f"memory run at {gpa:#x} is unaligned or out of order", offset=off, path=path
        )
    walk.last_gpa = gpa + len(data) - 1
    walk.mem_started = True
    return gpa, data


def _take(img: _Image, walk: _Walk, tag: str, r: dict, off: int, path: StrPath | None) -> None:
    """Check one non-memory record's values into img (the "end" record ends the walk)."""
    if tag == "vm":
        if walk.count != 0:
            raise ImageError("repeated 'vm' record", offset=off, path=path)
        img.vm = _parse_vm(r["config"], off, path)
    elif tag == "redist":
        v = _int(r["vcpu"], "redist vCPU", off, path, 0, img.vm["vcpus"] - 1)
        if v in img.redists:
            raise ImageError(f"vCPU {v}'s redistributor given twice", offset=off, path=path)
        img.redists[v] = [_int(r[x], x, off, path) for x in REDIST_REGS]
    elif tag == "its":
        _take_its(img, r, off, path)
    else:  # end
        if r["count"] != walk.count:
            raise ImageError(
                f"end record counts {r['count']!r}, the image has {walk.count} records",
                offset=off,
                path=path,
            )
        walk.ended = True


def _parse_records(
    f: BinaryIO,
    n: int,
    path: StrPath | None,
    img: _Image,
    on_mem: Callable[[int, bytes, int], object],
) -> None:
    """Decode and check the body's records (RECORDS) from f (positioned at the body).

    Fills img's config and registers; each "mem" record goes to on_mem(gpa, data, offset)
    once the records before it are checked, so memory can be restored as it streams.
    """
    up = msgpack.Unpacker(
        _Body(f, n),
        read_size=_IO_CHUNK,
        max_buffer_size=_MAX_BUFFER,
        raw=False,
        max_bin_len=MAX_RUN,
        max_str_len=1 << 16,
        max_array_len=1 << 16,
        max_map_len=64,
        strict_map_key=True,
    )
    walk = _Walk()
    end = HEADER_SIZE + n
    while True:
        off = HEADER_SIZE + up.tell()
        try:
            rec = up.unpack()
        except msgpack.OutOfData:
            if HEADER_SIZE + up.tell() != end:
                raise ImageError("truncated record", offset=off, path=path) from None
            break
        except (ValueError, TypeError, msgpack.UnpackException) as e:
            raise ImageError(f"undecodable record: {e}", offset=off, path=path) from None
        tag, r = _named(rec, walk, off, path)
        if tag == "mem":
            gpa, data = _take_mem(walk, r, off, path)
            on_mem(gpa, data, off)
        else:
            _take(img, walk, tag, r, off, path)
        walk.count += 1
    if not walk.ended:
        raise ImageError("no end record (truncated body)", offset=end, path=path)
    if sorted(img.redists) != list(range(img.vm["vcpus"])):
        raise ImageError(
            "image lacks a redistributor record for some vCPU", offset=HEADER_SIZE, path=path
        )


def _open_source(src: ImageSource, path: StrPath | None) -> tuple[BinaryIO, int]:
    if isinstance(src, (bytes, bytearray, memoryview)):
        return io.BytesIO(src), len(src)
    try:
        f = open(src, "rb")
        return f, os.fstat(f.fileno()).st_size
    except OSError as e:
        raise ImageError(f"cannot read: {e.strerror}", path=path) from None


def parse_image(data: ImageSource, path: StrPath | None = None) -> _Image:
    """Check and decode an image (bytes, or a path); malformed input raises ImageError with a
    byte offset. Keeps every memory run (for comparisons and small images: see load_image)."""
    f, size = _open_source(data, path)
    with f:
        n = _check_header(f, size, path)
        f.seek(HEADER_SIZE)
        img = _Image()
        _parse_records(f, n, path, img, lambda gpa, d, off: img.mem.append((gpa, d, off)))
    return img


def is_image(path: StrPath) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False
