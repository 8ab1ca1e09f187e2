"""The QEMU 7.2 trace events the importer reads, and the parser of one log line.

EVENTS maps each trace-event name to its format string, verbatim from hw/intc/trace-events;
each is compiled into one small parser that returns the arguments in the declaration's
order, each bounded by the C type QEMU prints it from.
"""

import re

from gictools import regs as R

# the QEMU 7.2 trace events (hw/intc/trace-events), argument order as declared
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
LINE = re.compile(r"(?:([0-9]{1,20})@([0-9]{1,20})\.([0-9]{6}):)?([A-Za-z0-9_]+)( (.*))?").fullmatch
