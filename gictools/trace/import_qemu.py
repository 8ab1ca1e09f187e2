"""Import a QEMU (TCG) `log`-backend trace of the GICv3 ITS as a gictools trace v1.

    summary = import_qemu("x.trace.log.gz", "x.msgpack", cmdq="x.cmdq.txt",
                          lpiprop="x.lpiprop.txt", cmdline="x.cmdline.txt")

EVENTS maps each QEMU 7.2 trace-event name to its format string, verbatim from
hw/intc/trace-events, and is compiled into one small parser per event that
returns the arguments in the declaration's order. Importer.HANDLERS maps the
same names to what each event means for the trace. What the QEMU trace cannot
show (guest memory the driver wrote without an ITS access) is reconstructed in
a second step, finish(), and described in the header's metadata. The reasoning,
and where QEMU's semantics differ from KVM's, is in docs/import-qemu.md.

The whole log is parsed before the output file is opened, so a malformed input
raises ImportFormatError (with its line number) and leaves nothing behind.
"""

import gzip
import io
import os
import re
import time
import zlib
from collections import Counter

from gictools import regs as R
from gictools.errors import ImportFormatError
from gictools.model.commands import decode_command, encode_command
from gictools.outputs import check_output

QEMU_VIRT_ITS_BASE = 0x0808_0000  # hw/arm/virt.c VIRT_GIC_ITS
QEMU_VIRT_RAM_BASE = 0x4000_0000  # hw/arm/virt.c VIRT_MEM
QEMU_ITT_ENTRY_SIZE = 12  # QEMU's GITS_TYPER.ITT_entry_size + 1
LPI_BASE = R.LPI_BASE_INTID
SZ_64K = 0x10000
DEFAULT_PROP = 0xA2  # Linux: LPI_PROP_DEFAULT_PRIO | LPI_PROP_GROUP1
GITS_CWRITER = 0x88
GITS_TRANSLATER_OFFSET = 0x40  # within the translation frame (ITS base + 0x10000)
GICR_PROPBASER, GICR_PENDBASER, GICR_CTLR = R.GICR_PROPBASER, R.GICR_PENDBASER, R.GICR_CTLR

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
# The decoded-command event of each opcode (process_command's second argument).
CMD_EVENTS = {
    0x01: "gicv3_its_cmd_movi",
    0x03: "gicv3_its_cmd_int",
    0x04: "gicv3_its_cmd_clear",
    0x05: "gicv3_its_cmd_sync",
    0x08: "gicv3_its_cmd_mapd",
    0x09: "gicv3_its_cmd_mapc",
    0x0A: "gicv3_its_cmd_mapti",
    0x0B: "gicv3_its_cmd_mapi",
    0x0C: "gicv3_its_cmd_inv",
    0x0D: "gicv3_its_cmd_invall",
    0x0E: "gicv3_its_cmd_movall",
    0x0F: "gicv3_its_cmd_discard",
    0x21: "gicv3_its_cmd_vmovi",
    0x22: "gicv3_its_cmd_vmovp",
    0x25: "gicv3_its_cmd_vsync",
    0x29: "gicv3_its_cmd_vmapp",
    0x2A: "gicv3_its_cmd_vmapti",
    0x2B: "gicv3_its_cmd_vmapi",
    0x2D: "gicv3_its_cmd_vinvall",
}
_CONV = {"x": 16, "lx": 16, "d": 10, "u": 10}


class EventParser:
    """One trace event's format string compiled to a matcher: parse(text) -> tuple of ints."""

    __slots__ = ("name", "fmt", "_match", "_bases")

    def __init__(self, name, fmt):
        self.name, self.fmt = name, fmt
        parts = re.split(r"%(lx|x|d|u)", fmt)
        rx, self._bases = [], []
        for i, p in enumerate(parts):
            if i % 2 == 0:
                rx.append(re.escape(p))
            else:
                base = _CONV[p]
                self._bases.append(base)
                rx.append("([0-9a-fA-F]+)" if base == 16 else "(-?[0-9]+)")
        self._match = re.compile("".join(rx) + r"\s*").fullmatch

    def parse(self, text):
        m = self._match(text)
        if m is None:
            return None
        return tuple(int(g, b) for g, b in zip(m.groups(), self._bases))


PARSERS = {name: EventParser(name, fmt) for name, fmt in EVENTS.items()}
_LINE = re.compile(r"(?:([0-9]+)@([0-9]+)\.([0-9]+):)?(\S+)(?: (.*))?").fullmatch


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
                if any(not 0 <= w < 1 << 64 for w in words) or slot < 0:
                    raise ValueError
            except ValueError:
                raise ImportFormatError(
                    "expected 'SLOT DW0 DW1 DW2 DW3' in hex", line=n, path=path
                ) from None
            slots[slot] = b"".join(w.to_bytes(8, "little") for w in words)
    return slots


def read_lpiprop(path):
    """(default byte, {INTID: byte}) from a NAME.lpiprop.txt dump."""
    default, entries = DEFAULT_PROP, {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if line.startswith("#"):
                m = re.search(r"most common value 0x([0-9a-fA-F]+)", line)
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
                if intid < LPI_BASE or not 0 <= byte <= 0xFF:
                    raise ValueError
            except ValueError:
                raise ImportFormatError(
                    "expected 'INTID CONFIG-BYTE' in hex (INTID >= 0x2000)", line=n, path=path
                ) from None
            entries[intid] = byte
    if not 0 <= default <= 0xFF:
        raise ImportFormatError(f"default config byte {default:#x} out of range", path=path)
    return default, entries


def read_cmdline(path):
    """{"vcpus": N or None, "ram": bytes or None} from a QEMU command line file."""
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read().replace("\\,", ",")
    out = {"vcpus": None, "ram": None}
    m = re.search(r"(?:^|\s)-smp\s+(?:cpus=)?([0-9]+)", text)
    if m:
        out["vcpus"] = int(m.group(1))
    m = re.search(r"(?:^|\s)-m\s+(?:size=)?([0-9]+)([MGTK]?)", text)
    if m:
        mult = {"": 1 << 20, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "K": 1 << 10}[m.group(2)]
        out["ram"] = int(m.group(1)) * mult
    return out


def _open_text(path):
    with open(path, "rb") as f:
        magic = f.read(2)
    raw = gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline=None)


# --- the importer ----------------------------------------------------------------------------


class _MsiCtx:
    __slots__ = ("line", "dev", "ev", "exp_index", "intid", "icid", "stage")

    def __init__(self, line, dev, ev, exp_index):
        self.line, self.dev, self.ev, self.exp_index = line, dev, ev, exp_index
        self.intid = self.icid = None
        self.stage = 0  # 0 translation, 1 dte, 2 ite, 3 done


class _CmdCtx:
    __slots__ = ("line", "slot", "opcode", "decoded")

    def __init__(self, line, slot, opcode):
        self.line, self.slot, self.opcode, self.decoded = line, slot, opcode, False


class Importer:
    """Feed lines with feed(); finish() returns (vm, metadata, records).

    records are lists whose first element names the TraceWriter method (msi, command,
    reg, mem, expect, ack), then t_ns, injector and the method's positional args.
    """

    def __init__(
        self, *, cmdq=None, lpiprop=None, cmdline=None, its_base=QEMU_VIRT_ITS_BASE, path=None
    ):
        self.path = path
        self.cmdq = cmdq or {}
        self.cmdq_last = max(self.cmdq) if self.cmdq else None
        self.prop_default, self.prop_final = lpiprop if lpiprop else (DEFAULT_PROP, None)
        self.cmdline = cmdline or {}
        self.its_base = its_base
        self.records = []
        self.lineno = 0
        self.unterminated = False
        self.ctx = {}  # TID -> _MsiCtx / _CmdCtx
        self.counts = Counter()  # events handled
        self.skipped = Counter()  # lines of other events
        self.flags = Counter()  # QEMU-only semantics and unresolved things seen
        self.stats = Counter()  # what was emitted / reconstructed and why
        self.max_cpu = -1
        self.t0 = None
        self.its_regs = {}  # offset -> last value (written, or read for RO)
        self.baser0 = 0
        self.regions = []  # (gpa, size) guest memory known to be in use
        self.propbaser = None
        self.prop_table = None  # (gpa, size) of the initial table write
        self.l1_done = set()
        # shadow of the ITS state with KVM's semantics (DeviceID -> {EventID: [intid, icid]})
        self.devices = {}
        self.itt = {}  # DeviceID -> (itt_addr, size field)
        self.collections = {}  # ICID -> RDbase
        self.qemu_pending = Counter()  # INTID -> translations not yet acknowledged
        self.lpi_events = {}  # INTID -> [(kind, record index)]
        self.last_target = 0  # RDbase of the last command's collection (SYNC)
        self.last_mapc_icid = 0
        self.slots_seen = set()
        self.cmdq_usable = bool(self.cmdq)
        self.dump_index = None  # record index where the lpiprop dump was taken
        self.dump_lpis = None

    # -- errors -------------------------------------------------------------------------
    def error(self, what, line=None):
        return ImportFormatError(what, line=self.lineno if line is None else line, path=self.path)

    # -- input ----------------------------------------------------------------------------
    def feed(self, line):
        self.lineno += 1
        self.unterminated = not line.endswith("\n")  # QEMU ends every line; a cut does not
        line = line.rstrip("\r\n")
        m = _LINE(line)
        if m is None:
            self._skip("(blank or unparsable)" if line.strip() else "(blank)")
            return
        tid, sec, usec, name, text = m.groups()
        handler = self.HANDLERS.get(name)
        if handler is None:
            if name.startswith("gicv3_its_"):
                raise self.error(
                    f"unknown ITS trace event {name!r} (not one of QEMU 7.2's "
                    f"{len(EVENTS) - 2} gicv3_its_* events): a different QEMU "
                    f"version?"
                )
            self._skip(name.rstrip(":"))
            return
        args = PARSERS[name].parse(text or "")
        if args is None:
            raise self.error(
                f"{name}: {text!r} does not match QEMU 7.2's format "
                f"{EVENTS[name]!r} (a different QEMU version, or a cut line?)"
            )
        if sec is not None:
            if len(usec) != 6:
                raise self.error(f"timestamp {sec}.{usec}: expected 6 microsecond digits")
            t = int(sec) * 1_000_000_000 + int(usec) * 1000
            if self.t0 is None:
                self.t0 = t
            tid = int(tid)
            if tid > 0xFFFF_FFFF:
                raise self.error(f"thread id {tid} does not fit 32 bits")
        else:
            t = None
        self.counts[name] += 1
        handler(self, t, tid, args)

    def _skip(self, what):
        if self.unterminated:
            raise self.error("the capture ends in the middle of this line")
        self.skipped[what] += 1

    def _emit(self, *rec):
        self.records.append(list(rec))
        return len(self.records) - 1

    def _lpi_event(self, intid, kind, index=None):
        self.lpi_events.setdefault(intid, []).append(
            (kind, len(self.records) if index is None else index)
        )

    def _close(self, tid, *, eof=False):
        """End the open translation/command of thread tid."""
        c = self.ctx.pop(tid, None)
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
        if size not in (4, 8):
            self.flags[f"its_read_size_{size}"] += 1
            return
        if offset in (0x4, 0x8, 0xC) or offset >= 0xFFD0:
            self.its_regs.setdefault(offset, data)
        self._emit("reg", t, tid, "its", 0, offset, size, data, False)

    def on_its_write(self, t, tid, args):
        offset, data, size = args
        if size not in (4, 8):
            self.flags[f"its_write_size_{size}"] += 1
            return
        if offset & ~7 == GITS_CWRITER:
            # the queue's contents are not in the trace; the commands come as COMMAND records
            self.stats["cwriter_writes_suppressed"] += 1
            self.its_regs[offset] = data
            return
        self.its_regs[offset] = data
        if offset & ~7 == R.GITS_BASER and size == 8:
            self.baser0 = data
            self._table_region(data, SZ_64K)
        elif offset & ~7 == R.GITS_BASER + 8 and size == 8:
            self._table_region(data, SZ_64K)
        elif offset == 0x80 and size == 8 and data >> 63:
            self.regions.append((data & ((1 << 52) - 1) & ~0xFFF, ((data & 0xFF) + 1) << 12))
        self._emit("reg", t, tid, "its", 0, offset, size, data, True)

    def _table_region(self, baser, page):
        if baser >> 63:
            self.regions.append((baser & ((1 << 48) - 1) & ~0xFFF, ((baser & 0xFF) + 1) * page))

    def on_its_bad(self, t, tid, args):
        self.flags["its_bad_access"] += 1

    def on_redist_write(self, t, tid, args):
        cpu, offset, data, size, secure = args
        if secure:
            self.skipped["gicv3_redist_write (secure)"] += 1
            return
        if size not in (4, 8):
            self.flags[f"redist_write_size_{size}"] += 1
            return
        self.max_cpu = max(self.max_cpu, cpu)
        if offset == GICR_PROPBASER and size == 8:
            self._propbaser(t, tid, data)
        elif offset == GICR_PENDBASER and size == 8:
            self.regions.append((data & ((1 << 52) - 1) & ~0xFFFF, SZ_64K))
        self._emit("reg", t, tid, "redist", cpu, offset, size, data, True)

    def _propbaser(self, t, tid, value):
        gpa = value & ((1 << 52) - 1) & ~0xFFF
        nbits = (value & 0x1F) + 1
        size = (1 << nbits) - LPI_BASE if nbits > 13 else 0
        if self.propbaser is None and size > 0:
            # Linux fills the table with LPI_PROP_DEFAULT_PRIO | GROUP1 before programming it
            self._emit("mem", t, tid, gpa, bytes([self.prop_default]) * size)
            self.prop_table = (gpa, size)
            self.stats["lpi_config_initial_bytes"] = size
        if self.propbaser is None or self.propbaser != value:
            self.regions.append((gpa, max(size, 1)))
        self.propbaser = value

    def _prop_gpa(self, intid):
        if self.propbaser is None:
            return None
        return (self.propbaser & ((1 << 52) - 1) & ~0xFFF) + intid - LPI_BASE

    # -- MSIs, table reads, acknowledges -----------------------------------------------------
    def on_translation_write(self, t, tid, args):
        offset, data, size, requester_id = args
        self._close(tid)
        if offset != GITS_TRANSLATER_OFFSET:
            self.flags["translation_frame_other_offset"] += 1
            return
        event_id = data & (0xFFFF if size == 2 else 0xFFFF_FFFF)
        self._emit("msi", t, tid, 0, requester_id, event_id)
        exp = self._emit("expect", t, tid, "msi", None)  # filled in when QEMU resolves it
        self.ctx[tid] = _MsiCtx(self.lineno, requester_id, event_id, exp)

    def on_dte_read(self, t, tid, args):
        c = self.ctx.get(tid)
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
        c = self.ctx.get(tid)
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
        c = self.ctx.get(tid)
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
        self.max_cpu = max(self.max_cpu, rdbase)
        self.records[c.exp_index][4] = {"ret": 1, "intid": c.intid, "vcpu": rdbase}
        self.stats["expect_msi"] += 1
        self.qemu_pending[c.intid] += 1
        mine = self.devices.get(c.dev, {}).get(c.ev)
        if mine is None or mine[0] != c.intid or self.collections.get(mine[1]) != rdbase:
            self.flags["msi_translation_differs_from_kvm"] += 1
        c.stage = 3
        self._close(tid)

    def on_table_fault(self, t, tid, args):
        self.flags["table_read_fault"] += 1
        if isinstance(self.ctx.get(tid), _MsiCtx):
            self._close(tid)

    def on_table_write(self, t, tid, args):
        pass  # QEMU's side of a command we already have

    def on_iar1_read(self, t, tid, args):
        cpu, value = args
        self.max_cpu = max(self.max_cpu, cpu)
        if value < LPI_BASE or value > 0xFFFF_FFFF:
            self.stats["acks_below_8192"] += 1
            return
        self._lpi_event(value, "ack")
        self._emit("ack", t, tid, cpu, value)
        self.stats["acks"] += 1
        if self.qemu_pending[value] > 0:
            self.qemu_pending[value] -= 1

    # -- commands -----------------------------------------------------------------------------
    def on_process_command(self, t, tid, args):
        slot, opcode = args
        self._close(tid)
        self.ctx[tid] = _CmdCtx(self.lineno, slot, opcode)

    def _command(self, t, tid, name, **fields):
        """The decoded-command line of thread tid's open process_command: one COMMAND record."""
        c = self.ctx.get(tid)
        ev = f"gicv3_its_cmd_{name.lower()}"
        if not isinstance(c, _CmdCtx) or c.decoded:
            raise self.error(f"{ev} without a preceding gicv3_its_process_command")
        if CMD_EVENTS.get(c.opcode) != ev and name != "UNKNOWN":
            raise self.error(f"{ev} after process_command of opcode {c.opcode:#x} (line {c.line})")
        c.decoded = True
        if self.cmdq_last is not None and c.slot > self.cmdq_last and self.dump_index is None:
            self._dump_here(t)
        if c.slot in self.slots_seen:
            self.cmdq_usable = False  # the queue wrapped: the dump is newer
        self.slots_seen.add(c.slot)
        raw = self.cmdq.get(c.slot) if self.cmdq_usable else None
        if raw is not None:
            got, gfields = decode_command(raw)
            want = dict(fields)
            if name == "MAPC":  # QEMU keeps a 16-bit processor number
                want.pop("RDbase") if not fields["V"] else want.update(
                    RDbase=fields["RDbase"] & 0xFFFF
                )
                gfields = dict(gfields, RDbase=gfields["RDbase"] & 0xFFFF)
            if got != name or any(gfields.get(k) != v for k, v in want.items()):
                raise self.error(
                    f"the command queue dump has {got} {gfields} in slot "
                    f"{c.slot:#x}, the trace {name} {fields}: not the same capture?"
                )
            self.stats["commands_from_cmdq"] += 1
        return c, raw

    def _cmd_record(self, t, tid, name, raw, **fields):
        if raw is None:
            raw = encode_command(name, **fields)
        self._emit("command", t, tid, 0, raw)
        self.stats["commands"] += 1
        return raw

    def _target(self, icid):
        return self.collections.get(icid, 0)

    def on_cmd_mapd(self, t, tid, args):
        dev, size, itt, valid = args
        c, raw = self._command(t, tid, "MAPD", DeviceID=dev, Size=size, ITT_addr=itt, V=valid)
        self._l1_entry(t, tid, dev)
        old = self.devices.pop(dev, None)
        if old:
            self.flags["mapd_remap_with_ites" if valid else "mapd_unmap_with_ites"] += 1
            for intid, _ in old.values():
                self._lpi_event(intid, "unmap")
        if valid:
            self.devices[dev] = {}
            self.itt[dev] = (itt << 8, size)
            n = max(256, (2 << size) * QEMU_ITT_ENTRY_SIZE)
            self.regions.append((itt << 8, n))
        self._cmd_record(t, tid, "MAPD", raw, DeviceID=dev, Size=size, ITT_addr=itt, V=valid)

    def _l1_entry(self, t, tid, dev):
        """Linux writes a level-1 entry (and zeroes a level-2 page) before the first MAPD of a
        DeviceID range of a two-level device table; none of that is an ITS access."""
        b = self.baser0
        if not (b >> 63 and b >> 62 & 1):
            return
        esz = ((b >> 48) & 0x1F) + 1
        page = {0: 0x1000, 1: 0x4000}.get((b >> 8) & 3, SZ_64K)
        index = dev // (page // esz)
        if (b, index) in self.l1_done:
            return
        self.l1_done.add((b, index))
        l1 = (b & ((1 << 48) - 1) & ~0xFFF) + 8 * index
        self._emit("l1", t, tid, l1, page)  # finish() places the level-2 page

    def on_cmd_mapc(self, t, tid, args):
        icid, rdbase, valid = args
        c, raw = self._command(t, tid, "MAPC", ICID=icid, RDbase=rdbase, V=valid)
        if valid:
            self.max_cpu = max(self.max_cpu, rdbase)
            old = self.collections.get(icid)
            if (
                old is not None
                and old != rdbase
                and any(e[1] == icid for d in self.devices.values() for e in d.values())
            ):
                self.flags["mapc_retarget_live_collection"] += 1
            self.collections[icid] = rdbase
            self.last_target = rdbase
        else:
            self.flags["mapc_unmap"] += 1
            self.collections.pop(icid, None)
        self.last_mapc_icid = icid
        self._cmd_record(t, tid, "MAPC", raw, ICID=icid, RDbase=rdbase, V=valid)

    def _mapti(self, t, tid, name, dev, ev, icid, intid):
        fields = dict(DeviceID=dev, EventID=ev, ICID=icid)
        if name == "MAPTI":
            fields["pINTID"] = intid
        c, raw = self._command(t, tid, name, **fields)
        ites = self.devices.get(dev)
        if ites is None:
            self.flags["mapti_unmapped_device"] += 1
        elif ev in ites:
            self.flags["mapti_over_existing_ite"] += 1  # QEMU overwrites, KVM ignores
        else:
            ites[ev] = [intid, icid]
            self._lpi_event(intid, "map")
            self._emit("cfg", t, tid, intid, None, self._prop_gpa(intid))  # only if needed
        self.last_target = self._target(icid)
        self._cmd_record(t, tid, name, raw, **fields)

    def on_cmd_mapti(self, t, tid, args):
        self._mapti(t, tid, "MAPTI", *args)

    def on_cmd_mapi(self, t, tid, args):
        dev, ev, icid = args
        self._mapti(t, tid, "MAPI", dev, ev, icid, ev)

    def _ite(self, dev, ev):
        return self.devices.get(dev, {}).get(ev)

    def on_cmd_movi(self, t, tid, args):
        dev, ev, icid = args
        c, raw = self._command(t, tid, "MOVI", DeviceID=dev, EventID=ev, ICID=icid)
        ite = self._ite(dev, ev)
        # Linux syncs the collection the event was on (its_build_movi_cmd: dev_event_to_col,
        # which the driver updates only after the command)
        self.last_target = self._target(icid if ite is None else ite[1])
        if ite is not None and icid in self.collections:
            ite[1] = icid
        self._cmd_record(t, tid, "MOVI", raw, DeviceID=dev, EventID=ev, ICID=icid)

    def on_cmd_discard(self, t, tid, args):
        dev, ev = args
        c, raw = self._command(t, tid, "DISCARD", DeviceID=dev, EventID=ev)
        ite = self._ite(dev, ev)
        if ite is not None:
            self.last_target = self._target(ite[1])
            del self.devices[dev][ev]
            self._lpi_event(ite[0], "discard")
            if self.qemu_pending[ite[0]] > 0:
                self.flags["discard_while_pending"] += 1
        self._cmd_record(t, tid, "DISCARD", raw, DeviceID=dev, EventID=ev)

    def on_cmd_inv(self, t, tid, args):
        dev, ev = args
        c, raw = self._command(t, tid, "INV", DeviceID=dev, EventID=ev)
        ite = self._ite(dev, ev)
        if ite is None:
            self.flags["inv_unmapped"] += 1
        else:
            self.last_target = self._target(ite[1])
            gpa = self._prop_gpa(ite[0])
            if gpa is not None:
                self._lpi_event(ite[0], "inv")
                self._emit("cfg", t, tid, ite[0], None, gpa)
        self._cmd_record(t, tid, "INV", raw, DeviceID=dev, EventID=ev)

    def on_cmd_invall(self, t, tid, args):
        c, raw = self._command(t, tid, "INVALL")
        if raw is None:
            icid = self.last_mapc_icid  # Linux: MAPC, SYNC, INVALL of one collection
            self.stats["invall_icid_inferred"] += 1
        else:
            icid = decode_command(raw)[1]["ICID"]
        rd = self.collections.get(icid)
        if rd is not None:
            self.last_target = rd
            for d in self.devices.values():
                for intid, ic in d.values():
                    if self.collections.get(ic) == rd:
                        self._lpi_event(intid, "invall")
                        self._emit("cfg", t, tid, intid, None, self._prop_gpa(intid))
        self._cmd_record(t, tid, "INVALL", raw, ICID=icid)

    def on_cmd_sync(self, t, tid, args):
        c, raw = self._command(t, tid, "SYNC")
        if raw is None:
            self.stats["sync_rdbase_inferred"] += 1
        self._cmd_record(t, tid, "SYNC", raw, RDbase=self.last_target)

    def on_cmd_movall(self, t, tid, args):
        rd1, rd2 = args
        c, raw = self._command(t, tid, "MOVALL", RDbase=rd1, RDbase2=rd2)
        self.flags["movall"] += 1  # QEMU moves pending bits; KVM retargets LPIs
        self.last_target = rd2
        self._cmd_record(t, tid, "MOVALL", raw, RDbase=rd1, RDbase2=rd2)

    def _devev(name):
        def handler(self, t, tid, args):
            dev, ev = args
            c, raw = self._command(t, tid, name, DeviceID=dev, EventID=ev)
            self.flags[name.lower()] += 1
            ite = self._ite(dev, ev)
            if ite is not None:
                self.last_target = self._target(ite[1])
                if name == "INT":
                    self.qemu_pending[ite[0]] += 1
            self._cmd_record(t, tid, name, raw, DeviceID=dev, EventID=ev)

        return handler

    def on_cmd_virtual(self, t, tid, args):
        c = self.ctx.get(tid)
        if not isinstance(c, _CmdCtx) or c.decoded:
            raise self.error("a GICv4 command line without a preceding process_command")
        opcode = c.opcode
        c.decoded = True
        self.flags["gicv4_commands"] += 1  # KVM's vITS ignores every V* command
        raw = self.cmdq.get(c.slot) if self.cmdq_usable else None
        if raw is None or raw[0] != opcode:
            raw = bytes([opcode]) + bytes(31)
        self._emit("command", t, tid, 0, raw)
        self.stats["commands"] += 1

    def on_cmd_unknown(self, t, tid, args):
        c = self.ctx.get(tid)
        if not isinstance(c, _CmdCtx) or c.decoded:
            raise self.error("gicv3_its_cmd_unknown without a preceding process_command")
        c.decoded = True
        self.flags["unknown_commands"] += 1
        raw = self.cmdq.get(c.slot) if self.cmdq_usable else None
        if raw is None or raw[0] != args[0] & 0xFF:
            raw = bytes([args[0] & 0xFF]) + bytes(31)
        self._emit("command", t, tid, 0, raw)
        self.stats["commands"] += 1

    def _dump_here(self, t):
        """The pmemsave dumps (cmdq, lpiprop) were taken here: after the last command they hold."""
        self.dump_index = self._emit("dump", t, None)
        self.dump_lpis = {
            intid: (dev, ev) for dev, d in self.devices.items() for ev, (intid, _) in d.items()
        }

    HANDLERS = {
        "gicv3_its_read": on_its_read,
        "gicv3_its_badread": on_its_bad,
        "gicv3_its_write": on_its_write,
        "gicv3_its_badwrite": on_its_bad,
        "gicv3_its_translation_write": on_translation_write,
        "gicv3_its_process_command": on_process_command,
        "gicv3_its_cmd_int": _devev("INT"),
        "gicv3_its_cmd_clear": _devev("CLEAR"),
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
        "gicv3_its_cte_write": on_table_write,
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

    # -- reconstruction ---------------------------------------------------------------------
    def finish(self):
        """Close open contexts, reconstruct guest memory; (vm, metadata, records)."""
        if self.lineno == 0:
            raise self.error("empty file: no trace lines", line=1)
        for tid in list(self.ctx):
            self._close(tid, eof=True)
        if self.max_cpu < 0 or not self.counts:
            raise self.error(
                "no GICv3 ITS, redistributor or ICC_IAR1 events: not a QEMU "
                "GICv3 ITS trace (or none of its events were enabled)"
            )
        if self.dump_index is None:
            self._dump_here(self.records[-1][1] if self.records else None)
        vcpus = self.max_cpu + 1
        if self.cmdline.get("vcpus"):
            vcpus = max(vcpus, self.cmdline["vcpus"])
        self._lpi_config()
        memory = self._place_l2_and_ram()
        records = self._final_records()
        vm = {
            "vcpus": vcpus,
            "memory": [[QEMU_VIRT_RAM_BASE, memory]],
            "itses": [{"base": self.its_base}],
        }
        return vm, self._metadata(vcpus, memory), records

    def _lpi_config(self):
        """Decide every reconstructed LPI configuration byte (docs/import-qemu.md §4).

        Config loads (KVM re-reads the byte) are MAPTI (a new LPI), INV and INVALL. The
        guest writes the byte before each INV; an LPI acknowledged after a load must have
        been enabled by it."""
        recs = self.records
        dump = self.dump_index
        final = self.prop_final or {}
        why = Counter()
        for intid, evs in self.lpi_events.items():
            prio = final.get(intid, self.prop_default) & 0xFC
            on, off = prio | 0x3, prio | 0x2
            cur = self.prop_default
            loads = [i for i, (k, _) in enumerate(evs) if k in ("map", "inv", "invall")]
            for n, i in enumerate(loads):
                kind, idx = evs[i]
                end = loads[n + 1] if n + 1 < len(loads) else len(evs)
                window = evs[i + 1 : end]
                acked = any(k == "ack" for k, _ in window)
                cfg = idx  # the placeholder emitted with the load
                assert recs[cfg][0] == "cfg" and recs[cfg][3] == intid
                if kind == "inv":
                    last_before_dump = idx < dump and (
                        n + 1 == len(loads) or evs[loads[n + 1]][1] > dump
                    )
                    if acked:
                        val, reason = on, "delivered_after"
                    elif last_before_dump and intid in final:
                        val, reason = final[intid], "final_table"
                    elif last_before_dump and self.prop_final is not None:
                        val, reason = self.prop_default, "final_table"
                    elif window and window[0][0] in ("discard", "unmap"):
                        val, reason = off, "masked_before_discard"
                    else:
                        val, reason = on, "unmask"
                    recs[cfg][4] = val
                    why[reason] += 1
                    cur = val
                elif acked and not cur & 1:
                    recs[cfg][4] = on  # delivered though no INV enabled it
                    why[f"delivered_after_{kind}"] += 1
                    cur = on
        self.stats["lpi_config_writes"] = sum(why.values())
        self.config_reasons = dict(why)
        # consistency: every acknowledged LPI enabled at that point; the dump matches
        bad = 0
        state = {}
        lpi_at_dump = {}
        for i, r in enumerate(recs):
            if r[0] == "cfg" and r[4] is not None:
                state[r[3]] = r[4]
            elif r[0] == "ack" and not state.get(r[4], self.prop_default) & 1:
                bad += 1
            elif i == dump:
                lpi_at_dump = dict(state)
        self.flags["acks_of_disabled_lpi"] += bad
        if self.prop_final is not None:
            mism = [
                i
                for i in self.dump_lpis
                if lpi_at_dump.get(i, self.prop_default) != final.get(i, self.prop_default)
            ]
            self.flags["final_table_mismatch"] += len(mism)
        for k in [k for k, v in self.flags.items() if not v]:
            del self.flags[k]

    def _place_l2_and_ram(self):
        """Choose the level-2 device-table pages (free guest RAM), then the RAM size."""
        l1s = [r for r in self.records if r[0] == "l1"]
        regions = sorted((g, s) for g, s in self.regions if g >= QEMU_VIRT_RAM_BASE)
        top = max((g + s for g, s in regions), default=QEMU_VIRT_RAM_BASE)
        nxt = (top + SZ_64K - 1) & ~(SZ_64K - 1)
        self.l2_pages = []
        for r in l1s:
            page = r[4]
            nxt = (nxt + page - 1) & ~(page - 1)
            r.append(nxt)
            self.l2_pages.append({"l1_entry_gpa": r[3], "l2_page_gpa": nxt, "size": page})
            nxt += page
        need = nxt - QEMU_VIRT_RAM_BASE
        ram = self.cmdline.get("ram")
        if ram is None:
            ram = 128 << 20
            while ram < need:
                ram <<= 1
            self.ram_source = "inferred from the addresses the trace names"
        else:
            if ram < need:
                raise self.error(
                    f"the command line's -m ({ram >> 20} MiB) is smaller than the "
                    f"guest addresses the trace uses ({need >> 20} MiB above "
                    f"{QEMU_VIRT_RAM_BASE:#x})"
                )
            self.ram_source = "command line -m"
        return ram

    def _final_records(self):
        out = []
        for r in self.records:
            kind = r[0]
            if kind == "cfg":
                if r[4] is not None and r[5] is not None:
                    out.append(["mem", r[1], r[2], r[5], bytes([r[4]])])
            elif kind == "l1":
                _, t, inj, l1_gpa, page, l2 = r
                out.append(["mem", t, inj, l2, bytes(page)])
                out.append(["mem", t, inj, l1_gpa, ((1 << 63) | l2).to_bytes(8, "little")])
            elif kind == "expect":
                if r[4] is not None:
                    out.append(r)
            elif kind == "dump":
                if self.prop_final is not None:
                    final = self.prop_final
                    for intid in sorted(self.dump_lpis):
                        b = final.get(intid, self.prop_default)
                        out.append(
                            [
                                "expect",
                                r[1],
                                None,
                                "lpi",
                                {
                                    "intid": intid,
                                    "exists": True,
                                    "priority": b & 0xFC,
                                    "enabled": bool(b & 1),
                                },
                            ]
                        )
                        self.stats["expect_lpi"] += 1
            else:
                out.append(r)
        return out

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
        for off, v in sorted(self.its_regs.items()):
            if R.GITS_BASER <= off < R.GITS_BASER + 0x40:
                name = f"GITS_BASER{(off - R.GITS_BASER) // 8}"
            else:
                name = names.get(off, f"{off:#x}")
            regs[name] = v
        meta = {
            "importer": "gictools.trace.import_qemu",
            "qemu_trace_backend": "log",
            "qemu_version_format": "7.2",
            "clock": (
                "t_ns = the trace's TID@SEC.USEC stamp (host gettimeofday, CLOCK_REALTIME) "
                "in ns since the Unix epoch; injector = the host thread id"
                if self.t0 is not None
                else "the trace has no timestamps"
            ),
            "t0_ns": self.t0,
            "lines": self.lineno,
            "events": dict(sorted(self.counts.items())),
            "skipped_lines": dict(sorted(self.skipped.items())),
            "vcpus_from": "highest redistributor / CPU / RDbase number seen + 1"
            + (", raised to the command line's -smp" if self.cmdline.get("vcpus") else ""),
            "ram": {"base": QEMU_VIRT_RAM_BASE, "size": ram, "source": self.ram_source},
            "its_registers": regs,
            "emitted": dict(sorted(self.stats.items())),
            "reconstructed": {
                "device_table_level2": self.l2_pages,
                "lpi_config_table": None
                if self.prop_table is None
                else {
                    "gpa": self.prop_table[0],
                    "size": self.prop_table[1],
                    "initial_byte": self.prop_default,
                },
                "lpi_config_bytes_by_reason": dict(sorted(self.config_reasons.items())),
                "final_table_from": "lpiprop dump" if self.prop_final is not None else None,
            },
            "qemu_only_semantics_and_anomalies": dict(sorted(self.flags.items())),
        }
        return meta


# --- the one-call form ------------------------------------------------------------------------


def convert(log, *, cmdq=None, lpiprop=None, cmdline=None, its_base=QEMU_VIRT_ITS_BASE):
    """Parse a QEMU trace log (and the optional dumps); (vm, metadata, records)."""
    log = os.fspath(log)
    imp = Importer(
        cmdq=read_cmdq(cmdq) if cmdq else None,
        lpiprop=read_lpiprop(lpiprop) if lpiprop else None,
        cmdline=read_cmdline(cmdline) if cmdline else None,
        its_base=its_base,
        path=log,
    )
    try:
        with _open_text(log) as f:
            feed = imp.feed
            for line in f:
                feed(line)
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise ImportFormatError(
            f"damaged gzip stream after {imp.lineno} complete lines ({e or type(e).__name__})",
            line=imp.lineno + 1,
            path=log,
        ) from None
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
            "expect": w.expect,
            "ack": w.ack,
        }
        for r in records:
            methods[r[0]](*r[3:], t_ns=r[1], injector=r[2])
        return w.records, w.events


class ImportSummary(dict):
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
            f"  expectations: msi {e.get('expect_msi', 0):,}, lpi {e.get('expect_lpi', 0):,}",
            f"  reconstructed: {len(m['reconstructed']['device_table_level2'])} device-table "
            f"level-2 page(s), {e.get('lpi_config_writes', 0)} LPI config bytes "
            f"{m['reconstructed']['lpi_config_bytes_by_reason']}",
        ]
        sk = sum(m["skipped_lines"].values())
        if sk:
            lines.append(f"  skipped {sk} lines of other events: {m['skipped_lines']}")
        q = m["qemu_only_semantics_and_anomalies"]
        lines.append(f"  QEMU-only semantics / anomalies: {q or 'none'}")
        return "\n".join(lines)


def import_qemu(
    log, out, *, cmdq=None, lpiprop=None, cmdline=None, its_base=QEMU_VIRT_ITS_BASE
) -> ImportSummary:
    """Convert a QEMU trace log into trace file `out`; raises ImportFormatError on bad input
    (and then writes nothing)."""
    t0 = time.perf_counter()
    check_output(out, [log, cmdq, lpiprop, cmdline])  # before any work: never overwrite an input
    vm, meta, records = convert(log, cmdq=cmdq, lpiprop=lpiprop, cmdline=cmdline, its_base=its_base)
    inputs = {"log": os.path.basename(os.fspath(log))}
    for k, v in (("cmdq", cmdq), ("lpiprop", lpiprop), ("cmdline", cmdline)):
        if v:
            inputs[k] = os.path.basename(os.fspath(v))
    meta["inputs"] = inputs
    nrec, msis = write_trace(out, vm, meta, records, source=f"qemu import of {inputs['log']}")
    return ImportSummary(
        out=os.fspath(out),
        vm=vm,
        metadata=meta,
        records=nrec,
        msis=msis,
        seconds=time.perf_counter() - t0,
    )
