"""The importer's records in trace order: Rec is final (a TraceWriter method and its
arguments); the others are placeholders decided once the whole log has been read."""

from dataclasses import dataclass, field


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
