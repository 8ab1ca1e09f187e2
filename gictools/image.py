"""Guest-memory images (versioned, checksummed) and raw memory dumps: the only memory<->file code.

Saving and restoring live here; the file layout, the record schema (RECORDS) and the checking
parser are in gictools/imageformat.py, whose public names this module re-exports.

Both directions stream: save_image writes the file as
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
import os
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import msgpack

from gictools import regs as R
from gictools.errors import ConfigError, ImageError, StrPath
from gictools.imageformat import (  # noqa: F401  (the format's names, re-exported)
    _HEADER,
    DIGEST_SIZE,
    HEADER_SIZE,
    ITS_REGS,
    MAGIC,
    MAX_RUN,
    RECORDS,
    REDIST_REGS,
    VERSION,
    ImageSource,
    _check_header,
    _Image,
    _open_source,
    _parse_records,
    _record,
    is_image,
    parse_image,
)
from gictools.model.memory import PAGE_SIZE, GuestMemory, MemoryBudgetExceeded
from gictools.outputs import write_atomic as _atomic_write

if TYPE_CHECKING:
    from gictools.abi.v0 import Inspection
    from gictools.model.budget import Budget
    from gictools.model.vm import VM

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


# --- restoring -------------------------------------------------------------------------------


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
