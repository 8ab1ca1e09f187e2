"""Traces and images as op scripts (one case each), with probes of the state at the end.

A trace's records become ops as KVM would see them from userspace: commands go through the
queue in guest memory (`cmd`: KVM processes it after the CWRITER write), MSIs through
KVM_SIGNAL_MSI, register, memory and control records as they are. An image is restored in
arm-vgic-its.rst's order. The probes that follow (registers, an MSI per mapped event, SAVE_TABLES
and the tables' bytes, SAVE_PENDING_TABLES and the pending tables) are placed where the model's
state says the tables are; where the kernel disagrees, the register reads already differ.
"""

from __future__ import annotations

import re

from gictools import regs as R
from gictools.errors import GictoolsError, StrPath
from gictools.kvm import ops as O
from gictools.kvm.corpus import ITS_READBACK, RD_READBACK
from gictools.kvm.model import ModelRunner
from gictools.model.its import baser_table_base

MAX_OPS = 2_000_000  # lines of one converted input (kvmcheck runs them all in one process)
MAX_PROBE_MSIS = 4096
MEMW_CHUNK = 64 << 10  # bytes of guest memory per memw line
ITS_64BIT = range(
    R.GITS_TYPER, R.GITS_IDREGS_BASE
)  # the ITS registers userspace accesses as 64 bits
GUEST_WI = (
    R.GITS_IIDR,
    R.GITS_TYPER,
    R.GITS_CREADR,
)  # guest writes KVM ignores (its_mmio_write_wi)


# (distributor, redistributors) bases tried in turn: QEMU virt's, then two free ranges below RAM
VGIC_LAYOUTS = (
    (O.DIST_BASE, O.REDIST_BASE),
    (0x0A00_0000, 0x0A10_0000),
    (0x2000_0000, 0x2010_0000),
)


_NONZERO = re.compile(rb"[^\x00]+(?:\x00{1,63}[^\x00]+)*")  # runs split at >= 64 zero bytes


class ConvertError(GictoolsError):
    """An input kvm-check cannot express as an op script (says which and where)."""


class _Out:
    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: list[str] = []

    def add(self, name: str, *args: int | bytes) -> None:
        if len(self.lines) >= MAX_OPS:
            raise ConvertError(f"{self.name}: more than {MAX_OPS} operations")
        self.lines.append(O.line(name, *args))

    def memw(self, gpa: int, data: bytes) -> None:
        """The non-zero runs only (a new VM's memory is zero), in lines of MEMW_CHUNK bytes."""
        for m in _NONZERO.finditer(bytes(data)):
            run = m.group()
            for i in range(0, len(run), MEMW_CHUNK):
                self.add("memw", gpa + m.start() + i, run[i : i + MEMW_CHUNK])


def _vm_line(out: _Out, case_id: int, vcpus: int, ids: list[int], memory, its_bases) -> None:
    if list(ids) != list(range(vcpus)):
        raise ConvertError(
            f"{out.name}: vcpu_ids other than 0..{vcpus - 1} (KVM's vcpu_id = index here)"
        )
    if vcpus > O.MAX_VCPUS:
        raise ConvertError(f"{out.name}: {vcpus} vCPUs (kvm-check runs at most {O.MAX_VCPUS})")
    slots = [(0x4000_0000, 0x1_0000_0000)] if memory is None else [tuple(s) for s in memory]
    if len(slots) != 1:
        raise ConvertError(f"{out.name}: {len(slots)} RAM slots (kvm-check uses one memslot)")
    base, size = slots[0]
    if size > O.MAX_MEM or (base | size) & 0xFFFF:
        raise ConvertError(
            f"{out.name}: RAM slot {base:#x}+{size:#x} (64 KiB aligned, <= {O.MAX_MEM:#x})"
        )
    if len(its_bases) != 1:
        raise ConvertError(f"{out.name}: {len(its_bases)} ITSes (kvm-check drives exactly one)")
    its = its_bases[0]
    for dist, redist in VGIC_LAYOUTS:  # the first placement of the vGIC frames that fits
        frames = [(dist, 0x1_0000), (redist, 0x2_0000 * vcpus), (its, 0x2_0000), (base, size)]
        if all(
            not (a < b + m and b < a + n)
            for i, (a, n) in enumerate(frames)
            for b, m in frames[i + 1 :]
        ):
            out.add("vm", case_id, vcpus, base, size, dist, redist, its, 0)
            return
    raise ConvertError(
        f"{out.name}: no room for the vGIC frames beside the ITS at {its:#x} and RAM"
    )


def case_from_trace(path: StrPath, case_id: int = 0, notes: list[str] | None = None) -> O.Case:
    """The trace as one case. ACK records (a vCPU taking an LPI) need a running vCPU, which
    kvmcheck has not: they are left out of the script, for the kernel and the model alike, and
    counted in notes; EXPECT records are the model's own assertions, not operations."""
    from gictools.trace import format as F
    from gictools.trace.reader import TraceReader

    out = _Out(str(path))
    acks = 0
    with TraceReader(path) as rd:
        vm = rd.header["vm"]
        _vm_line(
            out,
            case_id,
            vm["vcpus"],
            vm["vcpu_ids"],
            vm.get("memory"),
            [i["base"] for i in vm["itses"]],
        )
        for n, rec in enumerate(rd, start=1):
            tag = rec[0]
            where = f"{path}: record {n}"
            if tag == F.MSI:
                out.add("msi", rec[4], rec[5])
            elif tag == F.MSI_BLOCK:
                for d, e in zip(rec[4].tolist(), rec[5].tolist()):
                    out.add("msi", d, e)
            elif tag == F.COMMAND:
                out.add("cmd", bytes(rec[4]))
            elif tag == F.MEM:
                out.memw(rec[3], rec[4])
            elif tag == F.REG:
                _reg(out, rec, where)
            elif tag == F.CTRL:
                op = {
                    "save_tables": "save",
                    "restore_tables": "restore",
                    "reset": "itsreset",
                    "save_pending_tables": "savep",
                }.get(rec[3])
                if op is None:
                    raise ConvertError(f"{where}: CTRL {rec[3]} has no KVM counterpart here")
                out.add(op)
            elif tag == F.ACK:
                acks += 1
    if acks and notes is not None:
        notes.append(f"{path}: {acks} ACK records left out (they need a running vCPU)")
    return _finish(out, case_id, "trace")


def _reg(out: _Out, rec: tuple, where: str) -> None:
    _, _t, _inj, frame, index, off, size, value, is_write = rec
    if frame == "redist":
        halves = (
            [(off, value)]
            if size == 4
            else [
                (off, None if value is None else value & 0xFFFF_FFFF),
                (off + 4, None if value is None else value >> 32),
            ]
        )
        for o, v in halves:
            if is_write:
                assert v is not None  # a REG write carries its value (the reader checks)
                out.add("rd_w", index, o, v)
            else:
                out.add("rd_r", index, o)
        return
    if index != 0:
        raise ConvertError(f"{where}: ITS {index} (kvm-check drives ITS 0 only)")
    if frame == "its" and is_write and off & ~7 in GUEST_WI:
        return  # a guest write KVM ignores; userspace's would not be ignored
    if off in ITS_64BIT and size != 8 and not is_write:
        out.add("its_r", off & ~7)  # the whole register: the half the guest read is in it
        return
    if off in ITS_64BIT and size != 8:
        raise ConvertError(
            f"{where}: {size}-byte write to a 64-bit ITS register (userspace writes all 64 bits)"
        )
    if is_write:
        out.add("its_w", off, value)
    else:
        out.add("its_r", off)


def case_from_image(path: StrPath, case_id: int = 0) -> O.Case:
    from gictools.image import ITS_REGS, parse_image

    img = parse_image(path, path)
    out = _Out(str(path))
    cfg = img.vm
    vcpus = cfg["vcpus"]
    _vm_line(
        out,
        case_id,
        vcpus,
        cfg.get("vcpu_ids") or list(range(vcpus)),
        cfg.get("memory"),
        [base for _i, base, _r, _o in img.itses],
    )
    for gpa, data, _off in img.mem:
        out.memw(gpa, data)
    for v in range(vcpus):  # PROPBASER, PENDBASER, then GICR_CTLR (arm-vgic-its.rst)
        _ctlr, prop, pend = img.redists[v]
        for off, val in ((R.GICR_PROPBASER, prop), (R.GICR_PENDBASER, pend)):
            out.add("rd_w", v, off, val & 0xFFFF_FFFF)
            out.add("rd_w", v, off + 4, val >> 32)
    for v in range(vcpus):
        out.add("rd_w", v, R.GICR_CTLR, img.redists[v][0] & 0xFFFF_FFFF)
    _idx, _base, regs, _off = img.itses[0]
    assert "GITS_CBASER" in ITS_REGS
    out.add("its_w", R.GITS_CBASER, regs["GITS_CBASER"])
    out.add("its_w", R.GITS_IIDR, regs["GITS_IIDR"])
    for i, v in enumerate(regs["GITS_BASER"]):
        out.add("its_w", R.GITS_BASER + 8 * i, v)
    out.add("its_w", R.GITS_CREADR, regs["GITS_CREADR"])
    out.add("its_w", R.GITS_CWRITER, regs["GITS_CWRITER"])
    out.add("restore")
    out.add("its_w", R.GITS_CTLR, regs["GITS_CTLR"])
    return _finish(out, case_id, "image")


def _finish(out: _Out, case_id: int, kind: str) -> O.Case:
    """Append the probes, placed by the model's state after the input (on the default kernel:
    only addresses are taken from it)."""
    runner = ModelRunner("6.12")
    runner.run(out.lines)
    vm, its = runner.vm, runner.its
    if vm is None or its is None:
        return O.Case(case_id, kind, out.lines)
    for off in ITS_READBACK:
        out.add("its_r", off)
    for v in range(vm.nr_vcpus):
        for off in (R.GICR_CTLR, *RD_READBACK):
            out.add("rd_r", v, off)
    pairs = sorted((d.device_id, e) for d in its.devices.values() for e in d.ites)
    for d, e in pairs[:MAX_PROBE_MSIS]:
        out.add("msi", d, e)
    out.add("save")
    mem = vm.memory
    for n in (0, 1):
        b = its.baser[n]
        if b >> 63:
            size = min(((b & 0xFF) + 1) * 0x1_0000, O.MAX_MEMR)
            base = baser_table_base(b)
            if mem.is_ram(base, size):
                out.add("memr", base, size)
    for dev in sorted(its.devices.values(), key=lambda x: x.device_id):
        size = min(max(8 << dev.num_eventid_bits, 8), O.MAX_MEMR)
        if mem.is_ram(dev.itt_addr, size) and not dev.itt_addr & 7:
            out.add("memr", dev.itt_addr, size)
    out.add("savep")
    nbytes = min(vm.max_lpis_propbaser() // 8, O.MAX_MEMR)
    for rd in vm.redists:
        base = rd.pending_table()
        if mem.is_ram(base, nbytes):
            out.add("memr", base, nbytes)
    return O.Case(case_id, kind, out.lines)


def cases_from_inputs(paths: list[StrPath], notes: list[str] | None = None) -> list[O.Case]:
    from gictools.image import is_image

    return [
        case_from_image(p, i) if is_image(p) else case_from_trace(p, i, notes)
        for i, p in enumerate(paths)
    ]
