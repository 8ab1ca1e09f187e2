"""`gictools import kvm`: a record.sh log (real KVM, kernel tracing) as a gictools trace.

Two passes over the log. The first learns the VM from its creation (KVM_CREATE_VCPU, memory slots,
the ITS and redistributor addresses set through the device attributes); the second writes what the
guest and the VMM did, in the form a replay re-executes:

- a guest MMIO write to an ITS or a redistributor frame (kvm:kvm_mmio) -> REG "its" / "redist";
- a userspace ITS register write (KVM_DEV_ARM_VGIC_GRP_ITS_REGS) -> REG "its-user"; a userspace
  redistributor register write -> REG "redist" (32-bit, as KVM's uaccess);
- save/restore tables, reset, save pending tables -> CTRL with KVM's return value, and an EXPECT ctrl;
- an MSI (vgic_its_inject_msi) -> MSI, and an EXPECT msi with KVM_SIGNAL_MSI's return value;
- every guest-memory read KVM made while handling one of these (kvm_read_guest: the command queue
  entries, LPI configuration bytes, pending bits, the tables a restore walks) -> MEM records placed
  *before* that operation, so the replay reads the bytes KVM read. A guest writes its RAM without
  KVM seeing it; what KVM read is what mattered.

An operation's reads are the kvm_read_guest calls on the same thread between its start and its end
(its return probe, or for an MMIO write, the thread's next event: KVM handles the write, commands
included, before the vCPU runs on).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from gictools import regs as R
from gictools.errors import ImportFormatError, StrPath
from gictools.trace.kvm.logparse import Event, LogInfo, read_log
from gictools.trace.kvm.stats import ImportStats
from gictools.trace.writer import TraceWriter

# uapi numbers (include/uapi/linux/kvm.h, arch/arm64/include/uapi/asm/kvm.h)
KVM_CREATE_VCPU = 0xAE41
KVM_SET_USER_MEMORY_REGION = 0x4020AE46
KVM_SET_USER_MEMORY_REGION2 = 0x40A0AE49
KVM_CREATE_DEVICE = 0xC00CAEE0
GRP_ADDR, GRP_CTRL, GRP_REDIST_REGS, GRP_ITS_REGS = 0, 4, 5, 8
KVM_VGIC_V3_ADDR_TYPE_REDIST, KVM_VGIC_V3_ADDR_TYPE_REDIST_REGION = 3, 5
KVM_VGIC_ITS_ADDR_TYPE = 4
ITS_CTRL = {1: "save_tables", 2: "restore_tables", 4: "reset"}  # KVM_DEV_ARM_ITS_*
KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES = 3
ITS_FRAME = 0x20000  # KVM_VGIC_V3_ITS_SIZE: control + translation frames
REDIST_FRAME = 0x20000  # KVM_VGIC_V3_REDIST_SIZE: RD_base + SGI_base
RETURNING = ("msi", "its_attr", "v3_attr")  # operations that end with a return probe
KEEP_COMMANDS = 65536
WINDOW = 256  # bytes of the caller's stack record.sh reads where return probes lack $argN
EXPECT_MODES = ("all", "errors", "none")


@dataclass
class VmConfig:
    """The VM as its creation showed it (pass 1)."""

    vcpu_ids: list[int] = field(default_factory=list)
    memslots: dict[int, tuple[int, int]] = field(default_factory=dict)  # slot -> (gpa, size)
    its_devs: list[int] = field(default_factory=list)  # kvm_device pointers, in ITS order
    its_bases: dict[int, int] = field(default_factory=dict)  # dev -> base
    redist_regions: list[tuple[int, int, int]] = field(default_factory=list)  # (index, base, count)


def _learn(events) -> list[VmConfig]:
    """Pass 1: each VM's shape from its creation. VM 0 is what precedes any KVM_CREATE_VM (a log
    attached mid-life), VM k the k-th KVM_CREATE_VM's."""
    vms = [VmConfig()]
    for ev in events:
        f = ev.f
        if ev.name == "create_vm":
            vms.append(VmConfig())
            continue
        vm = vms[-1]
        if ev.name == "vm_ioctl":
            cmd = f.get("cmd")
            if cmd == KVM_CREATE_VCPU:
                vm.vcpu_ids.append(f.get("arg", 0) & 0xFFFF_FFFF)
            elif cmd in (KVM_SET_USER_MEMORY_REGION, KVM_SET_USER_MEMORY_REGION2):
                slot = f.get("u0", 0) & 0xFFFF_FFFF
                gpa, size = f.get("u8", 0), f.get("u16", 0)
                if size:  # a deletion (size 0, e.g. at VM teardown) keeps the slot: the
                    vm.memslots[slot] = (gpa, size)  # header holds all RAM the VM ever had
        elif ev.name == "its_attr" and f.get("grp") == GRP_ADDR:
            if f.get("attr") == KVM_VGIC_ITS_ADDR_TYPE:
                dev = f.get("dev", 0)
                if dev not in vm.its_bases:
                    vm.its_devs.append(dev)
                vm.its_bases[dev] = f.get("val", 0)
        elif ev.name == "v3_attr" and f.get("grp") == GRP_ADDR:
            val = f.get("val", 0)
            if f.get("attr") == KVM_VGIC_V3_ADDR_TYPE_REDIST:
                vm.redist_regions = [(0, val, 0)]
            elif f.get("attr") == KVM_VGIC_V3_ADDR_TYPE_REDIST_REGION:
                # KVM_VGIC_V3_RDIST_{INDEX,BASE,COUNT}_MASK: bits 11:0, 51:16, 63:52
                vm.redist_regions.append((val & 0xFFF, val & 0x000F_FFFF_FFFF_0000, val >> 52))
    return vms


class _Op:
    """One operation in progress on a thread, with the guest-memory reads made inside it."""

    __slots__ = ("kind", "t_ns", "f", "reads", "lpi")

    def __init__(self, kind: str, t_ns: int, f: dict[str, Any]) -> None:
        self.kind, self.t_ns, self.f = kind, t_ns, f
        self.reads: list[tuple[int, bytes]] = []
        self.lpi: tuple[int, int] | None = None  # (INTID, vCPU) made pending, where observed


class _Importer:
    def __init__(
        self,
        w: TraceWriter,
        vm: VmConfig,
        stats: ImportStats,
        expect: str,
        path: StrPath,
        want: int,
    ) -> None:
        self.w, self.vm, self.stats, self.expect, self.path = w, vm, stats, expect, path
        self.want, self.vm_index = want, 0
        self.t0: int | None = None
        self.ops: dict[int, _Op] = {}
        self.reads: dict[int, dict[str, int]] = {}  # tid -> open kvm_read_guest
        self.injectors: dict[int, int] = {}
        self.its_by_base = {vm.its_bases[d]: i for i, d in enumerate(vm.its_devs)}
        self.its_by_dev = {d: i for i, d in enumerate(vm.its_devs)}
        self.cbaser: dict[int, int] = {}
        self.redist: list[tuple[int, int]] = []  # (base, vcpu index) per redistributor frame
        nxt = 0
        for _, base, count in sorted(vm.redist_regions):
            n = count if count else len(vm.vcpu_ids) - nxt
            for k in range(max(0, min(n, len(vm.vcpu_ids) - nxt))):
                self.redist.append((base + k * REDIST_FRAME, nxt + k))
            nxt += max(0, n)
        self.mpidr_to_vcpu = {}
        for i, vid in enumerate(vm.vcpu_ids):  # reset_mpidr: Aff0 = id[3:0], Aff1 = id[11:4], ...
            aff = (vid & 0xF) | (((vid >> 4) & 0xFF) << 8) | (((vid >> 12) & 0xFF) << 16)
            self.mpidr_to_vcpu[aff] = i

    def t(self, ev: Event) -> int:
        if self.t0 is None:
            self.t0 = ev.t_ns
        return max(0, ev.t_ns - self.t0)

    def injector(self, tid: int) -> int:
        return self.injectors.setdefault(tid, len(self.injectors))

    # --- frames ------------------------------------------------------------------------------
    def its_frame(self, gpa: int) -> tuple[int, int] | None:
        for base, i in self.its_by_base.items():
            if base <= gpa < base + ITS_FRAME:
                return i, gpa - base
        return None

    def redist_frame(self, gpa: int) -> tuple[int, int] | None:
        for base, i in self.redist:
            if base <= gpa < base + REDIST_FRAME:
                return i, gpa - base
        return None

    # --- operations --------------------------------------------------------------------------
    def open(self, ev: Event, kind: str) -> None:
        prev = self.ops.get(ev.tid)
        if prev is not None and prev.kind in RETURNING:
            self.stats.unreturned += 1  # its return event is missing: no result to expect
        self.close(ev.tid)
        self.ops[ev.tid] = _Op(kind, self.t(ev), ev.f)

    def close(self, tid: int, ret: int | None = None) -> None:
        op = self.ops.pop(tid, None)
        if op is None:
            return
        inj = self.injector(tid)
        for gpa, data in op.reads:
            self.w.mem(gpa, data, t_ns=op.t_ns, injector=inj)
        getattr(self, "emit_" + op.kind)(op, ret, inj)

    def emit_mmio(self, op: _Op, ret: int | None, inj: int) -> None:
        f = op.f
        gpa, size, val = f["gpa"], f["len"], f["val"]
        if size not in (4, 8):
            self.stats.ignored["mmio write of odd size"] += 1
            return
        val &= (1 << (8 * size)) - 1
        its = self.its_frame(gpa)
        if its is not None:
            i, off = its
            if off >= 0x10000:  # translation frame: KVM ignores guest writes (no MSI)
                self.stats.ignored["guest write to the ITS translation frame"] += 1
                return
            if off == R.GITS_CBASER:
                self.cbaser[i] = val
            self.w.reg("its", i, off, size, val, True, t_ns=op.t_ns, injector=inj)
            self.stats.reg_writes += 1
            return
        rd = self.redist_frame(gpa)
        if rd is not None:
            if rd[1] >= 0x10000:  # SGI_base frame: SGIs/PPIs, not modelled
                self.stats.ignored["redistributor SGI-frame write"] += 1
                return
            self.w.reg("redist", rd[0], rd[1], size, val, True, t_ns=op.t_ns, injector=inj)
            self.stats.reg_writes += 1
            return
        self.stats.ignored["MMIO write outside the ITS and redistributors"] += 1

    def emit_its_attr(self, op: _Op, ret: int | None, inj: int) -> None:
        f = op.f
        i = self.its_by_dev.get(f.get("dev", 0))
        grp, attr = f.get("grp"), f.get("attr", 0)
        if i is None:
            self.stats.ignored["attribute of an ITS with no address"] += 1
            return
        if grp == GRP_CTRL and attr in ITS_CTRL:
            self.w.ctrl(ITS_CTRL[attr], i, ret, t_ns=op.t_ns, injector=inj)
            self.stats.ctrls += 1
            if ret is not None and self.expect == "all":
                self.w.expect("ctrl", {"ret": ret}, t_ns=op.t_ns, injector=inj)
        elif grp == GRP_ITS_REGS:
            if ret:  # KVM refused it: nothing changed (the errno is not a trace record)
                self.stats.ignored["refused userspace ITS register write"] += 1
                return
            off = attr & 0xFFFF_FFFF
            size = 4 if off < 8 or off >= R.GITS_IDREGS_BASE else 8
            val = f.get("val", 0) & ((1 << (8 * size)) - 1)
            if off == R.GITS_CBASER:
                self.cbaser[i] = val
            self.w.reg("its-user", i, off, size, val, True, t_ns=op.t_ns, injector=inj)
            self.stats.reg_writes += 1
        elif grp not in (GRP_ADDR, GRP_CTRL):
            self.stats.ignored[f"ITS attribute group {grp}"] += 1

    def emit_v3_attr(self, op: _Op, ret: int | None, inj: int) -> None:
        f = op.f
        grp, attr = f.get("grp"), f.get("attr", 0)
        if grp == GRP_CTRL and attr == KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES:
            self.w.ctrl("save_pending_tables", None, ret, t_ns=op.t_ns, injector=inj)
            self.stats.ctrls += 1
            if ret is not None and self.expect == "all":
                self.w.expect("ctrl", {"ret": ret}, t_ns=op.t_ns, injector=inj)
        elif grp == GRP_REDIST_REGS and not ret:
            vcpu = self.mpidr_to_vcpu.get(attr >> 32)
            if vcpu is None:
                self.stats.ignored["redistributor write for an unknown MPIDR"] += 1
                return
            off = attr & 0xFFFF_FFFF
            val = f.get("val", 0) & 0xFFFF_FFFF  # vgic_v3_attr_regs_access: u32 user accesses
            self.w.reg("redist", vcpu, off, 4, val, True, t_ns=op.t_ns, injector=inj)
            self.stats.reg_writes += 1
        elif grp not in (GRP_ADDR, GRP_CTRL, 3):  # 3: KVM_DEV_ARM_VGIC_GRP_NR_IRQS
            self.stats.ignored[f"vGICv3 attribute group {grp}"] += 1

    def emit_msi(self, op: _Op, ret: int | None, inj: int) -> None:
        f = op.f
        its = self.its_by_base.get((f.get("a", 0) & (2**64 - 1)) - R.GITS_TRANSLATER)
        if its is None:
            self.stats.ignored["MSI to a doorbell of no known ITS"] += 1
            return
        dev, ev = f.get("devid", 0) & 0xFFFF_FFFF, f.get("data", 0) & 0xFFFF_FFFF
        self.w.msi(its, dev, ev, t_ns=op.t_ns, injector=inj)
        self.stats.msis += 1
        self.stats.msi_results[ret] += 1
        if ret is not None and (self.expect == "all" or (self.expect == "errors" and ret != 1)):
            args = {"ret": ret}
            if op.lpi is not None and ret == 1:  # vgic_queue_irq_unlock's irq (BTF kernels)
                args["intid"], args["vcpu"] = op.lpi
                self.stats.msis_with_lpi += 1
            self.w.expect("msi", args, t_ns=op.t_ns, injector=inj)

    # --- guest-memory reads ------------------------------------------------------------------
    def read_done(self, ev: Event) -> None:
        rd = self.reads.pop(ev.tid, None)
        if rd is None:
            return
        f = ev.f
        if f.get("ret", 0):
            self.stats.reads_failed += 1
            return
        gpa, n = rd["gpa"], rd["len"]
        if gpa < 0 or n < 0 or gpa + min(n, 32) > 2**64:
            raise ImportFormatError(
                f"kvm_read_guest of {n} bytes at {gpa:#x}: beyond guest-physical space",
                line=rd["line"],
                path=self.path,
            )
        if "d0" in f:
            buf = b"".join(struct.pack("<Q", f.get(f"d{k}", 0) & (2**64 - 1)) for k in range(4))
            k = 0
        else:
            buf = b"".join(
                struct.pack("<Q", f.get(f"s{k}", 0) & (2**64 - 1)) for k in range(WINDOW // 8)
            )
            k = rd["data"] - rd["sp"]
        if n == 0:
            return
        if k < 0 or k + n > len(buf):
            got = buf[k:] if 0 <= k < len(buf) else b""
            self.stats.reads_unobserved += 1
            if not got:
                return
            n = len(got)
        data = buf[k : k + n]
        self.stats.mem_reads += 1
        op = self.ops.get(ev.tid)
        for i, cb in self.cbaser.items():  # a command-queue entry (GITS_CBASER.PA, Size)
            qbase = R.GITS_CBASER_LAYOUT.decode(cb)["PA"] << 12
            qsize = (R.GITS_CBASER_LAYOUT.decode(cb)["Size"] + 1) << 12
            if n == 32 and qbase <= gpa < qbase + qsize:
                self.stats.n_commands += 1
                if len(self.stats.commands) < KEEP_COMMANDS:  # memory stays flat on long logs
                    self.stats.commands.append(data)
                del i
                break
        if op is not None:
            op.reads.append((gpa, data))
        else:
            self.w.mem(gpa, data, t_ns=self.t(ev), injector=self.injector(ev.tid))

    # --- the event loop ----------------------------------------------------------------------
    def event(self, ev: Event) -> None:
        name, f, tid = ev.name, ev.f, ev.tid
        if name == "create_vm":
            self.vm_index += 1
            if self.vm_index > self.want:  # the VM imported is gone: what follows is another VM
                self.finish()
            return
        if self.vm_index != self.want:
            return
        if name == "rd":
            self.reads[tid] = {
                "line": ev.line,
                "gpa": f.get("gpa", 0),
                "len": f.get("len", 0),
                "data": f.get("data", 0),
                "sp": f.get("sp", 0),
            }
            return
        if name == "rd_ret":
            self.read_done(ev)
            return
        op = self.ops.get(tid)
        if name == "cached":
            if op is None:  # an irqfd's fast path (kvm_arch_set_irq_inatomic), not an ioctl
                self.open(ev, "irqfd")
            return
        if name == "cached_ret":
            hit = f.get("ret", -1) == 0
            self.stats.cache_hits += hit
            self.stats.cache_misses += not hit
            if op is not None and op.kind == "irqfd":
                self.ops.pop(tid)
                if hit:  # delivered from the cache; a miss goes to a worker thread (not traced)
                    op.kind = "msi"
                    self.ops[tid] = op
                    self.close(tid, 1)
                else:
                    self.stats.ignored["irqfd MSI that missed the cache (handled off-thread)"] += 1
            return
        if name == "resolve":
            return
        if name == "queue":  # the LPI an MSI made pending (inside vgic_its_inject_msi)
            if op is not None and op.kind in ("msi", "irqfd") and f.get("vcpu", -1) >= 0:
                op.lpi = (f.get("intid", 0) & 0xFFFF_FFFF, f["vcpu"])
            return
        if name == "resolve_ret":
            if f.get("ret", -1) == 0:
                self.stats.cache_fills += 1
            return
        if name == "inval":
            if op is not None:
                self.stats.cache_invalidations += 1
            else:
                self.stats.cache_invalidations_outside += 1
            return
        if name == "inval_all":
            self.stats.cache_invalidate_all += 1
            return
        if name in ("msi", "its_attr", "v3_attr"):
            self.open(ev, name)
            return
        if name in ("msi_ret", "its_attr_ret", "v3_attr_ret"):
            if op is not None and op.kind == name[:-4]:
                self.close(tid, f.get("ret"))
            return
        if name == "kvm_mmio":
            self.close(tid)
            if f["type"] == "write":
                self.ops[tid] = _Op("mmio", self.t(ev), f)
            elif f["type"] == "read":
                self.stats.mmio_reads += 1
            return
        if name == "vm_ioctl":
            self.close(tid)
            return
        self.stats.ignored[f"event {name}"] += 1

    def finish(self) -> None:
        for tid in list(self.ops):
            op = self.ops[tid]
            if op.kind in ("msi", "its_attr", "v3_attr", "irqfd"):  # no return seen: cut short
                self.ops.pop(tid)
                self.stats.ignored[f"{op.kind} without its return (log cut short)"] += 1
            else:
                self.close(tid)


def _vmm_pid(log: StrPath) -> int | None:
    """The VMM's pid from the log's `# pid` line (written before the VMM's first event)."""
    info = LogInfo()
    for _ in read_log(log, info):
        if info.pid is not None:
            break
    return info.pid


def _of_vmm(events, pid: int | None):
    """The VMM's events: record.sh records every process's, each with its thread group id.
    (Logs without thread group ids were filtered by the kernel while recording.)"""
    for ev in events:
        if pid is None or ev.tgid is None or ev.tgid == pid:
            yield ev


def kernel_version(release: str | None) -> str | None:
    """ "6.12.118+deb12-arm64" -> "6.12.118" (the model's --kernel form)."""
    if not release:
        return None
    head = release.split("-")[0].split("+")[0]
    parts = head.split(".")
    if len(parts) >= 2 and all(p.isdigit() for p in parts[:3]):
        return ".".join(parts[:3])
    return None


def import_kvm(
    log: StrPath,
    out,
    *,
    expect: str = "all",
    allow_lost: bool = False,
    its_base: int | None = None,
    redist_base: int | None = None,
    vcpus: int | None = None,
    vm_index: int | None = None,
) -> ImportStats:
    """Convert a record.sh log into a trace written to out (a path or a binary stream)."""
    if expect not in EXPECT_MODES:
        raise ValueError(f"expect {expect!r}: one of {', '.join(EXPECT_MODES)}")
    info1 = LogInfo()
    pid = _vmm_pid(log)
    vms = _learn(_of_vmm(read_log(log, info1), pid))
    vm_index = _choose_vm(vms, vm_index, log)
    vm = vms[vm_index]
    _check_complete(info1, allow_lost, log)
    _override(vm, (vcpus, its_base, redist_base), log)
    hdr, meta = _header(vm, info1, vm_index)
    stats = ImportStats()
    try:
        w = TraceWriter(out, vm=hdr, source="gictools record kvm", metadata=meta)
    except ValueError as e:
        raise ImportFormatError(f"the VM the log describes: {e}", path=log) from None
    with w:
        imp = _Importer(w, vm, stats, expect, log, vm_index)
        for ev in _of_vmm(read_log(log, stats.info), pid):
            try:
                imp.event(ev)
            except ValueError as e:  # a value the trace format refuses (FieldError)
                raise ImportFormatError(f"{ev.name} event: {e}", line=ev.line, path=log) from None
        imp.finish()
    return stats


def _choose_vm(vms: list, vm_index: int | None, log: StrPath) -> int:
    """The VM to import: --vm, else the one VM with an ITS, else the last one."""
    with_its = [i for i, v in enumerate(vms) if v.its_devs]
    if vm_index is None:
        if len(with_its) > 1:
            raise ImportFormatError(
                f"the log holds {len(with_its)} VMs with an ITS (VM "
                + ", ".join(str(i) for i in with_its)
                + "): choose one with --vm",
                path=log,
            )
        vm_index = with_its[0] if with_its else len(vms) - 1
    if not 0 <= vm_index < len(vms):
        raise ImportFormatError(f"--vm {vm_index}: the log holds VMs 0..{len(vms) - 1}", path=log)
    return vm_index


def _check_complete(info1: LogInfo, allow_lost: bool, log: StrPath) -> None:
    """Refuse a log that lost events (unless allowed) or whose recorder never finished."""
    if info1.lost and not allow_lost:
        raise ImportFormatError(
            f"events were lost while recording ({info1.loss_summary()}): the trace would be "
            "wrong; record again with a larger buffer (record.sh -b), or pass --allow-lost",
            path=log,
        )
    if not info1.end:
        raise ImportFormatError(
            "the log has no '# end' line: the recorder was killed before it finished "
            "(lost events could not be counted)",
            path=log,
        )


def _override(vm, bases: tuple[int | None, int | None, int | None], log: StrPath) -> None:
    """Apply --vcpus, --its-base, --redist-base (bases, in that order) to what the log
    showed; refuse a VM whose creation the log does not show and the options do not supply."""
    vcpus, its_base, redist_base = bases
    if vcpus is not None:
        vm.vcpu_ids = list(range(vcpus))
    if its_base is not None:
        vm.its_devs, vm.its_bases = [0], {0: its_base}
    if redist_base is not None:
        vm.redist_regions = [(0, redist_base, 0)]
    missing = [
        what
        for what, ok in (
            ("KVM_CREATE_VCPU (--vcpus)", vm.vcpu_ids),
            ("the ITS address (--its-base)", vm.its_devs),
            ("the redistributor address (--redist-base)", vm.redist_regions),
        )
        if not ok
    ]
    if missing:
        raise ImportFormatError(
            "the log does not show the VM's creation (recorded mid-life?): missing "
            + ", ".join(missing),
            path=log,
        )


def _header(vm, info1: LogInfo, vm_index: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The trace's VM header and its metadata."""
    hdr: dict[str, Any] = {
        "vcpus": len(vm.vcpu_ids),
        "memory": [list(v) for _, v in sorted(vm.memslots.items())],
        "itses": [{"base": vm.its_bases[d]} for d in vm.its_devs],
    }
    if vm.vcpu_ids != list(range(len(vm.vcpu_ids))):
        hdr["vcpu_ids"] = vm.vcpu_ids
    kv = kernel_version(info1.kernel)
    if kv:
        hdr["kernel"] = kv
    meta = {
        "importer": "kvm",
        "kernel_release": info1.kernel,
        "recorded": info1.date,
        "command": info1.run,
        "attached": info1.attach,
        "exit": info1.exit,
        "probes": info1.probes,
        "vm": vm_index,
        "lost": info1.loss_summary() or None,
    }
    return hdr, meta
