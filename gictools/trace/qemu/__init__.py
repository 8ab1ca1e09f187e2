"""Import a QEMU (TCG) `log`-backend trace of the GICv3 ITS as a gictools trace v1.

    summary = import_qemu("x.trace.log.gz", "x.msgpack", cmdq="x.cmdq.txt",
                          lpiprop="x.lpiprop.txt", cmdline="x.cmdline.txt")
    summary = import_qemu("src.trace.log.gz", "m.msgpack", cmdq=..., migrate_to="dst.trace.log.gz",
                          dst_cmdq=..., dst_lpiprop=..., dst_cmdline=...)

One module per job:
    events.py       the QEMU 7.2 trace events and the parser of a log line
    inputs.py       the log (plain or gzip) and the auxiliary files (--cmdq, --lpiprop, --cmdline)
    importer.py     Importer: feed lines, dispatch events, finish()
    registers.py    register shadowing: MMIO events, KVM's write rules, `its_reg` checks
    translation.py  MSIs, QEMU's table lookups, acknowledges
    commands.py     ITS commands and the shadow ITS they update (shadow.py)
    reconstruct.py  guest memory the log cannot show (LPI config bytes, L2 pages, RAM)
    migration.py    a live migration's records and expectations
    output.py       trace records, header metadata, the trace file; summary.py: the report
    convert.py      the one-call forms convert() and import_qemu()
records.py, state.py and machine.py hold the records, the per-capture state and the
constants the others share. The whole log is parsed before the output file is opened, so
a malformed input raises ImportFormatError (with its line number) and leaves nothing
behind. The reasoning, and where QEMU's semantics differ from KVM's, is in
docs/import-qemu.md.
"""

from gictools.trace.qemu.convert import convert, import_qemu
from gictools.trace.qemu.events import EVENTS, PARSERS, EventParser
from gictools.trace.qemu.importer import Importer
from gictools.trace.qemu.inputs import read_cmdline, read_cmdq, read_lpiprop
from gictools.trace.qemu.machine import (
    QEMU_RDBASE_PROCNUM_MASK,
    QEMU_VIRT_ITS_BASE,
    QEMU_VIRT_RAM_BASE,
)
from gictools.trace.qemu.output import write_trace
from gictools.trace.qemu.summary import ImportSummary

__all__ = [
    "EVENTS",
    "PARSERS",
    "QEMU_RDBASE_PROCNUM_MASK",
    "QEMU_VIRT_ITS_BASE",
    "QEMU_VIRT_RAM_BASE",
    "EventParser",
    "ImportSummary",
    "Importer",
    "convert",
    "import_qemu",
    "read_cmdline",
    "read_cmdq",
    "read_lpiprop",
    "write_trace",
]
