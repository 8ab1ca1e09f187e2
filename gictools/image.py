"""Guest-memory images (versioned, checksummed) and raw memory dumps: the only memory<->file code.

Image file layout (all integers little-endian):

    offset 0   magic   b"GICTIMG\\0"                      8 bytes
    offset 8   major, minor version                      u16, u16   (this is 1.0)
    offset 12  reserved, 0                               u32
    offset 16  body length N                             u64
    offset 24  body: a sequence of msgpack records       N bytes
    offset 24+N  SHA-256 of bytes [0, 24+N)              32 bytes

Body records, in this order (each a msgpack array, element 0 a tag string):

    ["vm", {"vcpus", "vcpu_ids", "kernel", "memory": [[base, size], ...], "cache"}]   once, first
    ["redist", vcpu, GICR_CTLR, GICR_PROPBASER, GICR_PENDBASER]                         per vCPU
    ["its", index, base, GITS_CTLR, GITS_IIDR, GITS_CBASER, GITS_CREADR, GITS_CWRITER,
            [GITS_BASER0 .. GITS_BASER7]]                                               per ITS
    ["mem", gpa, data]          runs of non-zero pages, ascending, page-aligned, inside RAM
    ["end", number of records before it]

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

import msgpack

from gictools import regs as R
from gictools.errors import ConfigError, ImageError
from gictools.model.memory import PAGE_SIZE
from gictools.outputs import write_atomic as _atomic_write

MAGIC = b"GICTIMG\0"
VERSION = (1, 0)
_HEADER = struct.Struct("<8sHHIQ")
HEADER_SIZE = _HEADER.size  # 24
DIGEST_SIZE = 32
MAX_RUN = 16 << 20  # bytes per "mem" record
ITS_REGS = ("GITS_CTLR", "GITS_IIDR", "GITS_CBASER", "GITS_CREADR", "GITS_CWRITER")
REDIST_REGS = ("GICR_CTLR", "GICR_PROPBASER", "GICR_PENDBASER")


# --- writing -----------------------------------------------------------------------------------


def flush_tables(vm):
    """What userspace runs before migrating RAM: SAVE_PENDING_TABLES, then each ITS's
    SAVE_TABLES. A failure raises ImageError(step=..., errno=...)."""
    err = vm.save_pending_tables()
    if err:
        raise ImageError(
            "KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES failed", step="save_pending_tables", errno=err
        )
    for its in vm.itses:
        err = its.save_tables()
        if err:
            raise ImageError(
                f"KVM_DEV_ARM_ITS_SAVE_TABLES failed on ITS {its.index}",
                step=f"its{its.index}.save_tables",
                errno=err,
            )


def _memory_runs(mem):
    """(gpa, bytes) runs of consecutive non-zero pages, each at most MAX_RUN bytes."""
    start, buf = None, bytearray()
    for gpa, data in mem.nonzero_pages():
        if start is not None and gpa == start + len(buf) and len(buf) < MAX_RUN:
            buf += data
            continue
        if start is not None:
            yield start, bytes(buf)
        start, buf = gpa, bytearray(data)
    if start is not None:
        yield start, bytes(buf)


def dump_image(vm, *, flush: bool = True) -> bytes:
    """The image of vm as bytes (see save_image)."""
    if flush:
        flush_tables(vm)
    body = io.BytesIO()
    pk = msgpack.Packer(use_bin_type=True)
    n = 0

    def rec(obj):
        nonlocal n
        body.write(pk.pack(obj))
        n += 1

    rec(
        [
            "vm",
            {
                "vcpus": vm.nr_vcpus,
                "vcpu_ids": list(vm.vcpu_ids),
                "kernel": vm.kernel.name,
                "memory": [[b, s] for b, s in vm.memory.slots],
                "cache": vm.cache_policy,
            },
        ]
    )
    for v in range(vm.nr_vcpus):
        rec(["redist", v] + [vm.read_redist_reg(v, r) for r in REDIST_REGS])
    for its in vm.itses:
        rec(
            ["its", its.index, its.base]
            + [its.read_reg(r) for r in ITS_REGS]
            + [[its.read_reg(f"GITS_BASER{i}") for i in range(R.GITS_BASER_NR_REGS)]]
        )
    for gpa, data in _memory_runs(vm.memory):
        rec(["mem", gpa, data])
    rec(["end", n])
    b = body.getvalue()
    head = _HEADER.pack(MAGIC, VERSION[0], VERSION[1], 0, len(b))
    return head + b + hashlib.sha256(head + b).digest()


def save_image(vm, path, *, flush: bool = True) -> int:
    """Write vm's image to path atomically (temp file + rename); returns its size in bytes.

    With flush (the default) the KVM save sequence runs first, as userspace does before
    migrating: SAVE_PENDING_TABLES, then SAVE_TABLES on every ITS (these write guest memory).
    """
    data = dump_image(vm, flush=flush)
    _atomic_write(path, [data])
    return len(data)


# --- reading ---------------------------------------------------------------------------------


class _Image:
    """A parsed, validated image: config, registers, memory runs (no VM built yet)."""

    def __init__(self):
        self.vm = None
        self.redists = {}
        self.itses = []
        self.mem = []  # (gpa, data, file offset)


def _int(v, what, off, path, lo=0, hi=(1 << 64) - 1):
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise ImageError(
            f"{what}: expected an integer in [{lo:#x}, {hi:#x}], got {v!r}", offset=off, path=path
        )
    return v


def parse_image(data: bytes, path=None) -> _Image:
    """Check and decode an image; malformed input raises ImageError with a byte offset."""
    if len(data) < HEADER_SIZE + DIGEST_SIZE:
        raise ImageError(f"file too short for an image ({len(data)} bytes)", offset=0, path=path)
    magic, major, minor, _res, n = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise ImageError("not a gictools image (bad magic)", offset=0, path=path)
    if major != VERSION[0]:
        raise ImageError(
            f"image version {major}.{minor} not supported (this reads {VERSION[0]}.x)",
            offset=8,
            path=path,
        )
    if HEADER_SIZE + n + DIGEST_SIZE != len(data):
        raise ImageError(
            f"body length {n} does not match the file size {len(data)}", offset=16, path=path
        )
    end = HEADER_SIZE + n
    if hashlib.sha256(data[:end]).digest() != data[end:]:
        raise ImageError("checksum mismatch (file corrupt or truncated)", offset=end, path=path)
    img = _Image()
    up = msgpack.Unpacker(
        raw=False,
        max_bin_len=MAX_RUN,
        max_str_len=1 << 16,
        max_array_len=1 << 16,
        max_map_len=64,
        strict_map_key=True,
    )
    up.feed(data[HEADER_SIZE:end])
    count = 0
    last_gpa = -1
    ended = False
    while True:
        off = HEADER_SIZE + up.tell()
        try:
            rec = up.unpack()
        except msgpack.OutOfData:
            break
        except (ValueError, TypeError, msgpack.UnpackException) as e:
            raise ImageError(f"undecodable record: {e}", offset=off, path=path) from None
        if ended:
            raise ImageError("data after the end record", offset=off, path=path)
        if not isinstance(rec, list) or not rec or not isinstance(rec[0], str):
            raise ImageError("a record must be an array starting with a tag", offset=off, path=path)
        tag = rec[0]
        if count == 0 and tag != "vm":
            raise ImageError("the first record must be 'vm'", offset=off, path=path)
        if tag == "vm":
            if count != 0 or len(rec) != 2 or not isinstance(rec[1], dict):
                raise ImageError("bad or repeated 'vm' record", offset=off, path=path)
            c = rec[1]
            try:
                vcpus = _int(c["vcpus"], "vm.vcpus", off, path, 1, 4096)
                ids = [_int(i, "vm.vcpu_ids", off, path, 0, 0xFFFF_FFFF) for i in c["vcpu_ids"]]
                slots = [
                    (
                        _int(s[0], "vm.memory base", off, path),
                        _int(s[1], "vm.memory size", off, path),
                    )
                    for s in c["memory"]
                ]
                kernel, cache = c["kernel"], c["cache"]
                if not isinstance(kernel, str) or not isinstance(cache, str):
                    raise TypeError("kernel and cache must be strings")
            except (KeyError, TypeError, IndexError) as e:
                raise ImageError(f"bad 'vm' record: {e!r}", offset=off, path=path) from None
            img.vm = {
                "vcpus": vcpus,
                "vcpu_ids": ids,
                "memory": slots,
                "kernel": kernel,
                "cache": cache,
            }
        elif tag == "redist":
            if len(rec) != 5:
                raise ImageError("bad 'redist' record", offset=off, path=path)
            v = _int(rec[1], "redist vCPU", off, path, 0, img.vm["vcpus"] - 1)
            if v in img.redists:
                raise ImageError(f"vCPU {v}'s redistributor given twice", offset=off, path=path)
            img.redists[v] = [_int(x, r, off, path) for x, r in zip(rec[2:], REDIST_REGS)]
        elif tag == "its":
            if len(rec) != 9 or not isinstance(rec[8], list) or len(rec[8]) != R.GITS_BASER_NR_REGS:
                raise ImageError("bad 'its' record", offset=off, path=path)
            idx = _int(rec[1], "ITS index", off, path, len(img.itses), len(img.itses))
            base = _int(rec[2], "ITS base", off, path)
            regs = dict(zip(ITS_REGS, (_int(x, r, off, path) for x, r in zip(rec[3:8], ITS_REGS))))
            regs["GITS_BASER"] = [_int(x, "GITS_BASER", off, path) for x in rec[8]]
            img.itses.append((idx, base, regs, off))
        elif tag == "mem":
            if len(rec) != 3 or not isinstance(rec[2], bytes):
                raise ImageError("bad 'mem' record", offset=off, path=path)
            gpa = _int(rec[1], "mem gpa", off, path)
            if gpa % PAGE_SIZE or gpa <= last_gpa:
                raise ImageError(
                    f"memory run at {gpa:#x} is unaligned or out of order", offset=off, path=path
                )
            last_gpa = gpa + len(rec[2]) - 1
            img.mem.append((gpa, rec[2], off))
        elif tag == "end":
            if len(rec) != 2 or rec[1] != count:
                raise ImageError(
                    f"end record counts {rec[1:]!r}, the image has {count} records",
                    offset=off,
                    path=path,
                )
            ended = True
        else:
            raise ImageError(f"unknown record tag {tag!r}", offset=off, path=path)
        count += 1
    if not ended:
        raise ImageError("no end record (truncated body)", offset=end, path=path)
    if sorted(img.redists) != list(range(img.vm["vcpus"])):
        raise ImageError(
            "image lacks a redistributor record for some vCPU", offset=HEADER_SIZE, path=path
        )
    return img


def build_vm(img: _Image, path=None, *, restore: bool = True):
    """A fresh VM from a parsed image, restored in KVM's order (see module doc).

    With restore=False only the VM, its ITSes and guest memory are set up (for inspection).
    """
    from gictools.model.vm import VM

    c = img.vm
    try:
        vm = VM(
            c["vcpus"],
            vcpu_ids=c["vcpu_ids"],
            kernel=c["kernel"],
            memory=c["memory"],
            cache=c["cache"],
        )
        for _idx, base, _regs, _off in img.itses:
            vm.add_its(base)
    except (ConfigError, ValueError) as e:
        raise ImageError(
            f"cannot create the VM: {e}", step="create", offset=HEADER_SIZE, path=path
        ) from None
    # 1. guest memory
    for gpa, data, off in img.mem:
        if not vm.memory.is_ram(gpa, len(data)):
            raise ImageError(
                f"memory run {gpa:#x}+{len(data):#x} is outside guest RAM",
                step="memory",
                offset=off,
                path=path,
            )
        vm.memory.write(gpa, data)
    if not restore:
        return vm
    # 2. redistributors: PROPBASER, PENDBASER, then GICR_CTLR (imports pending tables)
    for v in range(vm.nr_vcpus):
        ctlr, prop, pend = img.redists[v]
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
                raise ImageError(
                    f"ITS {idx}: writing {name} = {value:#x} failed",
                    step=f"its{idx}.{name}",
                    errno=err,
                    offset=off,
                    path=path,
                )
        err = its.restore_tables()
        if err:
            raise ImageError(
                f"ITS {idx}: KVM_DEV_ARM_ITS_RESTORE_TABLES failed ({R.error_name(err)})",
                step=f"its{idx}.restore_tables",
                errno=err,
                offset=off,
                path=path,
            )
        err = its.write_reg("GITS_CTLR", regs["GITS_CTLR"])
        if err:
            raise ImageError(
                f"ITS {idx}: writing GITS_CTLR failed",
                step=f"its{idx}.GITS_CTLR",
                errno=err,
                offset=off,
                path=path,
            )
    return vm


def load_image_bytes(data: bytes, path=None):
    return build_vm(parse_image(data, path), path)


def load_image(path):
    """A fresh VM restored from the image at path; ImageError on a malformed file (with a
    byte offset) or a failing restore step (with the step and KVM's errno)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ImageError(f"cannot read: {e.strerror}", path=path) from None
    return load_image_bytes(data, path)


def is_image(path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


# --- raw dumps (QEMU pmemsave) -------------------------------------------------------------------

_RAW_CHUNK = 1 << 20


def save_raw(vm, path, base: int, size: int) -> int:
    """Write guest memory [base, base+size) as a flat binary, as QEMU's pmemsave does."""
    if size < 0 or not vm.memory.is_ram(base, size):
        raise ImageError(f"range {base:#x}+{size:#x} is not inside guest RAM", path=path)

    def chunks():
        pos = 0
        while pos < size:
            n = min(_RAW_CHUNK, size - pos)
            yield vm.memory.read(base + pos, n)
            pos += n

    _atomic_write(path, chunks())
    return size


def load_raw(vm, path, base: int) -> int:
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
