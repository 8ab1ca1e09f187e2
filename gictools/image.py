"""Guest-memory images (versioned, checksummed) and raw memory dumps: the only memory<->file code.

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

The reserved header field must be 0. Both directions stream: save_image writes the file as
it packs it (the body length is computed before any page is copied), load_image checks the
digest in 1 MiB reads and then decodes record by record, writing each memory run into the
new VM as it comes, so memory stays at the VM's own pages plus one 16 MiB record.

Register values are what userspace reads (KVM_DEV_ARM_VGIC_GRP_ITS_REGS / redistributor
uaccess). The same VM state always gives the same bytes: no timestamps, fixed record and
key order. A reader refuses an unknown major version; minor versions only append.

load_image restores in KVM's documented order (arm-vgic-its.rst): guest memory, the
redistributors (PROPBASER, PENDBASER, then GICR_CTLR: enabling LPIs imports the pending
tables), then per ITS: GITS_CBASER first, GITS_IIDR, GITS_BASER<n>, GITS_CREADR (userspace
path), GITS_CWRITER, KVM_DEV_ARM_ITS_RESTORE_TABLES, GITS_CTLR last. In the model an ITS's
creation and its base address are one step (VM.add_its, which also resets PROPBASER as
vgic_its_create does), so ITSes are created with the VM, before memory.
"""

import hashlib
import io
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

import msgpack

from gictools import regs as R
from gictools.errors import ConfigError, ImageError, StrPath
from gictools.model.memory import PAGE_SIZE, GuestMemory, MemoryBudgetExceeded
from gictools.outputs import write_atomic as _atomic_write

if TYPE_CHECKING:
    from gictools.abi.v0 import Inspection
    from gictools.model.budget import Budget
    from gictools.model.vm import VM

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


# --- writing -----------------------------------------------------------------------------------


def flush_tables(vm: "VM") -> None:
    """What userspace runs before migrating RAM: SAVE_PENDING_TABLES, then each ITS's
    SAVE_TABLES. A failure raises ImageError(step=..., errno=...)."""
    err = vm.save_pending_tables()
    if err:
        raise ImageError(
            f"KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES failed ({R.error_name(err)})",
            step="save_pending_tables",
            errno=err,
        )
    for its in vm.itses:
        err = its.save_tables()
        if err:
            raise ImageError(
                f"KVM_DEV_ARM_ITS_SAVE_TABLES failed on ITS {its.index} ({R.error_name(err)})",
                step=f"its{its.index}.save_tables",
                errno=err,
            )


def _memory_runs(mem: GuestMemory) -> Iterator[tuple[int, list[Any]]]:
    """(gpa, [page, ...]) runs of consecutive non-zero pages, each at most MAX_RUN bytes.

    The pages are the memory's own buffers (no copy): consume a run before changing memory.
    """
    start, run = None, []
    for gpa, page in mem.nonzero_page_buffers():
        if (
            start is not None
            and gpa == start + len(run) * PAGE_SIZE
            and len(run) * PAGE_SIZE < MAX_RUN
        ):
            run.append(page)
            continue
        if start is not None:
            yield start, run
        start, run = gpa, [page]
    if start is not None:
        yield start, run


def _bin_header(n: int) -> bytes:
    """msgpack's bin 8/16/32 header for n bytes (what Packer writes before a bytes value)."""
    if n < 1 << 8:
        return b"\xc4" + n.to_bytes(1, "big")
    if n < 1 << 16:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


def image_chunks(
    vm: "VM", *, flush: bool = True, progress: Callable[[int, int], None] | None = None
) -> Iterator[bytes]:
    """The image of vm as a sequence of byte strings (header, records, digest).

    Streams guest memory: no copy of the whole body is ever built, so a VM with
    hundreds of MiB of touched RAM is saved in memory bounded by one page run.
    progress(done, total) is called with the bytes produced so far (for a progress bar).
    """
    if flush:
        flush_tables(vm)
    pk = msgpack.Packer(use_bin_type=True)
    head_recs = [
        _record(
            "vm",
            config={
                "vcpus": vm.nr_vcpus,
                "vcpu_ids": list(vm.vcpu_ids),
                "kernel": vm.kernel.name,
                "memory": [[b, s] for b, s in vm.memory.slots],
                "cache": vm.cache_policy,
            },
        )
    ]
    for v in range(vm.nr_vcpus):
        regs = {r: vm.read_redist_reg(v, r) for r in REDIST_REGS}
        head_recs.append(_record("redist", vcpu=v, **regs))
    for its in vm.itses:
        regs = {r: its.read_reg(r) for r in ITS_REGS}
        basers = [its.read_reg(f"GITS_BASER{i}") for i in range(R.GITS_BASER_NR_REGS)]
        head_recs.append(_record("its", index=its.index, base=its.base, GITS_BASER=basers, **regs))
    head = [pk.pack(r) for r in head_recs]
    # mem records: [tag, gpa, data] with data's bin header written by hand, so the body
    # length is known before any page is copied.
    runs = list(_memory_runs(vm.memory))
    prefixes = []
    for gpa, pages in runs:
        prefix = pk.pack_array_header(3) + pk.pack("mem") + pk.pack(gpa)
        prefixes.append(prefix + _bin_header(len(pages) * PAGE_SIZE))
    n = len(head_recs) + len(runs)
    tail = pk.pack(_record("end", count=n))
    body_len = sum(map(len, head)) + sum(map(len, prefixes)) + len(tail)
    body_len += sum(len(pages) for _, pages in runs) * PAGE_SIZE
    h = hashlib.sha256()
    total = _HEADER.size + body_len + h.digest_size
    done = 0

    def out(chunk: bytes) -> bytes:
        nonlocal done
        h.update(chunk)
        if progress is not None:
            done += len(chunk)
            progress(done, total)
        return chunk

    yield out(_HEADER.pack(MAGIC, VERSION[0], VERSION[1], 0, body_len))
    for c in head:
        yield out(c)
    for prefix, (_gpa, pages) in zip(prefixes, runs):
        yield out(prefix)
        for page in pages:
            yield out(bytes(page))
    yield out(tail)
    if progress is not None:
        progress(total, total)
    yield h.digest()


def dump_image(vm: "VM", *, flush: bool = True) -> bytes:
    """The image of vm as bytes (see save_image)."""
    return b"".join(image_chunks(vm, flush=flush))


class _Counted:
    """Chunks passed through, their total size counted."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks, self.size = chunks, 0

    def __iter__(self) -> Iterator[bytes]:
        for c in self.chunks:
            self.size += len(c)
            yield c


def save_image(
    vm: "VM",
    path: StrPath,
    *,
    flush: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Write vm's image to path atomically (temp file + rename); returns its size in bytes.

    With flush (the default) the KVM save sequence runs first, as userspace does before
    migrating: SAVE_PENDING_TABLES, then SAVE_TABLES on every ITS (these write guest memory).
    The file is written as it is produced (memory stays bounded by one page run).
    """
    counted = _Counted(image_chunks(vm, flush=flush, progress=progress))
    _atomic_write(path, counted)
    return counted.size


# --- reading ---------------------------------------------------------------------------------


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
    count = 0
    last_gpa = -1
    ended = False
    mem_started = False
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
        if ended:
            raise ImageError("data after the end record", offset=off, path=path)
        if not isinstance(rec, list) or not rec or not isinstance(rec[0], str):
            raise ImageError("a record must be an array starting with a tag", offset=off, path=path)
        tag = rec[0]
        names = RECORDS.get(tag)
        if names is None:
            raise ImageError(f"unknown record tag {tag!r}", offset=off, path=path)
        if count == 0 and tag != "vm":
            raise ImageError("the first record must be 'vm'", offset=off, path=path)
        if len(rec) != 1 + len(names):
            raise ImageError(
                f"bad {tag!r} record: {len(rec) - 1} elements, expected {len(names)}",
                offset=off,
                path=path,
            )
        r = dict(zip(names, rec[1:]))
        if mem_started and tag in ("vm", "redist", "its"):
            raise ImageError(f"{tag!r} record after the memory records", offset=off, path=path)
        if tag == "vm":
            if count != 0:
                raise ImageError("repeated 'vm' record", offset=off, path=path)
            img.vm = _parse_vm(r["config"], off, path)
        elif tag == "redist":
            v = _int(r["vcpu"], "redist vCPU", off, path, 0, img.vm["vcpus"] - 1)
            if v in img.redists:
                raise ImageError(f"vCPU {v}'s redistributor given twice", offset=off, path=path)
            img.redists[v] = [_int(r[x], x, off, path) for x in REDIST_REGS]
        elif tag == "its":
            basers = r["GITS_BASER"]
            if not isinstance(basers, list) or len(basers) != R.GITS_BASER_NR_REGS:
                raise ImageError("bad 'its' record: GITS_BASER", offset=off, path=path)
            idx = _int(r["index"], "ITS index", off, path, len(img.itses), len(img.itses))
            base = _int(r["base"], "ITS base", off, path)
            regs: dict[str, Any] = {x: _int(r[x], x, off, path) for x in ITS_REGS}
            regs["GITS_BASER"] = [_int(x, "GITS_BASER", off, path) for x in basers]
            img.itses.append((idx, base, regs, off))
        elif tag == "mem":
            data = r["data"]
            if not isinstance(data, bytes):
                raise ImageError("bad 'mem' record: data is not bytes", offset=off, path=path)
            gpa = _int(r["gpa"], "mem gpa", off, path)
            if gpa % PAGE_SIZE or gpa <= last_gpa:
                raise ImageError(
                    f"memory run at {gpa:#x} is unaligned or out of order", offset=off, path=path
                )
            last_gpa = gpa + len(data) - 1
            mem_started = True
            on_mem(gpa, data, off)
        else:  # end
            if r["count"] != count:
                raise ImageError(
                    f"end record counts {r['count']!r}, the image has {count} records",
                    offset=off,
                    path=path,
                )
            ended = True
        count += 1
    if not ended:
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


def _create_vm(
    img: _Image, path: StrPath | None, budget: "Budget | None" = None, kernel: str | None = None
) -> "VM":
    """kernel: model this KVM version instead of the one the image names (--kernel)."""
    from gictools.model.vm import VM

    c = img.vm
    try:
        vm = VM(
            c["vcpus"],
            vcpu_ids=c["vcpu_ids"],
            kernel=kernel or c["kernel"],
            memory=c["memory"],
            cache=c["cache"],
            budget=budget,
        )
        for _idx, base, _regs, _off in img.itses:
            vm.add_its(base)
    except (ConfigError, ValueError) as e:
        raise ImageError(
            f"cannot create the VM: {e}", step="create", offset=HEADER_SIZE, path=path
        ) from None
    return vm


def _write_run(vm: "VM", gpa: int, data: bytes, off: int, path: StrPath | None) -> None:
    if not vm.memory.is_ram(gpa, len(data)):
        raise ImageError(
            f"memory run {gpa:#x}+{len(data):#x} is outside guest RAM",
            step="memory",
            offset=off,
            path=path,
        )
    try:
        vm.memory.write(gpa, data)
    except MemoryBudgetExceeded as e:
        raise ImageError(
            f"{e} (-ENOMEM)", step="memory", errno=-R.ENOMEM, offset=off, path=path
        ) from None


class StepFailures:
    """Inspect mode of the restore sequence: each failing step recorded, the next one run.

    `failures` holds (step, errno, what) in order; the first is what load_image raises.
    `walks` holds (ITS index, abi.v0.Inspection) of each RESTORE_TABLES walk.
    """

    def __init__(self) -> None:
        self.failures: list[tuple[str, int, str]] = []
        self.walks: list[tuple[int, Inspection]] = []


def _step_failed(
    fail: StepFailures | None, what: str, step: str, err: int, off: int, path: StrPath | None
) -> None:
    if fail is None:
        raise ImageError(what, step=step, errno=err, offset=off, path=path)
    fail.failures.append((step, err, what))


def _restore_state(
    vm: "VM", img: _Image, path: StrPath | None, fail: StepFailures | None = None
) -> "VM":
    """Steps 2.. of KVM's restore order (memory already written; see module doc).

    With fail (inspect mode) a failing step is recorded and the sequence goes on; the
    tables are walked in inspect mode (abi.v0.Inspection), leaving the ITS as before."""
    # 2. redistributors: PROPBASER, PENDBASER, then GICR_CTLR (imports pending tables)
    for v in range(vm.nr_vcpus):
        _ctlr, prop, pend = img.redists[v]
        vm.write_redist_reg(v, "GICR_PROPBASER", prop)
        vm.write_redist_reg(v, "GICR_PENDBASER", pend)
    for v in range(vm.nr_vcpus):
        vm.write_redist_reg(v, "GICR_CTLR", img.redists[v][0])
    # 3..7 per ITS: CBASER first, IIDR, BASERs, CREADR, CWRITER, RESTORE_TABLES, CTLR last
    for (idx, _base, regs, off), its in zip(img.itses, vm.itses):
        steps = [("GITS_CBASER", regs["GITS_CBASER"]), ("GITS_IIDR", regs["GITS_IIDR"])]
        steps += [(f"GITS_BASER{i}", v) for i, v in enumerate(regs["GITS_BASER"])]
        steps += [("GITS_CREADR", regs["GITS_CREADR"]), ("GITS_CWRITER", regs["GITS_CWRITER"])]
        for name, value in steps:
            err = its.write_reg(name, value)
            if err:
                what = f"ITS {idx}: writing {name} = {value:#x} failed ({R.error_name(err)})"
                _step_failed(fail, what, f"its{idx}.{name}", err, off, path)
        if fail is None:
            err = its.restore_tables()
        else:
            from gictools.abi.v0 import Inspection

            find = Inspection()
            fail.walks.append((idx, find))
            err = its.restore_tables(find)
        if err:
            what = f"ITS {idx}: KVM_DEV_ARM_ITS_RESTORE_TABLES failed ({R.error_name(err)})"
            _step_failed(fail, what, f"its{idx}.restore_tables", err, off, path)
        err = its.write_reg("GITS_CTLR", regs["GITS_CTLR"])
        if err:
            what = f"ITS {idx}: writing GITS_CTLR failed ({R.error_name(err)})"
            _step_failed(fail, what, f"its{idx}.GITS_CTLR", err, off, path)
    return vm


def build_vm(
    img: _Image,
    path: StrPath | None = None,
    *,
    restore: bool = True,
    budget: "Budget | None" = None,
    kernel: str | None = None,
) -> "VM":
    """A fresh VM from a parsed image, restored in KVM's order (see module doc).

    With restore=False only the VM, its ITSes and guest memory are set up (for inspection).
    budget: the VM's allocation budget (gictools.model.budget.Budget; None = the default).
    """
    vm = _create_vm(img, path, budget, kernel)
    for gpa, data, off in img.mem:  # 1. guest memory
        _write_run(vm, gpa, data, off, path)
    if not restore:
        return vm
    return _restore_state(vm, img, path)


def load_image_bytes(
    data: bytes,
    path: StrPath | None = None,
    *,
    budget: "Budget | None" = None,
    kernel: str | None = None,
) -> "VM":
    return build_vm(parse_image(data, path), path, budget=budget, kernel=kernel)


def stream_vm(
    src: ImageSource,
    path: StrPath | None = None,
    *,
    restore: bool = True,
    budget: "Budget | None" = None,
    fail: "StepFailures | None" = None,
    progress: Callable[[int, int], None] | None = None,
    kernel: str | None = None,
    verify_checksum: bool = True,
) -> "tuple[VM, _Image]":
    """load_image's streaming core: (vm, img) with img.mem left empty; memory runs go
    straight into the VM as they are decoded (bounded by one record, whatever the size).
    fail: a StepFailures to run the restore sequence in inspect mode.
    progress(done, total): file bytes restored so far, after each memory run."""
    img = _Image()
    state: dict[str, VM] = {}
    size = 0

    def on_mem(gpa: int, data: bytes, off: int) -> None:
        vm = state.get("vm")
        if vm is None:
            vm = state["vm"] = _create_vm(img, path, budget, kernel)
        _write_run(vm, gpa, data, off, path)
        if progress is not None:
            progress(min(off + len(data), size), size)

    f, size = _open_source(src, path)
    with f:
        n = _check_header(f, size, path, verify_checksum)
        f.seek(HEADER_SIZE)
        _parse_records(f, n, path, img, on_mem)
    vm = state.get("vm") or _create_vm(img, path, budget, kernel)
    if progress is not None:
        progress(size, size)
    if restore:
        _restore_state(vm, img, path, fail)
    return vm, img


def load_image(path: StrPath, *, budget: "Budget | None" = None) -> "VM":
    """A fresh VM restored from the image at path; ImageError on a malformed file (with a
    byte offset) or a failing restore step (with the step and KVM's errno).

    The file is read twice in 1 MiB chunks (checksum, then records): memory use is the
    restored VM plus one record, however large the image."""
    return stream_vm(path, path, budget=budget)[0]


def is_image(path: StrPath) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


# --- raw dumps (QEMU pmemsave) -------------------------------------------------------------------

_RAW_CHUNK = 1 << 20


def save_raw(vm: "VM", path: StrPath, base: int, size: int) -> int:
    """Write guest memory [base, base+size) as a flat binary, as QEMU's pmemsave does."""
    if size < 0 or not vm.memory.is_ram(base, size):
        raise ImageError(f"range {base:#x}+{size:#x} is not inside guest RAM", path=path)

    def chunks() -> Iterator[bytes]:
        pos = 0
        while pos < size:
            n = min(_RAW_CHUNK, size - pos)
            yield vm.memory.read(base + pos, n)
            pos += n

    _atomic_write(path, chunks())
    return size


def load_raw(vm: "VM", path: StrPath, base: int) -> int:
    """Load a flat binary into guest memory at base; returns the number of bytes."""
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise ImageError(f"cannot read: {e.strerror}", path=path) from None
    if not vm.memory.is_ram(base, size):
        # the file offset of the first byte that falls outside RAM
        lo, hi = 0, size
        while lo < hi:
            mid = (lo + hi) // 2
            if vm.memory.is_ram(base, mid + 1):
                lo = mid + 1
            else:
                hi = mid
        raise ImageError(f"{size} bytes at {base:#x} do not fit in guest RAM", offset=lo, path=path)
    with open(path, "rb") as f:
        pos = 0
        while True:
            chunk = f.read(_RAW_CHUNK)
            if not chunk:
                break
            vm.memory.write(base + pos, chunk)
            pos += len(chunk)
    return size
