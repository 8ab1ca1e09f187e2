"""Replayer: one streaming pass over one trace, each record to every policy's VM."""

import json
import os
from collections.abc import Callable
from dataclasses import dataclass

from gictools import __version__
from gictools.errors import ConfigError, TraceFormatError
from gictools.files import file_sha256
from gictools.latency.model import LatencyModel
from gictools.model.cache import policy_class
from gictools.model.kernel import parse_version
from gictools.outputs import check_output
from gictools.replay import records
from gictools.replay.block import msi_block_record, msi_record
from gictools.replay.policy_run import PolicyRun
from gictools.replay.sink import Sink
from gictools.trace import format as F
from gictools.trace.reader import TraceReader


@dataclass(frozen=True)
class TraceSource:
    """Which trace this is among several sharing one output: its name in reports and
    metadata ("<stdin>"; default its path), its SHA-256 if known, its index."""

    name: str | None = None
    sha256: str | None = None
    index: int = 0


def _cannot_build(e, trace):
    return TraceFormatError(
        f"header describes a VM the model cannot build: {e}",
        record=0,
        offset=0,
        field="vm",
        path=trace,
    )


class Replayer:
    """Replays one trace for several policies; see replay() for the one-call form.

    writer/source let run_replayers() share one Parquet file among traces.
    """

    MAX_FAILURES = 20  # failed expectations kept per policy (all are counted)
    HANDLERS = {
        F.MSI: msi_record,
        F.MSI_BLOCK: msi_block_record,
        F.COMMAND: records.command_record,
        F.REG: records.reg_record,
        F.MEM: records.mem_record,
        F.CTRL: records.ctrl_record,
        F.EXPECT: records.expect_record,
        F.ACK: records.ack_record,
    }

    def __init__(
        self,
        trace,
        policies=("default",),
        kernel=None,
        out=None,
        latency: LatencyModel | None = None,
        *,
        writer=None,
        source: TraceSource | None = None,
    ):
        source = source or TraceSource()
        self.path = os.fspath(trace)
        self.trace = source.name or self.path  # the name in reports and metadata ("<stdin>")
        self.policy_args = list(policies)
        if out is not None:
            check_output(out, [self.path])  # before any work: never overwrite the trace
        for p in policies:
            if p != "default":
                policy_class(p)
        if kernel is not None:
            parse_version(kernel)  # the user's --kernel: a ConfigError of its own
        self._open_trace(source.name)
        try:
            self.runs = [PolicyRun(self.header, p, kernel, i) for i, p in enumerate(policies)]
        except (ConfigError, ValueError) as e:  # ValueError: RAM slots, ITS frames
            raise _cannot_build(e, self.trace) from None
        names = [r.policy for r in self.runs]
        if len(set(names)) != len(names):
            raise ConfigError(f"cache policy given twice: {names}")
        self.kernel = kernel
        self.latency = latency or LatencyModel()
        costs = self.latency.costs
        for r in self.runs:  # a contention-free model's price per outcome code
            r.costs_ns, r.costs = costs, costs.tolist()
            r.sink = Sink(None, r.index, source.index, self.latency, r.report)  # see _open
        self.out = out
        self.writer = writer
        self._own_writer = writer is None
        self.trace_index = source.index
        self.seq = 0
        self.records = 0
        self._sha256 = source.sha256  # hashed on first use (a --jobs parent hashes meanwhile)
        self._meta = self._static_meta(names)

    def _open_trace(self, name):
        self._file = None
        if name is None:
            self.reader = TraceReader(self.path)
        else:
            self._file = open(self.path, "rb")
            self._file.raw.name = name  # errors name "<stdin>", not the spooled copy
            try:
                self.reader = TraceReader(self._file)
            except BaseException:
                self._file.close()
                raise
        self.header = self.reader.header

    def _static_meta(self, names):
        for r in self.runs:
            r.report.trace, r.report.preset = self.trace, self.latency.name
        meta = {
            "gictools_version": __version__,
            "cache_policy": json.dumps(names),
            "kernel": json.dumps([r.vm.kernel.name for r in self.runs]),
        }
        meta.update({k: json.dumps(v) for k, v in self.latency.metadata().items()})
        meta["vm"] = json.dumps(self.header["vm"])
        return meta

    @property
    def sha256(self) -> str:
        """The trace file's SHA-256 (hex)."""
        if self._sha256 is None:
            self._sha256 = file_sha256(self.path)
        return self._sha256

    @property
    def meta(self) -> dict:
        """This trace's Parquet key-value metadata."""
        return {
            **self._meta,
            "trace_sha256": self.sha256,
            "traces": json.dumps([self.trace_entry()]),
        }

    def close(self) -> None:
        """Close the trace (run() does at its end, garbage collection otherwise)."""
        self.reader.close()
        if self._file is not None:
            self._file.close()

    def __del__(self):
        if getattr(self, "_file", None) is not None:
            self._file.close()

    def trace_entry(self) -> dict:
        """This trace's line in the Parquet metadata's "traces" list."""
        return {
            "name": self.trace,
            "sha256": self.sha256,
            "kernel": [r.vm.kernel.name for r in self.runs],
            "vm": self.header["vm"],
        }

    # --- output ------------------------------------------------------------------------------
    def _open(self):
        if self.writer is None and self.out is not None:
            from gictools.stats.parquet import EventWriter

            self.writer = EventWriter(
                self.out, self.meta, [r.policy for r in self.runs], [self.trace]
            )
        for r in self.runs:  # every MSI's latency goes through its policy's sink
            r.sink = Sink(self.writer, r.index, self.trace_index, self.latency, r.report)

    def fail(self, run, record, msg):
        rep = run.report
        rep.failure_count += 1
        if len(rep.failures) < self.MAX_FAILURES:
            rep.failures.append((record, msg))

    # --- per-record handlers -------------------------------------------------------------------
    def its(self, run, idx, rec_index):
        if not isinstance(idx, int) or not 0 <= idx < len(run.vm.itses):
            raise TraceFormatError(f"ITS index {idx!r} out of range", record=rec_index, field="its")
        return run.vm.itses[idx]

    def run(self, progress=None, events: Callable[[int], None] | None = None):
        """Replay to the end. progress(offset) is called after each record if given;
        events(n) with the number of events (MSIs counted one by one) replayed so far,
        every few thousand events."""
        self._open()
        try:
            handlers = self.HANDLERS
            reader = self.reader
            next_report = 0
            for rec in reader:
                handlers[rec[0]](self, rec, reader.record_index)
                self.records += 1
                if progress is not None:
                    progress(reader.offset)
                if events is not None and self.seq >= next_report:
                    events(self.seq)
                    next_report = self.seq + 4096
            for r in self.runs:
                if r.sink is not None:
                    r.sink.finish()
            if events is not None:
                events(self.seq)
            if self.writer is not None and self._own_writer:
                self.writer.close()
        except BaseException:
            if self.writer is not None and self._own_writer:
                self.writer.abort()
            raise
        finally:
            self.close()
        for r in self.runs:
            r.report.invalidations = r.invalidations()
            r.report.trace_sha256 = self.sha256
        return [r.report for r in self.runs]
