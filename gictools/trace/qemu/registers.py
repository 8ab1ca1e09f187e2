"""Register shadowing: the ITS and redistributor registers under KVM's write rules, and the
register accesses of the log (MMIO events) as REG records and `its_reg` expectations.

QEMU's register values differ from KVM's by design in some fields (READ_CHECKS says which
are compared, docs/import-qemu.md §3)."""

from dataclasses import dataclass, field

from gictools import regs as R
from gictools.trace.qemu.machine import (
    BASER_PA,
    CBASER_PA,
    LPI_BASE,
    PEND_PA,
    PROP_IDBITS,
    PROP_PA,
    SZ_64K,
)
from gictools.trace.qemu.records import CfgByte, PendingLoad


@dataclass
class Registers:
    """ITS and redistributor registers as the guest left them under KVM's write rules."""

    its: dict = field(default_factory=dict)  # offset -> last value QEMU showed (metadata)
    its_enabled: bool = False
    cbaser: int | None = None
    baser: dict = field(default_factory=dict)  # n -> accepted value
    propbaser: int | None = None
    prop_base: int = 0  # PROPBASER's table address and KVM's INTID limit, decoded once
    prop_limit: int = 1 << R.INTERRUPT_ID_BITS_ITS
    pendbaser: dict = field(default_factory=dict)  # vCPU -> value
    lpis_on: dict = field(default_factory=dict)  # vCPU -> EnableLPIs

    def baser0(self):
        return self.baser.get(0, 0)

    def its_write(self, offset, size, data):
        """Follow the registers that matter later (tables, queue, enable) under KVM's rules:
        CBASER/BASER writes are ignored while the ITS is enabled (vgic_mmio_write_its_baser).
        Returns the (gpa, size) of a table the write placed in guest memory, or None."""
        reg = offset & ~7
        if offset == R.GITS_CTLR:
            if data & R.GITS_CTLR_ENABLE:
                valid = R.GITS_BASER_LAYOUT["Valid"]
                ok = all(valid.get(self.baser.get(n, 0)) for n in (0, 1)) and valid.get(
                    self.cbaser or 0
                )
                self.its_enabled = self.its_enabled or bool(ok)  # vgic_mmio_write_its_ctlr
            else:
                self.its_enabled = False
            return None
        if self.its_enabled or size != 8:
            return None
        if reg == R.GITS_CBASER:
            self.cbaser = data
            if R.GITS_CBASER_LAYOUT["Valid"].get(data):
                pa = CBASER_PA.get(data) << CBASER_PA.shift
                return pa, (R.GITS_CBASER_LAYOUT["Size"].get(data) + 1) << 12
        elif R.GITS_BASER <= reg < R.GITS_BASER + 8 * R.GITS_BASER_NR_REGS:
            n = (reg - R.GITS_BASER) // 8
            self.baser[n] = data
            if n < 2 and R.GITS_BASER_LAYOUT["Valid"].get(data):
                pa = BASER_PA.get(data) << BASER_PA.shift
                return pa, (R.GITS_BASER_LAYOUT["Size"].get(data) + 1) * SZ_64K
        return None

    def prop_gpa(self, intid):
        """The guest address of intid's configuration byte, or None when KVM reads none."""
        if self.propbaser is None or not LPI_BASE <= intid < self.prop_limit:
            return None
        return self.prop_base + intid - LPI_BASE


# QEMU's register values vs KVM's: what a read can be checked against
# offset -> (name, Layout or None, fields KVM and QEMU agree on by design, why the rest differ)
READ_CHECKS = {
    R.GITS_CTLR: ("GITS_CTLR", None, R.GITS_CTLR_ENABLE, "only Enabled is compared"),
    R.GITS_IIDR: (
        "GITS_IIDR",
        R.GITS_IIDR_LAYOUT,
        ("Implementer", "Revision", "Variant"),
        "ProductID: QEMU 0, KVM 0x4B ('K')",
    ),
    R.GITS_TYPER: (
        "GITS_TYPER",
        R.GITS_TYPER_LAYOUT,
        ("Physical", "Virtual", "IDbits", "Devbits", "SEIS", "PTA", "HCC"),
        "ITT_entry_size: QEMU 12 bytes, KVM 8 (the ABI's ITE); CIL/CIDbits: QEMU declares 16-bit "
        "ICIDs with CIL=1 CIDbits=15, KVM with CIL=0",
    ),
    R.GITS_CBASER: (
        "GITS_CBASER",
        R.GITS_CBASER_LAYOUT,
        ("Size", "PA", "Valid"),
        "cacheability and shareability: KVM sanitises them (vgic_sanitise_its_cbaser)",
    ),
}
for _n in range(R.GITS_BASER_NR_REGS):
    READ_CHECKS[R.GITS_BASER + 8 * _n] = (
        f"GITS_BASER{_n}",
        R.GITS_BASER_LAYOUT,
        ("Size", "PA_51_48", "PA", "Entry_Size", "Type", "Valid")
        + (("Indirect",) if _n == 0 else ()),
        "cacheability, shareability and Page_Size: KVM sanitises them and forces 64K pages",
    )
# KVM's constant read-only registers (vgic_mmio_read_its_iidr / _typer)
KVM_READ_ONLY = {
    "GITS_IIDR": R.GITS_IIDR_LAYOUT.encode(
        Implementer=R.IMPLEMENTER_ARM, Revision=0, ProductID=R.PRODUCT_ID_KVM
    ),
    "GITS_TYPER": R.KVM_GITS_TYPER,
}
_QUEUE = "the queue is replayed as COMMAND records, so the model's pointer stays 0"
READ_UNCHECKED = {R.GITS_CWRITER: ("GITS_CWRITER", _QUEUE), R.GITS_CREADR: ("GITS_CREADR", _QUEUE)}


def read_mask(offset, size):
    """(name, mask over the accessed bytes, note) of a register read, or None if unchecked."""
    base = offset & ~7 if offset >= R.GITS_CBASER else offset & ~3
    if offset == R.GITS_TYPER + 4:
        base = R.GITS_TYPER
    spec = READ_CHECKS.get(base)
    if spec is None:
        if offset == R.GITS_PIDR2 and size == 4:
            return "GITS_PIDR2", 0xF0, "only ArchRev is compared (part numbers differ)"
        return None
    name, layout, fields, note = spec
    if layout is None:
        mask = fields
    else:
        mask = 0
        for f in fields:
            fl = layout[f]
            mask |= fl.mask << fl.shift
    shift = 8 * (offset - base)
    mask = (mask >> shift) & ((1 << (8 * size)) - 1)
    return name, mask, note


class MmioEvents:
    """Importer handlers of the register events: gicv3_its_read/write/badread/badwrite and
    gicv3_redist_write (mixed into Importer, whose records and registers they update)."""

    def on_its_read(self, t, tid, args):
        offset, data, size = args
        if size not in (4, 8) or offset >= R.ITS_FRAME_SIZE:
            self.flags["its_read_size" if size not in (4, 8) else "its_read_offset"] += 1
            return
        if offset in (R.GITS_IIDR, R.GITS_TYPER, R.GITS_TYPER + 4) or offset >= R.GITS_IDREGS_BASE:
            self.regs.its.setdefault(offset, data)
        self._rec("reg", t, tid, "its", 0, offset, size, data, False)
        self._read_expectation(t, tid, offset, size, data)

    def _read_expectation(self, t, tid, offset, size, data):
        """An `its_reg` expectation on the fields KVM must agree on (READ_CHECKS)."""
        chk = read_mask(offset, size)
        if chk is None:
            unchecked = READ_UNCHECKED.get(offset & ~7)
            self.stats["its_reads_unchecked"] += 1
            if unchecked:
                name, why = unchecked
                self.differences.setdefault(name, {"not_compared": why, "reads": 0})["reads"] += 1
            return
        name, mask, note = chk
        self._rec(
            "expect",
            t,
            tid,
            "its_reg",
            {"its": 0, "offset": offset, "size": size, "value": data & mask, "mask": mask},
        )
        self.stats["expect_its_reg"] += 1
        if mask != (1 << (8 * size)) - 1:
            d = self.differences.setdefault(name, {"not_compared": note, "reads": 0})
            d["reads"] += 1
            d.setdefault("qemu", data)
            if name in KVM_READ_ONLY:
                d.setdefault("kvm", KVM_READ_ONLY[name])

    def on_its_write(self, t, tid, args):
        offset, data, size = args
        if size not in (4, 8) or offset >= R.ITS_FRAME_SIZE:
            self.flags["its_write_size" if size not in (4, 8) else "its_write_offset"] += 1
            return
        reg = offset & ~7
        if reg == R.GITS_CWRITER:
            # the queue's contents are not in the trace; the commands come as COMMAND records
            self.stats["cwriter_writes_suppressed"] += 1
            self.regs.its[offset] = data
            return
        self.regs.its[offset] = data
        self._its_write(offset, size, data)
        self._rec("reg", t, tid, "its", 0, offset, size, data, True)

    def _its_write(self, offset, size, data):
        region = self.regs.its_write(offset, size, data)
        if region is not None:
            self.recon.regions.append(region)

    def on_its_bad(self, t, tid, args):
        """QEMU refused the access (e.g. a 32-bit write to GITS_TYPER); KVM takes any 32/64-bit
        access and ignores writes to read-only registers, so the access is replayed."""
        if len(args) == 3:
            offset, data, size = args  # badwrite
            is_write = True
        else:
            (offset, size), data, is_write = args, None, False
        self.flags["its_access_qemu_refused_kvm_accepts"] += 1
        if size not in (4, 8) or offset >= R.ITS_FRAME_SIZE:
            return
        if is_write and offset & ~7 != R.GITS_CWRITER:
            self._its_write(offset, size, data)
        self._rec("reg", t, tid, "its", 0, offset, size, data, is_write)

    def on_redist_write(self, t, tid, args):
        cpu, offset, data, size, secure = args
        if secure:
            self.side.skipped["gicv3_redist_write (secure)"] += 1
            return
        if size not in (4, 8):
            self.flags["redist_write_size"] += 1
            return
        cpu = self._cpu(cpu, "redistributor")
        regs = self.regs
        if offset == R.GICR_PROPBASER and size == 8 and not regs.lpis_on.get(cpu):
            self._propbaser(t, tid, data)
        elif offset == R.GICR_PENDBASER and size == 8 and not regs.lpis_on.get(cpu):
            regs.pendbaser[cpu] = data
            self.recon.regions.append((PEND_PA.get(data) << PEND_PA.shift, SZ_64K))
        elif offset == R.GICR_CTLR:
            on = bool(data & R.GICR_CTLR_ENABLE_LPIS)
            if on and not regs.lpis_on.get(cpu):
                self._pending_load(t, tid, cpu, "enable")
            regs.lpis_on[cpu] = on
        self._rec("reg", t, tid, "redist", cpu, offset, size, data, True)

    def _pending_load(self, t, tid, cpu, kind, intid=None):
        """KVM reads pending bits here (its_sync_lpi_pending_table / vgic_add_lpi)."""
        pend = self.regs.pendbaser.get(cpu)
        if pend is None:
            return
        p = PendingLoad(t, tid, cpu, PEND_PA.get(pend) << PEND_PA.shift, kind, self.lineno)
        index = self._emit(p)
        if kind == "enable":
            self.recon.enable_load[cpu] = (index, p)
        else:
            self.recon.map_load[intid] = (index, p)

    def _propbaser(self, t, tid, value):
        gpa = PROP_PA.get(value) << PROP_PA.shift
        # KVM reads at most 2^16 INTIDs' bytes (vgic_its_max_lpis: min(IDbits+1, 16) bits)
        nbits = min(PROP_IDBITS.get(value) + 1, R.INTERRUPT_ID_BITS_ITS)
        size = (1 << nbits) - LPI_BASE if nbits > 13 else 0
        side = self.side
        if self.regs.propbaser is None and size > 0:
            # Linux fills the table with LPI_PROP_DEFAULT_PRIO | GROUP1 before programming it
            self._rec("mem", t, tid, gpa, bytes([side.prop_default]) * size)
            self.recon.prop_table = (gpa, size)
            self.stats["lpi_config_initial_bytes"] = size
        if self.regs.propbaser != value:
            self.recon.regions.append((gpa, max(size, 1)))
        regs = self.regs
        regs.propbaser, regs.prop_base = value, gpa
        regs.prop_limit = 1 << min(PROP_IDBITS.get(value) + 1, R.INTERRUPT_ID_BITS_ITS)

    def _cfg(self, t, tid, intid, gpa):
        self._emit(CfgByte(t, tid, intid, gpa, self.lineno, len(self.sides) - 1))

    HANDLERS = {
        "gicv3_its_read": on_its_read,
        "gicv3_its_badread": on_its_bad,
        "gicv3_its_write": on_its_write,
        "gicv3_its_badwrite": on_its_bad,
        "gicv3_redist_write": on_redist_write,
    }
