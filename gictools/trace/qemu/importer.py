"""The importer: QEMU log lines in, trace records out.

Importer reads one line at a time (feed), dispatches each event to its handler, and keeps
the records in trace order until finish() has reconstructed what the log cannot show. The
handlers live by concern in MmioEvents (registers.py), TranslationEvents (translation.py)
and CommandEvents (commands.py); the reconstruction in reconstruct.py; a migration's
records in migration.py; the trace's header and records in output.py.
"""

from collections import Counter

from gictools.errors import ImportFormatError
from gictools.trace import format as F
from gictools.trace.qemu import migration, output, reconstruct
from gictools.trace.qemu.commands import CommandEvents
from gictools.trace.qemu.events import EVENTS, LINE, PARSERS
from gictools.trace.qemu.machine import (
    DEFAULT_PROP,
    MAX_RECORDS,
    MAX_SKIP_NAMES,
    QEMU_VIRT_ITS_BASE,
    QEMU_VIRT_RAM_BASE,
)
from gictools.trace.qemu.records import DumpPoint, Rec
from gictools.trace.qemu.registers import MmioEvents, Registers
from gictools.trace.qemu.shadow import Shadow
from gictools.trace.qemu.state import CmdCtx, Reconstruction, Side
from gictools.trace.qemu.translation import TranslationEvents


class Importer(MmioEvents, TranslationEvents, CommandEvents):
    """Feed lines with feed(); migrate() starts a destination; finish() returns
    (vm, metadata, records), records being lists [TraceWriter method, t_ns, injector, *args]."""

    def __init__(
        self, *, cmdq=None, lpiprop=None, cmdline=None, its_base=QEMU_VIRT_ITS_BASE, path=None
    ):
        self.its_base = its_base
        self.sides = [self._side(path, cmdq, lpiprop, cmdline)]
        self.side = self.sides[0]
        self.records = []  # Rec and the placeholders above, in trace order
        self.regs = Registers()
        self.shadow = Shadow()
        self.recon = Reconstruction()
        self.flags = Counter()  # QEMU-only semantics and unresolved things seen
        self.stats = Counter()  # what was emitted / reconstructed and why
        self.differences = {}  # register -> {"not_compared": why, "reads": n, "qemu": value}
        self.max_cpu = -1
        self.migration = None

    @staticmethod
    def _side(path, cmdq, lpiprop, cmdline):
        default, final = lpiprop if lpiprop else (DEFAULT_PROP, None)
        return Side(
            path=path,
            cmdq=cmdq or {},
            prop_default=default,
            prop_final=final,
            cmdline=cmdline or {},
        )

    @property
    def lineno(self):
        return self.side.lineno

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

    def feed(self, line):
        side = self.side
        side.lineno += 1
        side.unterminated = not line.endswith("\n")  # QEMU ends every line; a cut does not
        line = line.rstrip("\r\n")
        m = LINE(line)
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
        if isinstance(c, CmdCtx):
            if not c.decoded:
                raise self.error(
                    f"{'the capture ends inside a command: ' if eof else ''}process_command "
                    f"(slot {c.slot:#x}, opcode {c.opcode:#x}) has no decoded command line "
                    f"after it",
                    line=c.line,
                )
        elif c.stage < 3:
            self.flags["msi_unresolved"] += 1  # no expectation: QEMU did not deliver it

    def _dump_here(self, t):
        """The pmemsave dumps (cmdq, lpiprop) were taken here: after the last command they hold."""
        lpis = {
            intid: (dev, ev)
            for dev, d in self.shadow.devices.items()
            for ev, (intid, _) in d.items()
        }
        self.side.dump = DumpPoint(t, len(self.sides) - 1, lpis)
        self.side.dump_index = self._emit(self.side.dump)

    HANDLERS = {**MmioEvents.HANDLERS, **TranslationEvents.HANDLERS, **CommandEvents.HANDLERS}
    assert set(HANDLERS) == set(EVENTS)

    def _end_side(self):
        """Close the current capture: open contexts, and its dump point (at its end)."""
        side = self.side
        for tid in list(side.ctx):
            self._close(tid, eof=True)
        if side.dump is None:
            self._dump_here(side.t_last)

    def migrate(self, *, cmdq=None, lpiprop=None, cmdline=None, path=None):
        """End the source capture and emit the migration as KVM userspace performs it
        (migration.py); lines fed afterwards are the destination's."""
        self._check_nonempty()
        self._end_side()
        migration.start_destination(self, self._side(path, cmdq, lpiprop, cmdline))

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
        reconstruct.decide_config_bytes(self)
        migration.decide_pending_after_restore(self)
        memory = reconstruct.place_l2_and_ram(self)
        records = output.final_records(self, vcpus)
        vm = {
            "vcpus": vcpus,
            "memory": [[QEMU_VIRT_RAM_BASE, memory]],
            "itses": [{"base": self.its_base}],
        }
        return vm, output.metadata(self, vcpus, memory), records
