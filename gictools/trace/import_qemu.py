"""Import a QEMU (TCG) `log`-backend trace of the GICv3 ITS as a gictools trace v1.

    summary = import_qemu("x.trace.log.gz", "x.msgpack", cmdq="x.cmdq.txt",
                          lpiprop="x.lpiprop.txt", cmdline="x.cmdline.txt")
    summary = import_qemu("src.trace.log.gz", "m.msgpack", cmdq=..., migrate_to="dst.trace.log.gz",
                          dst_cmdq=..., dst_lpiprop=..., dst_cmdline=...)

EVENTS maps each QEMU 7.2 trace-event name to its format string, verbatim from
hw/intc/trace-events, and is compiled into one small parser per event that
returns the arguments in the declaration's order (each bounded by its C type).
Importer.HANDLERS maps the same names to what each event means for the trace.
What the QEMU trace cannot show (guest memory the driver wrote without an ITS
access) is reconstructed in finish() and described in the header's metadata.
The reasoning, and where QEMU's semantics differ from KVM's, is in
docs/import-qemu.md.

The whole log is parsed before the output file is opened, so a malformed input
raises ImportFormatError (with its line number) and leaves nothing behind.
"""

import bisect
import gzip
import io
import os
import re
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field

from gictools import regs as R
from gictools.abi import entries as E
from gictools.errors import ImportFormatError
from gictools.model.commands import decode_command, encode_command
from gictools.outputs import check_output
from gictools.trace import format as F

QEMU_VIRT_ITS_BASE = 0x0808_0000  # hw/arm/virt.c VIRT_GIC_ITS
QEMU_VIRT_RAM_BASE = 0x4000_0000  # hw/arm/virt.c VIRT_MEM
QEMU_ITT_ENTRY_SIZE = 12  # QEMU's GITS_TYPER.ITT_entry_size + 1
# process_mapc keeps RDbase & RDBASE_PROCNUM_MASK (RDBASE_PROCNUM_LENGTH = 16: a
# GICR_TYPER.Processor_Number) and logs that; the command in the queue keeps all its bits
QEMU_RDBASE_PROCNUM_MASK = R.GICR_TYPER_LAYOUT["Processor_Number"].mask
MAX_RECORDS = 1 << 22  # records held in memory until the log is read (about 1 GB of log)
MAX_LISTED = 4096  # reconstructions listed one by one in the metadata (all are counted)
MAX_POINTS = 64  # pending-bit points listed, each with at most MAX_LISTED bits
MAX_SKIP_NAMES = 256  # distinct names of skipped lines counted one by one
MAX_RAM = 1 << 40  # a RAM slot the importer will declare (the model's memory is sparse)
LPI_BASE = R.LPI_BASE_INTID
SZ_64K = 0x10000
DEFAULT_PROP = 0xA2  # Linux: LPI_PROP_DEFAULT_PRIO | LPI_PROP_GROUP1
GITS_TRANSLATER_OFFSET = R.GITS_TRANSLATER - 0x10000  # within the translation frame
_BASER_PA = R.GITS_BASER_LAYOUT["PA"]
_CBASER_PA = R.GITS_CBASER_LAYOUT["PA"]
_PROP_PA = R.GICR_PROPBASER_LAYOUT["PA"]
_PROP_IDBITS = R.GICR_PROPBASER_LAYOUT["IDbits"]
_PEND_PA = R.GICR_PENDBASER_LAYOUT["PA"]
TRIGGERS = ("msi", "int")  # LPI events that make it pending in QEMU

# --- the QEMU 7.2 trace events (hw/intc/trace-events), argument order as declared ------------
EVENTS = {
    "gicv3_its_read": "GICv3 ITS read: offset 0x%lx data 0x%lx size %u",
    "gicv3_its_badread": "GICv3 ITS read: offset 0x%lx size %u: error",
    "gicv3_its_write": "GICv3 ITS write: offset 0x%lx data 0x%lx size %u",
    "gicv3_its_badwrite": "GICv3 ITS write: offset 0x%lx data 0x%lx size %u: error",
    "gicv3_its_translation_write": "GICv3 ITS TRANSLATER write: offset 0x%lx data 0x%lx size %u requester_id 0x%x",
    "gicv3_its_process_command": "GICv3 ITS: processing command at offset 0x%x: 0x%x",
    "gicv3_its_cmd_int": "GICv3 ITS: command INT DeviceID 0x%x EventID 0x%x",
    "gicv3_its_cmd_clear": "GICv3 ITS: command CLEAR DeviceID 0x%x EventID 0x%x",
    "gicv3_its_cmd_discard": "GICv3 ITS: command DISCARD DeviceID 0x%x EventID 0x%x",
    "gicv3_its_cmd_sync": "GICv3 ITS: command SYNC",
    "gicv3_its_cmd_mapd": "GICv3 ITS: command MAPD DeviceID 0x%x Size 0x%x ITT_addr 0x%lx V %d",
    "gicv3_its_cmd_mapc": "GICv3 ITS: command MAPC ICID 0x%x RDbase 0x%lx V %d",
    "gicv3_its_cmd_mapi": "GICv3 ITS: command MAPI DeviceID 0x%x EventID 0x%x ICID 0x%x",
    "gicv3_its_cmd_mapti": "GICv3 ITS: command MAPTI DeviceID 0x%x EventID 0x%x ICID 0x%x pINTID 0x%x",
    "gicv3_its_cmd_inv": "GICv3 ITS: command INV DeviceID 0x%x EventID 0x%x",
    "gicv3_its_cmd_invall": "GICv3 ITS: command INVALL",
    "gicv3_its_cmd_movall": "GICv3 ITS: command MOVALL RDbase1 0x%lx RDbase2 0x%lx",
    "gicv3_its_cmd_movi": "GICv3 ITS: command MOVI DeviceID 0x%x EventID 0x%x ICID 0x%x",
    "gicv3_its_cmd_vmapi": "GICv3 ITS: command VMAPI DeviceID 0x%x EventID 0x%x vPEID 0x%x Dbell_pINTID 0x%x",
    # sic: QEMU 7.2 labels VMAPTI "VMAPI"; the event name is what tells them apart
    "gicv3_its_cmd_vmapti": "GICv3 ITS: command VMAPI DeviceID 0x%x EventID 0x%x vPEID 0x%x "
    "vINTID 0x%x Dbell_pINTID 0x%x",
    "gicv3_its_cmd_vmapp": "GICv3 ITS: command VMAPP vPEID 0x%x RDbase 0x%lx V %d VPT_addr 0x%lx VPT_size 0x%x",
    "gicv3_its_cmd_vmovp": "GICv3 ITS: command VMOVP vPEID 0x%x RDbase 0x%lx",
    "gicv3_its_cmd_vsync": "GICv3 ITS: command VSYNC",
    "gicv3_its_cmd_vmovi": "GICv3 ITS: command VMOVI DeviceID 0x%x EventID 0x%x vPEID 0x%x D %d Dbell_pINTID 0x%x",
    "gicv3_its_cmd_vinvall": "GICv3 ITS: command VINVALL vPEID 0x%x",
    "gicv3_its_cmd_unknown": "GICv3 ITS: unknown command 0x%x",
    "gicv3_its_cte_read": "GICv3 ITS: Collection Table read for ICID 0x%x: valid %d RDBase 0x%x",
    "gicv3_its_cte_write": "GICv3 ITS: Collection Table write for ICID 0x%x: valid %d RDBase 0x%x",
    "gicv3_its_cte_read_fault": "GICv3 ITS: Collection Table read for ICID 0x%x: faulted",
    "gicv3_its_ite_read": "GICv3 ITS: Interrupt Table read for ITTaddr 0x%lx EventID 0x%x: "
    "valid %d inttype %d intid 0x%x ICID 0x%x vPEID 0x%x doorbell 0x%x",
    "gicv3_its_ite_read_fault": "GICv3 ITS: Interrupt Table read for ITTaddr 0x%lx EventID 0x%x: faulted",
    "gicv3_its_ite_write": "GICv3 ITS: Interrupt Table write for ITTaddr 0x%lx EventID 0x%x: "
    "valid %d inttype %d intid 0x%x ICID 0x%x vPEID 0x%x doorbell 0x%x",
    "gicv3_its_dte_read": "GICv3 ITS: Device Table read for DeviceID 0x%x: valid %d size 0x%x ITTaddr 0x%lx",
    "gicv3_its_dte_write": "GICv3 ITS: Device Table write for DeviceID 0x%x: valid %d size 0x%x ITTaddr 0x%lx",
    "gicv3_its_dte_read_fault": "GICv3 ITS: Device Table read for DeviceID 0x%x: faulted",
    "gicv3_its_vte_read": "GICv3 ITS: vPE Table read for vPEID 0x%x: valid %d VPTsize 0x%x "
    "VPTaddr 0x%lx RDbase 0x%x",
    "gicv3_its_vte_read_fault": "GICv3 ITS: vPE Table read for vPEID 0x%x: faulted",
    "gicv3_its_vte_write": "GICv3 ITS: vPE Table write for vPEID 0x%x: valid %d VPTsize 0x%x "
    "VPTaddr 0x%lx RDbase 0x%x",
    # outside the ITS, the two the capture enabled
    "gicv3_redist_write": "GICv3 redistributor 0x%x write: offset 0x%lx data 0x%lx size %u secure %d",
    "gicv3_icc_iar1_read": "GICv3 ICC_IAR1 read cpu 0x%x value 0x%lx",
}
# The decoded-command event of each opcode (process_command's second argument), from the one
# opcode table in regs.py.
CMD_EVENTS = {op: f"gicv3_its_cmd_{name.lower()}" for op, name in R.COMMAND_NAMES.items()}
# conversion -> (base, lowest, highest): the C type QEMU prints each argument from
_CONV = {
    "x": (16, 0, 0xFFFF_FFFF),
    "lx": (16, 0, 0xFFFF_FFFF_FFFF_FFFF),
    "u": (10, 0, 0xFFFF_FFFF),
    "d": (10, -(1 << 31), (1 << 31) - 1),
}


class EventParser:
    """One trace event's format string compiled to a matcher: parse(text) -> tuple of ints.

    A value beyond its C type (a %x above 2^32) cannot come from QEMU: parse() raises
    ValueError naming the argument. The common case takes one regex whose digit counts
    already bound every value; only a line that fails it is parsed and checked again."""

    __slots__ = ("name", "fmt", "_fast", "_slow", "_conv", "_bases")

    # conversion -> (digits that always fit, regex of any length)
    _DIGITS = {
        "x": ("([0-9a-fA-F]{1,8})", "([0-9a-fA-F]{1,17})"),
        "lx": ("([0-9a-fA-F]{1,16})", "([0-9a-fA-F]{1,17})"),
        "u": ("([0-9]{1,9})", "(-?[0-9]{1,20})"),
        "d": ("(-?[0-9]{1,9})", "(-?[0-9]{1,20})"),
    }

    def __init__(self, name, fmt):
        self.name, self.fmt = name, fmt
        parts = re.split(r"%(lx|x|d|u)", fmt)
        fast, slow, self._conv = [], [], []
        for i, p in enumerate(parts):
            if i % 2 == 0:
                fast.append(re.escape(p))
                slow.append(re.escape(p))
            else:
                self._conv.append((p, *_CONV[p]))
                fast.append(self._DIGITS[p][0])
                slow.append(self._DIGITS[p][1])
        self._bases = tuple(c[1] for c in self._conv)
        self._fast = re.compile("".join(fast) + r"\s*").fullmatch
        self._slow = re.compile("".join(slow) + r"\s*").fullmatch

    def parse(self, text):
        m = self._fast(text)
        if m is not None:
            return tuple(map(int, m.groups(), self._bases))
        m = self._slow(text)
        if m is None:
            return None
        out = []
        for i, (g, (conv, base, lo, hi)) in enumerate(zip(m.groups(), self._conv)):
            v = int(g, base)
            if not lo <= v <= hi:
                raise ValueError(f"argument {i + 1} ({g}) does not fit QEMU's %{conv}")
            out.append(v)
        return tuple(out)


PARSERS = {name: EventParser(name, fmt) for name, fmt in EVENTS.items()}
# A trace event: an optional `TID@SEC.USEC:` stamp, the event's name, a space, its text.
# QEMU's own messages (-d guest_errors, unimp) are `name: text` (a colon after the name).
_LINE = re.compile(
    r"(?:([0-9]{1,20})@([0-9]{1,20})\.([0-9]{6}):)?([A-Za-z0-9_]+)( (.*))?"
).fullmatch


# --- auxiliary inputs ----------------------------------------------------------------------


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


def _open_text(path, file=None):
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


@dataclass(slots=True)
class Rec:
    method: str  # TraceWriter method: msi, command, reg, mem, ctrl, expect, ack
    t: int | None
    inj: int | None
    args: tuple


@dataclass(slots=True)
class Placed:
    """Where a reconstructed record goes in the output: timestamp and injection id of the
    record it precedes or answers."""

    t: int | None
    inj: int | None


@dataclass(slots=True)
class MsiExpect(Placed):
    """The `msi` expectation after an MSI, filled in when QEMU's lookups complete."""

    args: dict | None = None


@dataclass(slots=True)
class CfgByte(Placed):
    """A reconstructed LPI configuration byte, written just before a config load."""

    intid: int
    gpa: int | None
    line: int = 0  # of the load (the command that reads the byte), in its capture
    side: int = 0
    value: int | None = None
    reason: str | None = None


@dataclass(slots=True)
class L1Entry(Placed):
    """A level-1 device-table entry and its zeroed level-2 page (placed in finish())."""

    l1_gpa: int
    page: int
    l2_gpa: int | None = None


@dataclass(slots=True)
class PendingLoad(Placed):
    """A point where KVM reads pending-table bits: EnableLPIs 0->1 (every LPI targeting the
    vCPU) or an LPI's creation. Bits set here explain acknowledges no MSI/INT explains."""

    vcpu: int
    table: int  # PA of the vCPU's pending table
    kind: str  # "enable" or "map"
    line: int  # where, in its capture
    bits: dict = field(default_factory=dict)  # INTID -> line of the acknowledge it explains


@dataclass(slots=True)
class DumpPoint:
    """Where a side's pmemsave dumps were taken: expectations from its --lpiprop."""

    t: int | None
    side: int
    lpis: dict  # INTID -> (DeviceID, EventID) live then


@dataclass(slots=True)
class PendingAfterRestore:
    """`pending` expectations after a migration's restore, decided from the destination."""

    t: int | None
    lpis: dict  # INTID -> target vCPU (or None)
    index: int  # record index of this point
    want: dict = field(default_factory=dict)


# --- state, grouped by concern ----------------------------------------------------------------


@dataclass
class _MsiCtx:
    line: int
    dev: int
    ev: int
    expect: MsiExpect
    intid: int | None = None
    icid: int | None = None
    stage: int = 0  # 0 translation, 1 dte, 2 ite, 3 done


@dataclass
class _CmdCtx:
    line: int
    slot: int
    opcode: int
    decoded: bool = False


@dataclass
class _Side:
    """One capture file (the source, or a migration's destination) and its dumps."""

    path: str | None
    cmdq: dict = field(default_factory=dict)
    prop_default: int = DEFAULT_PROP
    prop_final: dict | None = None
    cmdline: dict = field(default_factory=dict)
    lineno: int = 0
    unterminated: bool = False
    t0: int | None = None
    t_last: int | None = None
    ctx: dict = field(default_factory=dict)  # TID -> _MsiCtx / _CmdCtx
    counts: Counter = field(default_factory=Counter)  # events handled
    skipped: Counter = field(default_factory=Counter)  # other lines
    slots_seen: set = field(default_factory=set)
    cmdq_usable: bool = False  # until the queue wraps (then the dump holds later commands)
    cmdq_last: int | None = None  # the dump's last slot: later commands came after it
    dump: DumpPoint | None = None
    dump_index: int | None = None

    def __post_init__(self):
        self.cmdq_last = max(self.cmdq) if self.cmdq else None
        self.cmdq_usable = bool(self.cmdq)


@dataclass
class _Registers:
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


@dataclass
class _Shadow:
    """The ITS state under KVM's rules, to resolve INV/INVALL and see where QEMU differs."""

    devices: dict = field(default_factory=dict)  # DeviceID -> {EventID: [INTID, ICID]}
    collections: dict = field(default_factory=dict)  # ICID -> RDbase
    qemu_pending: Counter = field(default_factory=Counter)  # INTID -> triggers not yet acked
    last_target: int = 0  # RDbase of the last command's collection (SYNC)
    last_mapc_icid: int = 0

    refs: Counter = field(default_factory=Counter)  # INTID -> live ITEs mapping it
    icid_refs: Counter = field(default_factory=Counter)  # ICID -> live ITEs in it
    targets: dict = field(default_factory=dict)  # INTID -> ICID of its latest ITE

    def ite(self, dev, ev):
        return self.devices.get(dev, {}).get(ev)

    def add_ite(self, dev, ev, intid, icid):
        self.devices[dev][ev] = [intid, icid]
        self.refs[intid] += 1
        self.icid_refs[icid] += 1
        self.targets[intid] = icid

    def drop_ite(self, ite):
        intid, icid = ite
        self.refs[intid] -= 1
        self.icid_refs[icid] -= 1

    def move_ite(self, ite, icid):
        self.icid_refs[ite[1]] -= 1
        self.icid_refs[icid] += 1
        ite[1] = self.targets[ite[0]] = icid

    def target_of(self, intid):
        """The RDbase the LPI targets under KVM's rules, or None (no LPI, unmapped)."""
        if self.refs[intid] <= 0:
            return None
        return self.collections.get(self.targets.get(intid))

    def lpis(self):
        """{INTID: target RDbase or None} of every live ITE."""
        return {
            intid: self.collections.get(icid)
            for d in self.devices.values()
            for intid, icid in d.values()
        }


@dataclass
class _Reconstruction:
    """Evidence and decisions for guest memory the trace cannot show."""

    lpi_events: dict = field(default_factory=dict)  # INTID -> [(kind, record index, side)]
    regions: list = field(default_factory=list)  # (gpa, size) guest memory known in use
    l1_done: set = field(default_factory=set)
    prop_table: tuple | None = None  # (gpa, size) of the initial table write
    enable_load: dict = field(default_factory=dict)  # vCPU -> latest PendingLoad "enable"
    map_load: dict = field(default_factory=dict)  # INTID -> latest PendingLoad "map"
    created: dict = field(default_factory=dict)  # INTID -> record index of its latest MAPTI
    last_ack: dict = field(default_factory=dict)  # INTID -> record index
    config_reasons: Counter = field(default_factory=Counter)
    pending_reasons: Counter = field(default_factory=Counter)
    unexplained: list = field(default_factory=list)  # acks nothing explains (examples)
    unexplained_count: int = 0
    l2_pages: list = field(default_factory=list)
    ram_source: str = ""


# --- QEMU's register values vs KVM's: what a read can be checked against ---------------------
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


def _read_mask(offset, size):
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


# --- the importer ----------------------------------------------------------------------------


class Importer:
    """Feed lines with feed(); migrate() starts a destination; finish() returns
    (vm, metadata, records), records being lists [TraceWriter method, t_ns, injector, *args]."""

    def __init__(
        self, *, cmdq=None, lpiprop=None, cmdline=None, its_base=QEMU_VIRT_ITS_BASE, path=None
    ):
        self.its_base = its_base
        self.sides = [self._side(path, cmdq, lpiprop, cmdline)]
        self.side = self.sides[0]
        self.records = []  # Rec and the placeholders above, in trace order
        self.regs = _Registers()
        self.shadow = _Shadow()
        self.recon = _Reconstruction()
        self.flags = Counter()  # QEMU-only semantics and unresolved things seen
        self.stats = Counter()  # what was emitted / reconstructed and why
        self.differences = {}  # register -> {"not_compared": why, "reads": n, "qemu": value}
        self.max_cpu = -1
        self.migration = None

    @staticmethod
    def _side(path, cmdq, lpiprop, cmdline):
        default, final = lpiprop if lpiprop else (DEFAULT_PROP, None)
        return _Side(
            path=path,
            cmdq=cmdq or {},
            prop_default=default,
            prop_final=final,
            cmdline=cmdline or {},
        )

    @property
    def lineno(self):
        return self.side.lineno

    # -- errors -------------------------------------------------------------------------
    def error(self, what, line=None):
        return ImportFormatError(
            what, line=self.lineno if line is None else line, path=self.side.path
        )

    def _cpu(self, n, what):
        """A vCPU number from the log, bounded by what a trace can hold."""
        if n >= F.MAX_VCPUS:
            raise self.error(f"{what} {n:#x}: a VM has at most {F.MAX_VCPUS} vCPUs")
        self.max_cpu = max(self.max_cpu, n)
        return n

    # -- input ----------------------------------------------------------------------------
    def feed(self, line):
        side = self.side
        side.lineno += 1
        side.unterminated = not line.endswith("\n")  # QEMU ends every line; a cut does not
        line = line.rstrip("\r\n")
        m = _LINE(line)
        if m is None or (m.group(5) is None and m.group(1) is None):
            # not `[stamp:]name text`: QEMU's own messages (`name: text`) and anything else
            word = line.split(" ", 1)[0][:40] if line.strip() else "(blank)"
            self._skip(
                "qemu: " + word.split(":")[-2] + ":" if word.endswith(":") else "(not an event)"
            )
            return
        tid, sec, usec, name, _, text = m.groups()
        handler = self.HANDLERS.get(name)
        if handler is None:
            if name.startswith("gicv3_its_") and text is not None:
                raise self.error(
                    f"unknown ITS trace event {name!r} (not one of QEMU 7.2's "
                    f"{len(EVENTS) - 2} gicv3_its_* events): a different QEMU "
                    f"version?"
                )
            self._skip(name)
            return
        try:
            args = PARSERS[name].parse(text or "")
        except ValueError as e:
            raise self.error(f"{name}: {e}") from None
        if args is None:
            raise self.error(
                f"{name}: {text!r} does not match QEMU 7.2's format "
                f"{EVENTS[name]!r} (a different QEMU version, or a cut line?)"
            )
        if sec is not None:
            t = int(sec) * 1_000_000_000 + int(usec) * 1000
            if t > F.T_MAX:
                raise self.error(f"timestamp {sec}.{usec} is beyond 2^63 ns")
            if side.t0 is None:
                side.t0 = t
            side.t_last = t
            tid = int(tid)
            if tid > F.U32_MAX:
                raise self.error(f"thread id {tid} does not fit 32 bits")
        else:
            t = None
        side.counts[name] += 1
        handler(self, t, tid, args)

    def _skip(self, what):
        if self.side.unterminated:
            raise self.error("the capture ends in the middle of this line")
        skipped = self.side.skipped
        if what not in skipped and len(skipped) >= MAX_SKIP_NAMES:
            what = "(other names)"
        skipped[what] += 1

    def _emit(self, rec):
        self.records.append(rec)
        if len(self.records) > MAX_RECORDS:
            raise self.error(
                f"more than {MAX_RECORDS:,} records: a capture this size (or this many INVALLs "
                f"over this many mapped events) is beyond what the importer holds in memory"
            )
        return len(self.records) - 1

    def _rec(self, method, t, tid, *args):
        return self._emit(Rec(method, t, tid, args))

    def _lpi_event(self, intid, kind, index=None):
        self.recon.lpi_events.setdefault(intid, []).append(
            (kind, len(self.records) if index is None else index, len(self.sides) - 1)
        )

    def _close(self, tid, *, eof=False):
        """End the open translation/command of thread tid."""
        c = self.side.ctx.pop(tid, None)
        if c is None:
            return
        if isinstance(c, _CmdCtx):
            if not c.decoded:
                raise self.error(
                    f"{'the capture ends inside a command: ' if eof else ''}process_command "
                    f"(slot {c.slot:#x}, opcode {c.opcode:#x}) has no decoded command line "
                    f"after it",
                    line=c.line,
                )
        elif c.stage < 3:
            self.flags["msi_unresolved"] += 1  # no expectation: QEMU did not deliver it

    # -- MMIO -------------------------------------------------------------------------------
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
        chk = _read_mask(offset, size)
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
        self._kvm_its_write(offset, size, data)
        self._rec("reg", t, tid, "its", 0, offset, size, data, True)

    def _kvm_its_write(self, offset, size, data):
        """Follow the registers that matter later (tables, queue, enable) under KVM's rules:
        CBASER/BASER writes are ignored while the ITS is enabled (vgic_mmio_write_its_baser)."""
        regs = self.regs
        reg = offset & ~7
        if offset == R.GITS_CTLR:
            if data & R.GITS_CTLR_ENABLE:
                valid = R.GITS_BASER_LAYOUT["Valid"]
                ok = all(valid.get(regs.baser.get(n, 0)) for n in (0, 1)) and valid.get(
                    regs.cbaser or 0
                )
                regs.its_enabled = regs.its_enabled or bool(ok)  # vgic_mmio_write_its_ctlr
            else:
                regs.its_enabled = False
            return
        if regs.its_enabled or size != 8:
            return
        if reg == R.GITS_CBASER:
            regs.cbaser = data
            if R.GITS_CBASER_LAYOUT["Valid"].get(data):
                pa = _CBASER_PA.get(data) << _CBASER_PA.shift
                self.recon.regions.append((pa, (R.GITS_CBASER_LAYOUT["Size"].get(data) + 1) << 12))
        elif R.GITS_BASER <= reg < R.GITS_BASER + 8 * R.GITS_BASER_NR_REGS:
            n = (reg - R.GITS_BASER) // 8
            regs.baser[n] = data
            if n < 2 and R.GITS_BASER_LAYOUT["Valid"].get(data):
                pa = _BASER_PA.get(data) << _BASER_PA.shift
                self.recon.regions.append(
                    (pa, (R.GITS_BASER_LAYOUT["Size"].get(data) + 1) * SZ_64K)
                )

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
            self._kvm_its_write(offset, size, data)
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
            self.recon.regions.append((_PEND_PA.get(data) << _PEND_PA.shift, SZ_64K))
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
        p = PendingLoad(t, tid, cpu, _PEND_PA.get(pend) << _PEND_PA.shift, kind, self.lineno)
        index = self._emit(p)
        if kind == "enable":
            self.recon.enable_load[cpu] = (index, p)
        else:
            self.recon.map_load[intid] = (index, p)

    def _propbaser(self, t, tid, value):
        gpa = _PROP_PA.get(value) << _PROP_PA.shift
        # KVM reads at most 2^16 INTIDs' bytes (vgic_its_max_lpis: min(IDbits+1, 16) bits)
        nbits = min(_PROP_IDBITS.get(value) + 1, R.INTERRUPT_ID_BITS_ITS)
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
        regs.prop_limit = 1 << min(_PROP_IDBITS.get(value) + 1, R.INTERRUPT_ID_BITS_ITS)

    def _cfg(self, t, tid, intid, gpa):
        self._emit(CfgByte(t, tid, intid, gpa, self.lineno, len(self.sides) - 1))

    def _max_intid(self):
        """KVM's MAPTI bound: INTIDs below 2^min(PROPBASER.IDbits+1, 16)."""
        return self.regs.prop_limit

    def _prop_gpa(self, intid):
        if self.regs.propbaser is None or not LPI_BASE <= intid < self.regs.prop_limit:
            return None
        return self.regs.prop_base + intid - LPI_BASE

    # -- MSIs, table reads, acknowledges -----------------------------------------------------
    def on_translation_write(self, t, tid, args):
        offset, data, size, requester_id = args
        self._close(tid)
        if offset != GITS_TRANSLATER_OFFSET:
            self.flags["translation_frame_other_offset"] += 1
            return
        event_id = data & (0xFFFF if size == 2 else 0xFFFF_FFFF)
        self._rec("msi", t, tid, 0, requester_id, event_id)
        exp = MsiExpect(t, tid)
        self._emit(exp)
        self.side.ctx[tid] = _MsiCtx(self.lineno, requester_id, event_id, exp)

    def on_dte_read(self, t, tid, args):
        c = self.side.ctx.get(tid)
        if not isinstance(c, _MsiCtx) or c.stage != 0:
            return  # a command's own lookup
        devid, valid, size, itt = args
        if devid != c.dev:
            raise self.error(
                f"Device Table read for DeviceID {devid:#x} inside the translation "
                f"of DeviceID {c.dev:#x} (line {c.line})"
            )
        if not valid:
            self._close(tid)
            return
        c.stage = 1

    def on_ite_read(self, t, tid, args):
        c = self.side.ctx.get(tid)
        if not isinstance(c, _MsiCtx) or c.stage != 1:
            return
        itt, eventid, valid, inttype, intid, icid, vpeid, doorbell = args
        if eventid != c.ev:
            raise self.error(
                f"Interrupt Table read for EventID {eventid:#x} inside the "
                f"translation of EventID {c.ev:#x} (line {c.line})"
            )
        if not valid or inttype != 1:
            if valid:
                self.flags["msi_virtual_ite"] += 1
            self._close(tid)
            return
        c.intid, c.icid, c.stage = intid, icid, 2

    def on_cte_read(self, t, tid, args):
        c = self.side.ctx.get(tid)
        if not isinstance(c, _MsiCtx) or c.stage != 2:
            return
        icid, valid, rdbase = args
        if icid != c.icid:
            raise self.error(
                f"Collection Table read for ICID {icid:#x} inside the translation "
                f"of ICID {c.icid:#x} (line {c.line})"
            )
        if not valid:
            self._close(tid)
            return
        self._cpu(rdbase, "RDBase")
        c.expect.args = {"ret": 1, "intid": c.intid, "vcpu": rdbase}
        self.stats["expect_msi"] += 1
        self._trigger(c.intid, "msi")
        mine = self.shadow.ite(c.dev, c.ev)
        if mine is None or mine[0] != c.intid or self.shadow.collections.get(mine[1]) != rdbase:
            self.flags["msi_translation_differs_from_kvm"] += 1
        c.stage = 3
        self._close(tid)

    def _trigger(self, intid, kind):
        """An MSI QEMU translated, or an INT: the LPI became pending in QEMU."""
        self.shadow.qemu_pending[intid] += 1
        self._lpi_event(intid, kind)

    def on_table_fault(self, t, tid, args):
        self.flags["table_read_fault"] += 1
        if isinstance(self.side.ctx.get(tid), _MsiCtx):
            self._close(tid)

    def on_table_write(self, t, tid, args):
        pass  # QEMU's side of a command we already have

    def on_cte_write(self, t, tid, args):
        """QEMU wrote a collection: its RDbase names a CPU the VM has."""
        icid, valid, rdbase = args
        if valid:
            self._cpu(rdbase, "RDBase")

    def on_iar1_read(self, t, tid, args):
        cpu, value = args
        cpu = self._cpu(cpu, "CPU")
        if value < LPI_BASE or value > F.U32_MAX:
            self.stats["acks_below_8192"] += 1
            return
        self._lpi_event(value, "ack")
        index = self._rec("ack", t, tid, cpu, value)
        self.stats["acks"] += 1
        sh = self.shadow
        if sh.qemu_pending[value] > 0:
            sh.qemu_pending[value] -= 1
        else:
            self._explain_ack(value, cpu, index)
        self.recon.last_ack[value] = index

    def _explain_ack(self, intid, cpu, index):
        """An acknowledge no MSI or INT explains: a pending bit the guest stored in memory,
        read by KVM at the latest pending load of that vCPU since the LPI's last ack."""
        rc = self.recon
        since = rc.last_ack.get(intid, -1)
        best = None
        e = rc.enable_load.get(cpu)
        m = rc.map_load.get(intid)
        # the enable read the bit if the LPI existed then, targeting this vCPU (as it does now)
        if (
            e is not None
            and e[0] > since
            and self.shadow.target_of(intid) == cpu
            and rc.created.get(intid, len(self.records)) < e[0]
        ):
            best = e
        if m is not None and m[0] > since and m[1].vcpu == cpu and (best is None or m[0] > best[0]):
            best = m
        if best is None:
            rc.unexplained_count += 1
            if len(rc.unexplained) < 20:
                rc.unexplained.append({"line": self.lineno, "vcpu": cpu, "intid": intid})
            return
        point = best[1]
        point.bits[intid] = self.lineno
        rc.pending_reasons[f"before_{point.kind}"] += 1

    # -- commands -----------------------------------------------------------------------------
    def on_process_command(self, t, tid, args):
        slot, opcode = args
        self._close(tid)
        self.side.ctx[tid] = _CmdCtx(self.lineno, slot, opcode)

    def _command(self, t, tid, name, **fields):
        """The decoded-command line of thread tid's open process_command: (ctx, raw or None)."""
        side = self.side
        c = side.ctx.get(tid)
        ev = f"gicv3_its_cmd_{name.lower()}"
        if not isinstance(c, _CmdCtx) or c.decoded:
            raise self.error(f"{ev} without a preceding gicv3_its_process_command")
        if CMD_EVENTS.get(c.opcode) != ev:
            raise self.error(f"{ev} after process_command of opcode {c.opcode:#x} (line {c.line})")
        c.decoded = True
        if side.cmdq_last is not None and c.slot > side.cmdq_last and side.dump is None:
            self._dump_here(t)
        if c.slot in side.slots_seen:
            side.cmdq_usable = False  # the queue wrapped: the dump is newer
        side.slots_seen.add(c.slot)
        raw = side.cmdq.get(c.slot) if side.cmdq_usable else None
        if raw is not None:
            got, gfields = decode_command(raw)
            want = dict(fields)
            if name == "MAPC":  # QEMU logs a processor number: the RDbase's low 16 bits
                if not fields["V"]:
                    want.pop("RDbase")  # logged as 0
                gfields = dict(gfields, RDbase=gfields["RDbase"] & QEMU_RDBASE_PROCNUM_MASK)
            if got != name or any(gfields.get(k) != v for k, v in want.items()):
                raise self.error(
                    f"the command queue dump has {got} {gfields} in slot "
                    f"{c.slot:#x}, the trace {name} {fields}: not the same capture?"
                )
            self.stats["commands_from_cmdq"] += 1
        return c, raw

    def _cmd_record(self, t, tid, name, raw, **fields):
        if raw is None:
            try:
                raw = encode_command(name, **fields)
            except ValueError as e:
                raise self.error(f"{name}: {e}: not a value QEMU can log") from None
        self._rec("command", t, tid, 0, raw)
        self.stats["commands"] += 1
        return raw

    def _target(self, icid):
        return self.shadow.collections.get(icid, 0)

    def on_cmd_mapd(self, t, tid, args):
        dev, size, itt, valid = args
        c, raw = self._command(t, tid, "MAPD", DeviceID=dev, Size=size, ITT_addr=itt, V=valid)
        if raw is None:
            # validate the fields before anything is reconstructed for them
            self._cmd_record_check("MAPD", DeviceID=dev, Size=size, ITT_addr=itt, V=valid)
        self._l1_entry(t, tid, dev)
        sh = self.shadow
        old = sh.devices.pop(dev, None)
        if old:
            self.flags["mapd_remap_with_ites" if valid else "mapd_unmap_with_ites"] += 1
            for ite in old.values():
                sh.drop_ite(ite)
                self._lpi_event(ite[0], "unmap")
        if valid:
            sh.devices[dev] = {}
            n = max(256, (2 << size) * QEMU_ITT_ENTRY_SIZE)
            self.recon.regions.append((itt << R.ITT_ADDR_SHIFT, n))
        self._cmd_record(t, tid, "MAPD", raw, DeviceID=dev, Size=size, ITT_addr=itt, V=valid)

    def _cmd_record_check(self, name, **fields):
        try:
            encode_command(name, **fields)
        except ValueError as e:
            raise self.error(f"{name}: {e}: not a value QEMU can log") from None

    def _l1_entry(self, t, tid, dev):
        """Linux writes a level-1 entry (and zeroes a level-2 page) before the first MAPD of a
        DeviceID range of a two-level device table; none of that is an ITS access."""
        b = self.regs.baser0()
        L = R.GITS_BASER_LAYOUT
        if not (L["Valid"].get(b) and L["Indirect"].get(b)) or dev > R.VITS_MAX_DEVID:
            return  # KVM: E_ITS_MAPD_DEVICE_OOR beyond 16 DeviceID bits, whatever the table
        # KVM's geometry whatever the guest wrote: 64 KiB pages, 8-byte DTEs
        # (vgic_sanitise_its_baser forces Page_Size; Entry_Size is read-only)
        page = SZ_64K
        index = dev // (page // E.ENTRY_SIZE)
        if (b, index) in self.recon.l1_done:
            return
        l1 = (_BASER_PA.get(b) << _BASER_PA.shift) + 8 * index
        if index >= (L["Size"].get(b) + 1) * page // 8:
            return  # beyond the level-1 table: KVM answers E_ITS_MAPD_DEVICE_OOR
        self.recon.l1_done.add((b, index))
        self._emit(L1Entry(t, tid, l1, page))

    def on_cmd_mapc(self, t, tid, args):
        icid, rdbase, valid = args
        if rdbase > QEMU_RDBASE_PROCNUM_MASK:
            raise self.error(
                f"MAPC: RDbase {rdbase:#x} does not fit QEMU's 16-bit processor number "
                f"(RDBASE_PROCNUM_MASK {QEMU_RDBASE_PROCNUM_MASK:#x}): not a value QEMU can log"
            )
        c, raw = self._command(t, tid, "MAPC", ICID=icid, RDbase=rdbase, V=valid)
        self._cmd_record(t, tid, "MAPC", raw, ICID=icid, RDbase=rdbase, V=valid)
        sh = self.shadow
        sh.last_mapc_icid = icid
        smp = self.side.cmdline.get("vcpus")
        if valid and rdbase >= (smp or F.MAX_VCPUS):
            # QEMU refuses it (no cte_write), KVM answers E_ITS_MAPC_PROCNUM_OOR: no change
            self.flags["mapc_procnum_oor"] += 1
            return
        if not valid:
            self.flags["mapc_unmap"] += 1
            sh.collections.pop(icid, None)
            return
        if smp is None:
            self._cpu(rdbase, "RDbase")
        old = sh.collections.get(icid)
        if old is not None and old != rdbase and sh.icid_refs[icid] > 0:
            self.flags["mapc_retarget_live_collection"] += 1
        sh.collections[icid] = rdbase
        sh.last_target = rdbase

    def _mapti(self, t, tid, name, dev, ev, icid, intid):
        fields = dict(DeviceID=dev, EventID=ev, ICID=icid)
        if name == "MAPTI":
            fields["pINTID"] = intid
        c, raw = self._command(t, tid, name, **fields)
        if raw is None:
            self._cmd_record_check(name, **fields)
        sh = self.shadow
        ites = sh.devices.get(dev)
        if ites is None:
            self.flags["mapti_unmapped_device"] += 1
        elif ev in ites:
            self.flags["mapti_over_existing_ite"] += 1  # QEMU overwrites, KVM ignores
        elif not LPI_BASE <= intid < self._max_intid():
            self.flags["mapti_intid_out_of_range"] += 1  # KVM: E_ITS_MAPTI_PHYSICALID_OOR
        else:
            new = sh.refs[intid] <= 0
            sh.add_ite(dev, ev, intid, icid)
            target = sh.collections.get(icid)
            if new:
                self.recon.created[intid] = len(self.records)
                if target is not None:
                    self._pending_load(t, tid, target, "map", intid)
            self._lpi_event(intid, "map")
            self._cfg(t, tid, intid, self._prop_gpa(intid))  # only if needed
        sh.last_target = self._target(icid)
        self._cmd_record(t, tid, name, raw, **fields)

    def on_cmd_mapti(self, t, tid, args):
        self._mapti(t, tid, "MAPTI", *args)

    def on_cmd_mapi(self, t, tid, args):
        dev, ev, icid = args
        self._mapti(t, tid, "MAPI", dev, ev, icid, ev)

    def on_cmd_movi(self, t, tid, args):
        dev, ev, icid = args
        c, raw = self._command(t, tid, "MOVI", DeviceID=dev, EventID=ev, ICID=icid)
        sh = self.shadow
        ite = sh.ite(dev, ev)
        # Linux syncs the collection the event was on (its_build_movi_cmd: dev_event_to_col,
        # which the driver updates only after the command)
        sh.last_target = self._target(icid if ite is None else ite[1])
        if ite is not None and icid in sh.collections:
            sh.move_ite(ite, icid)
        self._cmd_record(t, tid, "MOVI", raw, DeviceID=dev, EventID=ev, ICID=icid)

    def on_cmd_discard(self, t, tid, args):
        dev, ev = args
        c, raw = self._command(t, tid, "DISCARD", DeviceID=dev, EventID=ev)
        sh = self.shadow
        ite = sh.ite(dev, ev)
        if ite is not None:
            sh.last_target = self._target(ite[1])
            del sh.devices[dev][ev]
            sh.drop_ite(ite)
            self._lpi_event(ite[0], "discard")
            if sh.qemu_pending[ite[0]] > 0:
                self.flags["discard_while_pending"] += 1
        self._cmd_record(t, tid, "DISCARD", raw, DeviceID=dev, EventID=ev)

    def on_cmd_inv(self, t, tid, args):
        dev, ev = args
        c, raw = self._command(t, tid, "INV", DeviceID=dev, EventID=ev)
        ite = self.shadow.ite(dev, ev)
        if ite is None:
            self.flags["inv_unmapped"] += 1
        else:
            self.shadow.last_target = self._target(ite[1])
            gpa = self._prop_gpa(ite[0])
            if gpa is not None:
                self._lpi_event(ite[0], "inv")
                self._cfg(t, tid, ite[0], gpa)
        self._cmd_record(t, tid, "INV", raw, DeviceID=dev, EventID=ev)

    def on_cmd_invall(self, t, tid, args):
        c, raw = self._command(t, tid, "INVALL")
        sh = self.shadow
        if raw is None:
            icid = sh.last_mapc_icid  # Linux: MAPC, SYNC, INVALL of one collection
            self.stats["invall_icid_inferred"] += 1
        else:
            icid = decode_command(raw)[1]["ICID"]
        rd = sh.collections.get(icid)
        if rd is None:
            self.flags["invall_unmapped_collection"] += 1  # KVM: E_ITS_INVALL_UNMAPPED_COLLECTION
        else:
            sh.last_target = rd
            cols = sh.collections
            side = len(self.sides) - 1
            events, line, emit = self.recon.lpi_events, self.lineno, self._emit
            for d in sh.devices.values():
                for intid, ic in d.values():
                    if cols.get(ic) == rd:
                        events.setdefault(intid, []).append(("invall", len(self.records), side))
                        emit(CfgByte(t, tid, intid, self._prop_gpa(intid), line, side))
        self._cmd_record(t, tid, "INVALL", raw, ICID=icid)

    def on_cmd_sync(self, t, tid, args):
        c, raw = self._command(t, tid, "SYNC")
        if raw is None:
            self.stats["sync_rdbase_inferred"] += 1
        self._cmd_record(t, tid, "SYNC", raw, RDbase=self.shadow.last_target)

    def on_cmd_movall(self, t, tid, args):
        rd1, rd2 = args
        c, raw = self._command(t, tid, "MOVALL", RDbase=rd1, RDbase2=rd2)
        self.flags["movall"] += 1  # QEMU moves pending bits; KVM retargets LPIs
        self.shadow.last_target = rd2 & 0xFFFF_FFFF
        self._cmd_record(t, tid, "MOVALL", raw, RDbase=rd1, RDbase2=rd2)

    def _devev(name):
        def handler(self, t, tid, args):
            dev, ev = args
            c, raw = self._command(t, tid, name, DeviceID=dev, EventID=ev)
            self.flags[name.lower()] += 1
            sh = self.shadow
            ite = sh.ite(dev, ev)
            if ite is None:
                self.flags[f"{name.lower()}_unmapped"] += 1  # KVM: E_ITS_*_UNMAPPED_INTERRUPT
            else:
                sh.last_target = self._target(ite[1])
                if name == "INT":
                    self._trigger(ite[0], "int")
                else:  # CLEAR
                    sh.qemu_pending[ite[0]] = 0
            self._cmd_record(t, tid, name, raw, DeviceID=dev, EventID=ev)

        return handler

    def on_cmd_virtual(self, t, tid, args):
        c = self.side.ctx.get(tid)
        if not isinstance(c, _CmdCtx) or c.decoded:
            raise self.error("a GICv4 command line without a preceding process_command")
        c.decoded = True
        self.flags["gicv4_commands"] += 1  # KVM's vITS ignores every V* command
        self._opaque(t, tid, c, c.opcode & 0xFF)

    def on_cmd_unknown(self, t, tid, args):
        c = self.side.ctx.get(tid)
        if not isinstance(c, _CmdCtx) or c.decoded:
            raise self.error("gicv3_its_cmd_unknown without a preceding process_command")
        c.decoded = True
        self.flags["unknown_commands"] += 1
        self._opaque(t, tid, c, args[0] & 0xFF)

    def _opaque(self, t, tid, c, opcode):
        side = self.side
        raw = side.cmdq.get(c.slot) if side.cmdq_usable else None
        if raw is None or raw[0] != opcode:
            raw = bytes([opcode]) + bytes(31)
        self._rec("command", t, tid, 0, raw)
        self.stats["commands"] += 1

    def _dump_here(self, t):
        """The pmemsave dumps (cmdq, lpiprop) were taken here: after the last command they hold."""
        lpis = {
            intid: (dev, ev)
            for dev, d in self.shadow.devices.items()
            for ev, (intid, _) in d.items()
        }
        self.side.dump = DumpPoint(t, len(self.sides) - 1, lpis)
        self.side.dump_index = self._emit(self.side.dump)

    HANDLERS = {
        "gicv3_its_read": on_its_read,
        "gicv3_its_badread": on_its_bad,
        "gicv3_its_write": on_its_write,
        "gicv3_its_badwrite": on_its_bad,
        "gicv3_its_translation_write": on_translation_write,
        "gicv3_its_process_command": on_process_command,
        "gicv3_its_cmd_int": _devev("INT"),  # type: ignore[arg-type]  # class-body factory
        "gicv3_its_cmd_clear": _devev("CLEAR"),  # type: ignore[arg-type]  # class-body factory
        "gicv3_its_cmd_discard": on_cmd_discard,
        "gicv3_its_cmd_sync": on_cmd_sync,
        "gicv3_its_cmd_mapd": on_cmd_mapd,
        "gicv3_its_cmd_mapc": on_cmd_mapc,
        "gicv3_its_cmd_mapi": on_cmd_mapi,
        "gicv3_its_cmd_mapti": on_cmd_mapti,
        "gicv3_its_cmd_inv": on_cmd_inv,
        "gicv3_its_cmd_invall": on_cmd_invall,
        "gicv3_its_cmd_movall": on_cmd_movall,
        "gicv3_its_cmd_movi": on_cmd_movi,
        "gicv3_its_cmd_vmapi": on_cmd_virtual,
        "gicv3_its_cmd_vmapti": on_cmd_virtual,
        "gicv3_its_cmd_vmapp": on_cmd_virtual,
        "gicv3_its_cmd_vmovp": on_cmd_virtual,
        "gicv3_its_cmd_vsync": on_cmd_virtual,
        "gicv3_its_cmd_vmovi": on_cmd_virtual,
        "gicv3_its_cmd_vinvall": on_cmd_virtual,
        "gicv3_its_cmd_unknown": on_cmd_unknown,
        "gicv3_its_cte_read": on_cte_read,
        "gicv3_its_cte_write": on_cte_write,
        "gicv3_its_cte_read_fault": on_table_fault,
        "gicv3_its_ite_read": on_ite_read,
        "gicv3_its_ite_read_fault": on_table_fault,
        "gicv3_its_ite_write": on_table_write,
        "gicv3_its_dte_read": on_dte_read,
        "gicv3_its_dte_write": on_table_write,
        "gicv3_its_dte_read_fault": on_table_fault,
        "gicv3_its_vte_read": on_table_write,
        "gicv3_its_vte_read_fault": on_table_fault,
        "gicv3_its_vte_write": on_table_write,
        "gicv3_redist_write": on_redist_write,
        "gicv3_icc_iar1_read": on_iar1_read,
    }
    assert set(HANDLERS) == set(EVENTS)

    # -- sides and migration ----------------------------------------------------------------
    def _end_side(self):
        """Close the current capture: open contexts, and its dump point (at its end)."""
        side = self.side
        for tid in list(side.ctx):
            self._close(tid, eof=True)
        if side.dump is None:
            self._dump_here(side.t_last)

    def migrate(self, *, cmdq=None, lpiprop=None, cmdline=None, path=None):
        """End the source capture and emit the migration as KVM userspace performs it
        (arm-vgic-its.rst): SAVE_PENDING_TABLES and SAVE_TABLES on the source; a fresh VM
        with the source's guest memory; redistributors, ITS registers (CBASER first),
        RESTORE_TABLES, GITS_CTLR last. Lines fed afterwards are the destination's."""
        self._check_nonempty()
        self._end_side()
        src = self.side
        t = src.t_last
        dst = self._side(path, cmdq, lpiprop, cmdline)
        want, have = dst.cmdline.get("vcpus"), src.cmdline.get("vcpus")
        if want and have and want != have:
            raise ImportFormatError(
                f"destination -smp {want} differs from the source's -smp {have}", path=path
            )
        first = len(self.records)
        self._rec("ctrl", t, None, F.CTRL_SAVE_PENDING_TABLES, None, 0)
        self._rec("ctrl", t, None, F.CTRL_SAVE_TABLES, 0, 0)
        self._rec("ctrl", t, None, F.CTRL_MIGRATE, None, None)
        regs = self.regs
        vcpus = set(regs.pendbaser) | set(regs.lpis_on)
        for v in sorted(vcpus):  # bases before GICR_CTLR: they are ignored once LPIs are on
            if regs.propbaser is not None:
                self._rec("reg", t, None, "redist", v, R.GICR_PROPBASER, 8, regs.propbaser, True)
            if v in regs.pendbaser:
                self._rec("reg", t, None, "redist", v, R.GICR_PENDBASER, 8, regs.pendbaser[v], True)
        for v in sorted(vcpus):
            on = R.GICR_CTLR_ENABLE_LPIS if regs.lpis_on.get(v) else 0
            self._rec("reg", t, None, "redist", v, R.GICR_CTLR, 4, on, True)
        user = [(R.GITS_CBASER, regs.cbaser), (R.GITS_IIDR, KVM_READ_ONLY["GITS_IIDR"])]
        user += [(R.GITS_BASER + 8 * n, v) for n, v in sorted(regs.baser.items())]
        user += [(R.GITS_CREADR, 0), (R.GITS_CWRITER, 0)]
        for off, v in user:
            if v is not None:
                self._rec("reg", t, None, "its-user", 0, off, 4 if off < 8 else 8, v, True)
        self._rec("ctrl", t, None, F.CTRL_RESTORE_TABLES, 0, 0)
        ctlr = R.GITS_CTLR_ENABLE if regs.its_enabled else 0
        self._rec("reg", t, None, "its-user", 0, R.GITS_CTLR, 4, ctlr, True)
        lpis = {i: rd for i, rd in self.shadow.lpis().items()}
        check = PendingAfterRestore(t, lpis, len(self.records))
        self._emit(check)
        for intid in lpis:
            self._lpi_event(intid, "restore", check.index)
        # what QEMU had pending stays pending (KVM: the pending tables carry it)
        self.migration = {
            "source": src.path and os.path.basename(src.path),
            "destination": path and os.path.basename(os.fspath(path)),
            "records": len(self.records) - first,
            "lpis_carried": len(lpis),
            "check": check,
        }
        self.sides.append(dst)
        self.side = dst
        # a fresh QEMU process: threads and their open lookups start anew
        self.shadow.qemu_pending = Counter(
            {i: n for i, n in self.shadow.qemu_pending.items() if n > 0}
        )
        self.recon.enable_load.clear()
        self.recon.map_load.clear()

    def _check_nonempty(self, side=None):
        """A capture has GICv3 ITS events; a migration's destination may be empty (QEMU had
        delivered everything before `migrate`), but lines with none of them are no capture."""
        destination = side is not None
        side = side or self.sides[0]
        if side.lineno == 0:
            if destination:
                return
            raise ImportFormatError("empty file: no trace lines", line=1, path=side.path)
        if not side.counts:
            raise ImportFormatError(
                "no GICv3 ITS, redistributor or ICC_IAR1 events: not a QEMU "
                "GICv3 ITS trace (or none of its events were enabled)",
                line=side.lineno,
                path=side.path,
            )

    # -- reconstruction ---------------------------------------------------------------------
    def finish(self):
        """Close open contexts, reconstruct guest memory; (vm, metadata, records)."""
        if self.migration is None:
            self._check_nonempty()
        else:
            self._check_nonempty(self.side)
        self._end_side()
        vcpus = max(self.max_cpu + 1, 1)
        for side in self.sides:
            if side.cmdline.get("vcpus"):
                if side.cmdline["vcpus"] < vcpus:
                    raise ImportFormatError(
                        f"-smp {side.cmdline['vcpus']} but the trace names vCPU {vcpus - 1}",
                        path=side.path,
                    )
                vcpus = side.cmdline["vcpus"]
        self._lpi_config()
        self._after_restore()
        memory = self._place_l2_and_ram()
        records = self._final_records(vcpus)
        vm = {
            "vcpus": vcpus,
            "memory": [[QEMU_VIRT_RAM_BASE, memory]],
            "itses": [{"base": self.its_base}],
        }
        return vm, self._metadata(vcpus, memory), records

    LOADS = ("map", "inv", "invall")

    def _lpi_config(self):
        """Decide every reconstructed LPI configuration byte (docs/import-qemu.md §5.2).

        Config loads (KVM re-reads the byte) are MAPTI (a new LPI), INV and INVALL. Evidence
        for the byte at a load, from the window up to the next load: an acknowledge (enabled);
        a trigger never acknowledged there (disabled: QEMU did not deliver it); the final
        --lpiprop dump for the last load before it; Linux's mask-before-DISCARD."""
        recs = self.records
        why = self.recon.config_reasons
        default0 = self.sides[0].prop_default
        for intid, evs in self.recon.lpi_events.items():
            cur = default0
            loads = [i for i, (k, _, _) in enumerate(evs) if k in self.LOADS]
            # record index of the next acknowledge, trigger or INV after each event
            nxt_seen, seen = [None] * len(evs), None
            for i in range(len(evs) - 1, -1, -1):
                nxt_seen[i] = seen
                if evs[i][0] in ("ack", "inv", *TRIGGERS):
                    seen = evs[i][1]
            for n, i in enumerate(loads):
                kind, idx, s = evs[i]
                side = self.sides[s]
                final = side.prop_final
                dump = side.dump_index
                end = loads[n + 1] if n + 1 < len(loads) else len(evs)
                window = [k for k, _, _ in evs[i + 1 : end]]
                acked = "ack" in window
                # QEMU delivers an enabled LPI at once: an INT followed by another trigger (or
                # nothing) before any acknowledge found the LPI disabled
                first = window.index("int") if "int" in window else None
                unseen = first is not None and (
                    first + 1 == len(window) or window[first + 1] in TRIGGERS
                )
                nxt = evs[loads[n + 1]][1] if n + 1 < len(loads) else None
                last_before_dump = idx < dump and (nxt is None or nxt > dump)
                fb = None if final is None else final.get(intid, side.prop_default)
                prio = (fb if fb is not None else side.prop_default) & R.LPI_PROP_PRIORITY_MASK
                on, off = prio | 0x3, prio | 0x2
                cfg = recs[idx]
                val = reason = None
                if kind == "inv":
                    if unseen:
                        val, reason = off, "int_not_delivered"
                    elif acked:
                        val, reason = on, "delivered_after"
                    elif last_before_dump and fb is not None:
                        val, reason = fb, "final_table"
                    elif window and window[0] in ("discard", "unmap"):
                        val, reason = off, "masked_before_discard"
                    else:
                        val, reason = on, "unmask"
                elif unseen:
                    if cur & 1:
                        val, reason = off, f"int_not_delivered_{kind}"
                elif acked and not cur & 1:
                    val, reason = on, f"delivered_after_{kind}"  # delivered though no INV
                elif (
                    fb is not None
                    and idx < dump
                    and intid in side.dump.lpis
                    and fb != cur
                    and (nxt_seen[i] is None or nxt_seen[i] > dump)
                ):
                    # never delivered up to the dump: the byte there is the guest's
                    val, reason = fb, f"final_table_{kind}"
                if val is not None and cfg.gpa is not None:
                    cfg.value, cfg.reason = val, reason
                    why[reason] += 1
                    cur = val
        self.stats["lpi_config_writes"] = sum(why.values())
        at_dump = self._defer_acks(default0)
        for s, side in enumerate(self.sides):
            if side.prop_final is not None and side.dump is not None:
                seen = at_dump.get(s, {})
                self.flags["final_table_mismatch"] += sum(
                    seen.get(i, default0) != side.prop_final.get(i, side.prop_default)
                    for i in side.dump.lpis
                )
        for k in [k for k, v in self.flags.items() if not v]:
            del self.flags[k]

    def _defer_acks(self, default0):
        """An acknowledge of an LPI whose loaded byte is disabled: QEMU applied a byte the guest
        stored without INV (it reads the table on every delivery); KVM delivers only after the
        next config load that enables it (INV/INVALL). Move the ACK just after that command.
        Returns each side's LPI bytes at its dump point."""
        recs = self.records
        cfg_at, next_cmd = {}, [None] * (len(recs) + 1)
        for i, r in enumerate(recs):
            if isinstance(r, CfgByte):
                cfg_at.setdefault(r.intid, []).append(i)
        for i in range(len(recs) - 1, -1, -1):
            r = recs[i]
            cmd = isinstance(r, Rec) and r.method == "command"
            next_cmd[i] = i if cmd else next_cmd[i + 1]
        state, at_dump, moves = {}, {}, {}
        for i, r in enumerate(recs):
            if isinstance(r, CfgByte) and r.value is not None:
                state[r.intid] = r.value
            elif isinstance(r, DumpPoint):
                at_dump[r.side] = dict(state)
            elif isinstance(r, Rec) and r.method == "ack":
                intid = r.args[1]
                if state.get(intid, default0) & 1:
                    continue
                to = self._enabling_load(i, intid, cfg_at, next_cmd)
                if to is None:
                    self.flags["acks_of_disabled_lpi"] += 1
                else:
                    moves.setdefault(to, []).append(i)
                    self.flags["acks_deferred_to_config_load"] += 1
        if moves:
            moved = {i for v in moves.values() for i in v}
            out = []
            for i, r in enumerate(recs):
                if i not in moved:
                    out.append(r)
                out.extend(recs[j] for j in moves.get(i, ()))
            self.records = out
        return at_dump

    def _enabling_load(self, i, intid, cfg_at, next_cmd):
        """Index of the command after the first later config load enabling intid, or None."""
        recs = self.records
        at = cfg_at.get(intid, [])
        for j in at[bisect.bisect_right(at, i) :]:
            r = recs[j]
            if r.value is None:
                continue
            if not r.value & 1:
                return None
            return next_cmd[j]  # the load's own command follows its placeholders
        return None

    def _after_restore(self):
        """After a migration each LPI is pending exactly when QEMU's destination delivers it
        before triggering it again."""
        if self.migration is None:
            return
        check = self.migration["check"]
        for intid in check.lpis:
            evs = self.recon.lpi_events.get(intid, ())
            after = [k for k, j, _ in evs if j > check.index and k in ("ack", *TRIGGERS)]
            check.want[intid] = bool(after) and after[0] == "ack"

    def _place_l2_and_ram(self):
        """Choose the level-2 device-table pages (free guest RAM), then the RAM size."""
        rc = self.recon
        regions = sorted((g, s) for g, s in rc.regions if g >= QEMU_VIRT_RAM_BASE)
        top = max((g + s for g, s in regions), default=QEMU_VIRT_RAM_BASE)
        nxt = (top + SZ_64K - 1) & ~(SZ_64K - 1)
        for r in self.records:
            if isinstance(r, L1Entry):
                nxt = (nxt + r.page - 1) & ~(r.page - 1)
                r.l2_gpa = nxt
                rc.l2_pages.append({"l1_entry_gpa": r.l1_gpa, "l2_page_gpa": nxt, "size": r.page})
                nxt += r.page
        need = nxt - QEMU_VIRT_RAM_BASE
        if need > MAX_RAM:
            raise ImportFormatError(
                f"the trace names guest addresses up to {nxt:#x}, beyond {MAX_RAM >> 30} GiB "
                f"of RAM at {QEMU_VIRT_RAM_BASE:#x}",
                path=self.sides[0].path,
            )
        ram = self.sides[0].cmdline.get("ram")
        if ram is None and self.sides[0].cmdline:
            ram, rc.ram_source = 128 << 20, "QEMU's default -m (128 MiB): the command line has none"
        if ram is None:
            ram = 128 << 20
            while ram < need:
                ram <<= 1
            rc.ram_source = "inferred from the addresses the trace names"
        else:
            rc.ram_source = rc.ram_source or "command line -m"
            if ram < need:
                raise ImportFormatError(
                    f"the command line's -m ({ram >> 20} MiB) is smaller than the "
                    f"guest addresses the trace uses ({need >> 20} MiB above "
                    f"{QEMU_VIRT_RAM_BASE:#x})",
                    path=self.sides[0].path,
                )
        return ram

    def _final_records(self, vcpus):
        """Placeholders to records: [TraceWriter method, t_ns, injector, *args]."""
        out = []
        stats = self.stats
        for r in self.records:
            if isinstance(r, Rec):
                out.append([r.method, r.t, r.inj, *r.args])
            elif isinstance(r, CfgByte):
                if r.value is not None:
                    out.append(["mem", r.t, r.inj, r.gpa, bytes([r.value])])
            elif isinstance(r, L1Entry):
                out.append(["mem", r.t, r.inj, r.l2_gpa, bytes(r.page)])
                l1e = E.encode_l1e(E.L1Entry(True, r.l2_gpa))
                out.append(["mem", r.t, r.inj, r.l1_gpa, E.to_bytes(l1e)])
            elif isinstance(r, MsiExpect):
                if r.args is not None:
                    out.append(["expect", r.t, r.inj, "msi", r.args])
            elif isinstance(r, PendingLoad):
                out.extend(self._pending_bits(r))
            elif isinstance(r, DumpPoint):
                side = self.sides[r.side]
                if side.prop_final is None:
                    continue
                for intid in sorted(r.lpis):
                    b = side.prop_final.get(intid, side.prop_default)
                    args = {
                        "intid": intid,
                        "exists": True,
                        "priority": b & R.LPI_PROP_PRIORITY_MASK,
                        "enabled": bool(b & R.LPI_PROP_ENABLE),
                    }
                    out.append(["expect", r.t, None, "lpi", args])
                    stats["expect_lpi"] += 1
            elif isinstance(r, PendingAfterRestore):
                for intid in sorted(r.lpis):
                    rd = r.lpis[intid]
                    mapped = rd is not None and rd < vcpus
                    lpi = {"intid": intid, "exists": True, **({"vcpu": rd} if mapped else {})}
                    out.append(["expect", r.t, None, "lpi", lpi])
                    stats["expect_lpi_after_restore"] += 1
                    args = {"intid": intid, "vcpu": rd if mapped else 0, "pending": r.want[intid]}
                    out.append(["expect", r.t, None, "pending", args])
                    stats["expect_pending_after_restore"] += 1
        return out

    def _pending_bits(self, p):
        """MEM records setting the reconstructed pending bits, one per byte."""
        byts = {}
        for intid in p.bits:
            byts.setdefault(intid // 8, 0)
            byts[intid // 8] |= 1 << (intid % 8)
        self.stats["pending_bits_reconstructed"] += len(p.bits)
        return [["mem", p.t, p.inj, p.table + b, bytes([v])] for b, v in sorted(byts.items())]

    def _metadata(self, vcpus, ram):
        names = {
            0x0: "GITS_CTLR",
            0x4: "GITS_IIDR",
            0x8: "GITS_TYPER",
            0xC: "GITS_TYPER_hi",
            0x80: "GITS_CBASER",
            0x88: "GITS_CWRITER",
            0xFFE8: "GITS_PIDR2",
        }
        regs = {}
        for off, v in sorted(self.regs.its.items()):
            if R.GITS_BASER <= off < R.GITS_BASER + 0x40:
                name = f"GITS_BASER{(off - R.GITS_BASER) // 8}"
            else:
                name = names.get(off, f"{off:#x}")
            regs[name] = v
        src = self.sides[0]
        rc = self.recon
        # every reconstruction with its evidence (at most MAX_LISTED listed; all counted)
        pending = [
            {
                "vcpu": r.vcpu,
                "before": r.kind,
                "line": r.line,
                "table": r.table,
                "bits": len(r.bits),
                "intids_and_ack_lines": sorted(r.bits.items())[:MAX_LISTED],
            }
            for r in self.records
            if isinstance(r, PendingLoad) and r.bits
        ][:MAX_POINTS]
        cfg = [
            {"intid": r.intid, "value": r.value, "reason": r.reason, "side": r.side, "line": r.line}
            for r in self.records
            if isinstance(r, CfgByte) and r.value is not None
        ][:MAX_LISTED]
        meta = {
            "importer": "gictools.trace.import_qemu",
            "qemu_trace_backend": "log",
            "qemu_version_format": "7.2",
            "clock": (
                "t_ns = the trace's TID@SEC.USEC stamp (host gettimeofday, CLOCK_REALTIME) "
                "in ns since the Unix epoch; injector = the host thread id"
                if src.t0 is not None
                else "the trace has no timestamps"
            ),
            "t0_ns": src.t0,
            "lines": sum(s.lineno for s in self.sides),
            "events": dict(sorted(sum((s.counts for s in self.sides), Counter()).items())),
            "skipped_lines": dict(sorted(sum((s.skipped for s in self.sides), Counter()).items())),
            "vcpus_from": "highest redistributor / CPU / RDbase number seen + 1"
            + (", the command line's -smp" if src.cmdline.get("vcpus") else ""),
            "ram": {"base": QEMU_VIRT_RAM_BASE, "size": ram, "source": rc.ram_source},
            "its_registers": regs,
            "register_reads_qemu_vs_kvm": self.differences,
            "emitted": dict(sorted(self.stats.items())),
            "reconstructed": {
                "device_table_level2": rc.l2_pages,
                "lpi_config_table": None
                if rc.prop_table is None
                else {
                    "gpa": rc.prop_table[0],
                    "size": rc.prop_table[1],
                    "initial_byte": src.prop_default,
                },
                "lpi_config_bytes_by_reason": dict(sorted(rc.config_reasons.items())),
                "final_table_from": "lpiprop dump" if src.prop_final is not None else None,
                "pending_bits_by_reason": dict(sorted(rc.pending_reasons.items())),
                "pending_bits": pending,
                "lpi_config_bytes": cfg,
            },
            "unexplained_acks": {"count": rc.unexplained_count, "examples": rc.unexplained},
            "qemu_only_semantics_and_anomalies": dict(sorted(self.flags.items())),
        }
        if self.migration is not None:
            m = dict(self.migration)
            check = m.pop("check")
            m["pending_after_restore"] = sum(check.want.values())
            m["sides"] = [
                {
                    "log": s.path and os.path.basename(os.fspath(s.path)),
                    "lines": s.lineno,
                    "t0_ns": s.t0,
                    "skipped_lines": dict(s.skipped),
                }
                for s in self.sides
            ]
            meta["migration"] = m
        return meta


# --- the one-call form ------------------------------------------------------------------------


def _feed_file(imp, log, progress=None):
    """Feed the log's lines to imp; progress(done, total) in bytes of the file on disk
    (compressed ones included, so the bar ends at the end), every 4096 lines."""
    log = os.fspath(log)
    try:
        with open(log, "rb") as disk, _open_text(log, disk) as f:
            total = os.fstat(disk.fileno()).st_size
            feed = imp.feed
            for n, line in enumerate(f, 1):
                feed(line)
                if progress is not None and not n & 4095:
                    progress(disk.tell(), total)
            if progress is not None:
                progress(total, total)
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise ImportFormatError(
            f"damaged gzip stream after {imp.lineno} complete lines ({e or type(e).__name__})",
            line=imp.lineno + 1,
            path=log,
        ) from None


def _aux(cmdq, lpiprop, cmdline):
    return dict(
        cmdq=read_cmdq(cmdq) if cmdq else None,
        lpiprop=read_lpiprop(lpiprop) if lpiprop else None,
        cmdline=read_cmdline(cmdline) if cmdline else None,
    )


def convert(
    log,
    *,
    cmdq=None,
    lpiprop=None,
    cmdline=None,
    its_base=QEMU_VIRT_ITS_BASE,
    migrate_to=None,
    dst_cmdq=None,
    dst_lpiprop=None,
    dst_cmdline=None,
    progress=None,
):
    """Parse a QEMU trace log (and the optional dumps; with migrate_to, the destination of a
    live migration and its own dumps); (vm, metadata, records).
    progress(done, total): bytes of the log(s) read so far, for a progress bar."""
    log = os.fspath(log)
    imp = Importer(**_aux(cmdq, lpiprop, cmdline), its_base=its_base, path=log)
    dst = None if migrate_to is None else os.fspath(migrate_to)
    sizes = [os.path.getsize(x) for x in (log, dst) if x is not None]
    step = None
    if progress is not None:
        step = lambda done, _total: progress(done, sum(sizes))  # noqa: E731
    _feed_file(imp, log, step)
    if dst is not None:
        imp.migrate(**_aux(dst_cmdq, dst_lpiprop, dst_cmdline), path=dst)
        step2 = None if step is None else (lambda done, t: step(sizes[0] + done, t))
        _feed_file(imp, dst, step2)
    return imp.finish()


def write_trace(out, vm, metadata, records, source):
    """Write converted records with a TraceWriter (atomic)."""
    from gictools.trace.writer import TraceWriter

    with TraceWriter(out, vm=vm, source=source, metadata=metadata) as w:
        methods = {
            "msi": w.msi,
            "command": w.command,
            "reg": w.reg,
            "mem": w.mem,
            "ctrl": w.ctrl,
            "expect": w.expect,
            "ack": w.ack,
        }
        for r in records:
            methods[r[0]](*r[3:], t_ns=r[1], injector=r[2])
        return w.records, w.events


class ImportSummary(dict):
    def as_json(self) -> dict:
        """The one JSON object `import qemu --json` prints."""
        m = self["metadata"]
        e = m["emitted"]
        rc = m["reconstructed"]
        return {
            "out": self["out"],
            "records": self["records"],
            "msis": self["msis"],
            "commands": e.get("commands", 0),
            "acks": e.get("acks", 0),
            "expectations": {
                k: e.get(f"expect_{k}", 0)
                for k in ("msi", "lpi", "its_reg", "lpi_after_restore", "pending_after_restore")
            },
            "reconstructions": {
                "device_table_level2": len(rc["device_table_level2"]),
                "lpi_config_bytes": e.get("lpi_config_writes", 0),
                "lpi_config_bytes_by_reason": rc["lpi_config_bytes_by_reason"],
                "pending_bits": e.get("pending_bits_reconstructed", 0),
            },
            "unexplained_acks": m["unexplained_acks"]["count"],
            "skipped_lines": m["skipped_lines"],
            "warnings": m["qemu_only_semantics_and_anomalies"],
            "register_reads_qemu_vs_kvm": m["register_reads_qemu_vs_kvm"],
            "migration": None
            if "migration" not in m
            else {k: v for k, v in m["migration"].items() if k != "sides"},
            "seconds": round(self["seconds"], 3),
        }

    def text(self):
        m = self["metadata"]
        e = m["emitted"]
        lines = [
            f"wrote {self['out']}: {self['records']:,} records from {m['lines']:,} lines "
            f"in {self['seconds']:.2f} s",
            f"  vCPUs {self['vm']['vcpus']}, RAM {self['vm']['memory'][0][1] >> 20} MiB "
            f"({m['ram']['source']}), ITS at {self['vm']['itses'][0]['base']:#x}",
            f"  MSIs {self['msis']:,}, commands {e.get('commands', 0):,} "
            f"({e.get('commands_from_cmdq', 0):,} completed from the queue dump), "
            f"acks {e.get('acks', 0):,}",
            f"  expectations: msi {e.get('expect_msi', 0):,}, lpi {e.get('expect_lpi', 0):,}, "
            f"its_reg {e.get('expect_its_reg', 0):,}, "
            f"pending after restore {e.get('expect_pending_after_restore', 0):,}",
            f"  reconstructed: {len(m['reconstructed']['device_table_level2'])} device-table "
            f"level-2 page(s), {e.get('lpi_config_writes', 0)} LPI config bytes "
            f"{m['reconstructed']['lpi_config_bytes_by_reason']}, "
            f"{e.get('pending_bits_reconstructed', 0)} pending bits",
        ]
        if "migration" in m:
            mg = m["migration"]
            lines.append(
                f"  migration: {mg['source']} -> {mg['destination']}, {mg['records']} records "
                f"(save, fresh VM, restore), {mg['lpis_carried']} LPIs carried, "
                f"{mg['pending_after_restore']} pending after restore"
            )
        if m["unexplained_acks"]["count"]:
            lines.append(f"  unexplained acknowledges: {m['unexplained_acks']['count']}")
        sk = sum(m["skipped_lines"].values())
        if sk:
            lines.append(f"  skipped {sk} other lines: {m['skipped_lines']}")
        if m["register_reads_qemu_vs_kvm"]:
            lines.append(
                "  register reads where QEMU and KVM differ by design (not compared): "
                + ", ".join(sorted(m["register_reads_qemu_vs_kvm"]))
            )
        q = m["qemu_only_semantics_and_anomalies"]
        lines.append(f"  QEMU-only semantics / anomalies: {q or 'none'}")
        return "\n".join(lines)


def import_qemu(
    log,
    out,
    *,
    cmdq=None,
    lpiprop=None,
    cmdline=None,
    its_base=QEMU_VIRT_ITS_BASE,
    migrate_to=None,
    dst_cmdq=None,
    dst_lpiprop=None,
    dst_cmdline=None,
    progress=None,
) -> ImportSummary:
    """Convert a QEMU trace log (with migrate_to: a migration's source and destination) into
    trace file `out`; raises ImportFormatError on bad input (and then writes nothing)."""
    t0 = time.perf_counter()
    # before any work: never overwrite an input
    check_output(out, [log, cmdq, lpiprop, cmdline, migrate_to, dst_cmdq, dst_lpiprop, dst_cmdline])
    vm, meta, records = convert(
        log,
        cmdq=cmdq,
        lpiprop=lpiprop,
        cmdline=cmdline,
        its_base=its_base,
        migrate_to=migrate_to,
        dst_cmdq=dst_cmdq,
        dst_lpiprop=dst_lpiprop,
        dst_cmdline=dst_cmdline,
        progress=progress,
    )
    inputs = {"log": os.path.basename(os.fspath(log))}
    for k, v in (
        ("cmdq", cmdq),
        ("lpiprop", lpiprop),
        ("cmdline", cmdline),
        ("migrate_to", migrate_to),
        ("dst_cmdq", dst_cmdq),
        ("dst_lpiprop", dst_lpiprop),
        ("dst_cmdline", dst_cmdline),
    ):
        if v:
            inputs[k] = os.path.basename(os.fspath(v))
    meta["inputs"] = inputs
    source = f"qemu import of {inputs['log']}"
    if migrate_to:
        source += f" migrated to {inputs['migrate_to']}"
    try:
        nrec, msis = write_trace(out, vm, meta, records, source=source)
    except ValueError as e:  # a value the writer refuses: the log's, since the rest is ours
        raise ImportFormatError(f"cannot write the trace: {e}", path=os.fspath(log)) from None
    return ImportSummary(
        out=os.fspath(out),
        vm=vm,
        metadata=meta,
        records=nrec,
        msis=msis,
        seconds=time.perf_counter() - t0,
    )
