"""The importer's state per capture (Side, with the open lookups of each thread) and the
evidence gathered for what the log cannot show (Reconstruction)."""

from collections import Counter
from dataclasses import dataclass, field

from gictools.trace.qemu.machine import DEFAULT_PROP
from gictools.trace.qemu.records import DumpPoint, MsiExpect


@dataclass
class MsiCtx:
    line: int
    dev: int
    ev: int
    expect: MsiExpect
    intid: int | None = None
    icid: int | None = None
    stage: int = 0  # 0 translation, 1 dte, 2 ite, 3 done


@dataclass
class CmdCtx:
    line: int
    slot: int
    opcode: int
    decoded: bool = False


@dataclass
class Side:
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
    ctx: dict = field(default_factory=dict)  # TID -> MsiCtx / CmdCtx
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
class Reconstruction:
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
