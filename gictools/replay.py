"""The replay loop: one streaming pass over a trace, one model VM per cache policy.

Each record goes to every policy's VM in trace order. MSI blocks of SCALAR_MAX
events or more take the block path (gictools.model.block); shorter ones (an
imported trace has one MSI per record) and everything else take the per-event
path. Each policy's rows go to its own sink, which writes them to Parquet in
row groups of their own; expectations are checked as they come.
"""

import hashlib
import json
import os
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from gictools import __version__
from gictools import regs as R
from gictools.cmdlayout import decode_command
from gictools.errors import ConfigError, TraceFormatError
from gictools.model.block import OUTCOME_TO_COLUMN, inject_block
from gictools.model.cache import BYPASS, EVICT, HIT, N_OUTCOMES, Outcome, policy_class
from gictools.model.cache.keys import translation_keys
from gictools.model.kernel import parse_version
from gictools.model.memory import DEFAULT_RAM, GuestFault
from gictools.model.vm import VM
from gictools.outputs import check_output
from gictools.stats.schema import CACHE_VALUES, COMMAND_INDEX, NAMES, OP_INDEX
from gictools.trace import format as F
from gictools.trace.reader import TraceReader

# The latency model used when no preset is given, named like the presets: a fixed cost
# (ns) per cache outcome (entry + lookup (+ slow path translation + fill / eviction)) and
# per command. A placeholder scale, not a calibrated model (README "Latency").
FIXED_PRESET = "fixed-v0"
FIXED_COST_NS = np.array([250, 750, 900, 600, 650, 750], dtype=np.int64)  # by outcome code
_FIXED_COST = FIXED_COST_NS.tolist()
FIXED_COMMAND_NS = 1000
PRESET_WINDOW = 1 << 20  # MSIs of one policy simulated as one closed loop with --preset
SCALAR_MAX = 32  # MSI blocks shorter than this go event by event (vm.signal_msi)
SINK_BLOCK_MIN = 32  # MSI blocks shorter than this join the sink's rows
SINK_ROWS = 1 << 13  # per-event rows (dicts, ~0.6 kB each) a sink holds before converting them
# the closed-loop simulation's inputs per MSI: injector, outcome, vCPU, ITS, key
_SIM_DTYPES = (np.uint32, np.int8, np.int32, np.int64, np.uint64)
_CACHE_COL = {name: i for i, name in enumerate(CACHE_VALUES)}
_ROW_NAMES = tuple(n for n in NAMES if n not in ("cache_policy", "trace"))
_OP_MSI, _OP_COMMAND, _OP_REG, _OP_MEM, _OP_CTRL, _OP_EXPECT, _OP_ACK = (
    OP_INDEX[k] for k in ("msi", "command", "reg", "mem", "ctrl", "expect", "ack")
)


@dataclass
class PolicyReport:
    policy: str
    events: int = 0
    msis: int = 0
    delivered: int = 0
    commands: int = 0
    outcomes: np.ndarray = field(default_factory=lambda: np.zeros(N_OUTCOMES, dtype=np.int64))
    msi_errors: Counter = field(default_factory=Counter)
    command_errors: Counter = field(default_factory=Counter)
    command_counts: Counter = field(default_factory=Counter)
    latency: Counter = field(default_factory=Counter)  # MSI latency_ns -> count
    failures: list = field(default_factory=list)
    failure_count: int = 0
    unchecked: Counter = field(default_factory=Counter)  # EXPECT kinds this version ignores
    trace: str = ""
    trace_sha256: str = ""
    preset: str = FIXED_PRESET

    @property
    def hits(self):
        return int(self.outcomes[HIT])

    @property
    def lookups(self):
        return int(self.outcomes.sum() - self.outcomes[BYPASS])

    @property
    def misses(self):
        return self.lookups - self.hits

    @property
    def evictions(self):
        return int(self.outcomes[EVICT])

    @property
    def hit_rate(self):
        return self.hits / self.lookups if self.lookups else None

    def percentile(self, q):
        if not self.latency:
            return None
        vals = sorted(self.latency)
        counts = np.cumsum([self.latency[v] for v in vals])
        return int(vals[int(np.searchsorted(counts, q * counts[-1], side="left"))])

    def as_dict(self):
        return {
            "trace": self.trace,
            "trace_sha256": self.trace_sha256,
            "policy": self.policy,
            "latency_preset": self.preset,
            "events": self.events,
            "msis": self.msis,
            "delivered": self.delivered,
            "commands": self.commands,
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
            "hit_rate": self.hit_rate,
            "msi_errors": {R.error_name(k): v for k, v in self.msi_errors.items()},
            "command_errors": {R.error_name(k): v for k, v in self.command_errors.items()},
            "latency_p50_ns": self.percentile(0.5),
            "latency_p99_ns": self.percentile(0.99),
            "latency_max_ns": max(self.latency) if self.latency else None,
            "failed_expectations": self.failure_count,
            "unchecked_expectations": dict(self.unchecked),
        }


class _Sink:
    """One policy's rows of one trace, in trace order: per-event rows (dicts keyed by
    column name, missing = null) and MSI blocks (numpy columns; short ones become rows).
    With a latency preset, chunks wait until PRESET_WINDOW MSIs are there, so that the
    closed loop is simulated over the whole window at once, not restarted per block."""

    def __init__(self, writer, policy_index, trace_index, preset, host_cpus, report):
        self.writer, self.preset, self.host_cpus, self.report = writer, preset, host_cpus, report
        self.policy_index, self.trace_index = policy_index, trace_index
        self.rows = []
        self.msi_at = []  # with a preset: index in rows of each MSI row, and its sim inputs
        self.sim = []
        self.pending = []  # chunks (cols, masks, n, sim or None, msi_at or None for all)
        self.pending_msis = 0

    def row(self, row: dict):
        self.rows.append(row)
        if len(self.rows) >= SINK_ROWS:
            self._close_rows()

    def block(self, cols, masks, n, sim):
        """n MSIs as columns; sim: the closed-loop simulation's inputs (with a preset)."""
        if n < SINK_BLOCK_MIN:
            self._block_rows(cols, masks, n, sim)
        else:
            self._close_rows()
            self._push((cols, masks, n, sim, None), n)
        if self.pending_msis + len(self.sim) >= PRESET_WINDOW:
            self._close_rows()
            self._settle()

    def _block_rows(self, cols, masks, n, sim):
        names = list(cols)
        lists = []
        for name in names:
            v = cols[name]
            v = v.tolist() if isinstance(v, np.ndarray) else [v] * n
            m = masks.get(name)
            if m is not None:
                v = [None if null else x for x, null in zip(v, m.tolist())]
            lists.append(v)
        if sim is not None:
            self.sim += zip(*(s.tolist() for s in sim))
        for values in zip(*lists):
            if sim is not None:
                self.msi_at.append(len(self.rows))
            self.rows.append(dict(zip(names, values)))
        if len(self.rows) >= SINK_ROWS:
            self._close_rows()

    def finish(self):
        self._close_rows()
        self._settle()
        if self.writer is not None:
            self.writer.flush(self.trace_index, self.policy_index)

    def _close_rows(self):
        rows = self.rows
        if not rows:
            return
        cols = {name: [r.get(name) for r in rows] for name in _ROW_NAMES}
        sim = None
        if self.msi_at:
            sim = tuple(np.array(c, dtype=d) for c, d in zip(zip(*self.sim), _SIM_DTYPES))
        chunk = (cols, {}, len(rows), sim, self.msi_at)
        self.rows, self.msi_at, self.sim = [], [], []
        self._push(chunk, len(chunk[4]))

    def _push(self, chunk, msis):
        if self.preset is None:
            self._write(chunk)
            return
        self.pending.append(chunk)
        self.pending_msis += msis

    def _write(self, chunk):
        if self.writer is not None:
            self.writer.add(chunk[0], chunk[1], chunk[2], self.policy_index, self.trace_index)

    def _settle(self):
        """Simulate the pending MSIs as one closed loop; write the window."""
        pending, self.pending, self.pending_msis = self.pending, [], 0
        sims = [c[3] for c in pending if c[3] is not None]
        if sims:
            from gictools.latency.contention import simulate_events

            cat = [np.concatenate([s[k] for s in sims]) for k in range(5)]
            lat, wait, _ = simulate_events(
                self.preset,
                cat[0],
                cat[1],
                host_cpus=self.host_cpus,
                vcpus=cat[2],
                its=cat[3],
                keys=cat[4],
            )
            lat = np.asarray(lat, dtype=np.int64)
            wait = np.asarray(wait, dtype=np.int64)
            vals, cnt = np.unique(lat, return_counts=True)
            for v, k in zip(vals.tolist(), cnt.tolist()):
                self.report.latency[v] += k
            pos = 0
            for cols, _, n, sim, at in pending:
                if sim is None:
                    continue
                if at is None:
                    cols["latency_ns"] = lat[pos : pos + n]
                    cols["wait_ns"] = wait[pos : pos + n]
                    pos += n
                else:
                    lcol, wcol = cols["latency_ns"], cols["wait_ns"]
                    k = len(at)
                    for i, lv, wv in zip(
                        at, lat[pos : pos + k].tolist(), wait[pos : pos + k].tolist()
                    ):
                        lcol[i] = lv
                        wcol[i] = wv
                    pos += k
        for chunk in pending:
            self._write(chunk)


class _PolicyRun:
    """One policy's VM and bookkeeping."""

    def __init__(self, header, policy, kernel, index):
        vmh = header["vm"]
        self.kernel = kernel or vmh.get("kernel") or None
        kw = {
            "vcpu_ids": vmh.get("vcpu_ids"),
            "memory": [tuple(s) for s in vmh["memory"]] if vmh.get("memory") else DEFAULT_RAM,
        }
        if self.kernel:
            kw["kernel"] = self.kernel
        self._build = lambda: VM(vmh["vcpus"], cache=None if policy == "default" else policy, **kw)
        self.vm = self._build()
        for its in vmh.get("itses", []):
            self.vm.add_its(its["base"])
        self._itses = vmh.get("itses", [])
        self.policy = self.vm.cache_policy
        self.index = index  # cache_policy dictionary index
        self.report = PolicyReport(self.policy)
        self.sink = None
        self.last_cmd_error = None
        self.last_msi = None  # (ret, error, intid, vcpu)
        self.last_ctrl = None

    def migrate(self):
        """CTRL migrate: a fresh VM from the header that carries the guest memory only."""
        memory = self.vm.memory
        self.vm = self._build()
        self.vm.memory = memory
        for its in self._itses:
            self.vm.add_its(its["base"])
        return 0


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _ret_of(error):
    return 1 if error == 0 else (0 if error > 0 else error)


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

    writer/trace_index/policy_names let replay() share one Parquet file among traces.
    """

    def __init__(
        self,
        trace,
        policies=("default",),
        kernel=None,
        out=None,
        preset=None,
        host_cpus=None,
        max_failures=20,
        *,
        writer=None,
        trace_index: int = 0,
        name: str | None = None,
        sha256: str | None = None,
    ):
        self.path = os.fspath(trace)
        self.trace = name or self.path  # the name in reports and metadata ("<stdin>")
        self.policy_args = list(policies)
        if out is not None:
            check_output(out, [self.path])  # before any work: never overwrite the trace
        for p in policies:
            if p != "default":
                policy_class(p)
        if kernel is not None:
            parse_version(kernel)  # the user's --kernel: a ConfigError of its own
        self._file = None
        if name is None:
            self.reader = TraceReader(self.path)
        else:
            self._file = open(self.path, "rb")
            self._file.raw.name = name  # type: ignore[attr-defined]  # errors name "<stdin>", not the spooled copy
            try:
                self.reader = TraceReader(self._file)
            except BaseException:
                self._file.close()
                raise
        self.header = self.reader.header
        try:
            self.runs = [_PolicyRun(self.header, p, kernel, i) for i, p in enumerate(policies)]
        except (ConfigError, ValueError) as e:  # ValueError: RAM slots, ITS frames
            raise _cannot_build(e, self.trace) from None
        names = [r.policy for r in self.runs]
        if len(set(names)) != len(names):
            raise ConfigError(f"cache policy given twice: {names}")
        self.kernel = kernel
        self.preset = preset
        self.host_cpus = host_cpus
        self.max_failures = max_failures
        self.out = out
        self.writer = writer
        self._own_writer = writer is None
        self.trace_index = trace_index
        self.seq = 0
        self.records = 0
        self._sha256 = sha256  # hashed on first use (a --jobs parent hashes while workers run)
        preset_name = preset.name if preset else FIXED_PRESET
        for r in self.runs:
            r.report.trace, r.report.preset = self.trace, preset_name
        self._meta = {
            "gictools_version": __version__,
            "cache_policy": json.dumps(names),
            "kernel": json.dumps([r.vm.kernel.name for r in self.runs]),
            "latency_preset": json.dumps(preset_name),
            "latency_parameters": json.dumps(
                preset.as_dict()
                if preset
                else {"cost_ns_by_outcome": _FIXED_COST, "command_ns": FIXED_COMMAND_NS}
            ),
            "vm": json.dumps(self.header["vm"]),
        }

    @property
    def sha256(self) -> str:
        """The trace file's SHA-256 (hex)."""
        if self._sha256 is None:
            self._sha256 = _sha256(self.path)
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
        if self.writer is not None or self.preset is not None:
            for r in self.runs:
                r.sink = _Sink(
                    self.writer, r.index, self.trace_index, self.preset, self.host_cpus, r.report
                )

    def _fail(self, run, record, msg):
        rep = run.report
        rep.failure_count += 1
        if len(rep.failures) < self.max_failures:
            rep.failures.append((record, msg))

    # --- per-record handlers -------------------------------------------------------------------
    def _its(self, run, idx, rec_index):
        if not isinstance(idx, int) or not 0 <= idx < len(run.vm.itses):
            raise TraceFormatError(f"ITS index {idx!r} out of range", record=rec_index, field="its")
        return run.vm.itses[idx]

    def _msi(self, rec, ri):
        _, t, inj, its_i, dev, ev = rec
        seq = self.seq
        for run in self.runs:
            its = self._its(run, its_i, ri)
            if self.preset is None:
                self._msi_scalar(run, its, its_i, t, dev, ev, inj, seq)
            else:
                self._msi_block_run(
                    run,
                    its,
                    its_i,
                    np.array([seq], dtype=np.int64),
                    np.array([t], dtype=np.int64),
                    np.array([dev], dtype=np.uint32),
                    np.array([ev], dtype=np.uint32),
                    None if inj is None else np.array([inj], dtype=np.uint32),
                )
        self.seq += 1

    def _msi_scalar(self, run, its, its_i, t, dev, ev, inj, seq):
        """One MSI through vm.signal_msi (the per-event reference path)."""
        res = run.vm.signal_msi(its, dev, ev)
        rep = run.report
        rep.events += 1
        rep.msis += 1
        err = res.error
        if res.ret == 1:
            rep.delivered += 1
        outcome = Outcome.of_column(res.cache, err)
        rep.outcomes[outcome] += 1
        if err:
            rep.msi_errors[err] += 1
        run.last_msi = (res.ret, err, res.intid, res.vcpu)
        lat = _FIXED_COST[outcome]
        rep.latency[lat] += 1
        sink = run.sink
        if sink is None:
            return
        vd, ve = res.victim if res.victim else (None, None)
        sink.row(
            {
                "seq": seq,
                "t_ns": t,
                "op": _OP_MSI,
                "its": its_i,
                "device_id": dev,
                "event_id": ev,
                "intid": res.intid,
                "vcpu": res.vcpu,
                "error": err,
                "cache": _CACHE_COL[res.cache],
                "victim_device_id": vd,
                "victim_event_id": ve,
                "cache_entries": len(its.cache),
                "latency_ns": lat,
                "injector": inj,
            }
        )

    def _msi_block(self, rec, ri):
        _, n, its_i, ts, dev, ev, inj = rec
        if n < SCALAR_MAX and self.preset is None:
            tl, dl, el = ts.tolist(), dev.tolist(), ev.tolist()
            il = [None] * n if inj is None else inj.tolist()
            for run in self.runs:
                its = self._its(run, its_i, ri)
                for i in range(n):
                    self._msi_scalar(run, its, its_i, tl[i], dl[i], el[i], il[i], self.seq + i)
            self.seq += n
            return
        seq = np.arange(self.seq, self.seq + n, dtype=np.int64)
        t_ns = ts.astype(np.int64)
        for run in self.runs:
            self._msi_block_run(run, self._its(run, its_i, ri), its_i, seq, t_ns, dev, ev, inj)
        self.seq += n

    def _msi_block_run(self, run, its, its_i, seq, t_ns, dev, ev, inj):
        n = len(seq)
        r = inject_block(run.vm, its, dev, ev)
        if r is None:
            for i in range(n):  # a cache entry the slow path disagrees with: per event
                self._msi_scalar(
                    run,
                    its,
                    its_i,
                    int(t_ns[i]),
                    int(dev[i]),
                    int(ev[i]),
                    None if inj is None else int(inj[i]),
                    int(seq[i]),
                )
            return
        rep = run.report
        counts = np.bincount(r.outcome, minlength=N_OUTCOMES)
        rep.outcomes += counts[:N_OUTCOMES]
        rep.events += n
        rep.msis += n
        ok = r.error == 0
        rep.delivered += int(ok.sum())
        if not ok.all():
            codes, cnt = np.unique(r.error[~ok], return_counts=True)
            for c, k in zip(codes.tolist(), cnt.tolist()):
                rep.msi_errors[c] += k
        if self.preset is None:
            lat = FIXED_COST_NS[r.outcome]
            for code, k in enumerate(counts[:N_OUTCOMES].tolist()):
                if k:
                    rep.latency[_FIXED_COST[code]] += k
        else:
            lat = None  # filled in by the sink's simulation
        last = n - 1
        e = int(r.error[last])
        run.last_msi = (
            _ret_of(e),
            e,
            None if r.intid[last] < 0 else int(r.intid[last]),
            None if r.vcpu[last] < 0 else int(r.vcpu[last]),
        )
        if run.sink is None:
            return
        nv = len(r.victim_index)
        if nv:
            vmask = np.ones(n, dtype=bool)
            vmask[r.victim_index] = False
            vdev = np.zeros(n, dtype=np.uint32)
            vev = np.zeros(n, dtype=np.uint32)
            vdev[r.victim_index] = r.victim_device
            vev[r.victim_index] = r.victim_event
        else:  # constant within the block: null
            vmask = vdev = vev = None
        no_intid = r.intid < 0
        no_vcpu = r.vcpu < 0
        cols = {
            "seq": seq,
            "t_ns": t_ns,
            "op": _OP_MSI,
            "its": its_i,
            "device_id": dev,
            "event_id": ev,
            "intid": r.intid,
            "vcpu": r.vcpu,
            "error": r.error,
            "cache": OUTCOME_TO_COLUMN[r.outcome],
            "victim_device_id": vdev,
            "victim_event_id": vev,
            "cache_entries": r.entries,
            "latency_ns": lat,
            "injector": inj,
        }
        masks = {
            "intid": no_intid if no_intid.any() else None,
            "vcpu": no_vcpu if no_vcpu.any() else None,
            "victim_device_id": vmask,
            "victim_event_id": vmask,
        }
        if masks["intid"] is not None:
            cols["intid"] = np.maximum(r.intid, 0)
        if masks["vcpu"] is not None:
            cols["vcpu"] = np.maximum(r.vcpu, 0)
        sim = None
        if self.preset is not None:
            injectors = inj if inj is not None else np.zeros(n, dtype=np.uint32)
            keys = translation_keys(dev, ev)
            sim = (injectors, r.outcome, np.maximum(r.vcpu, 0), np.full(n, its_i, np.int64), keys)
        run.sink.block(cols, masks, n, sim)

    def _command(self, rec, ri):
        _, t, inj, its_i, raw = rec
        name, fields = decode_command(raw)
        cmd_index = COMMAND_INDEX.get(name, COMMAND_INDEX["UNKNOWN"])
        dev, ev, icid = fields.get("DeviceID"), fields.get("EventID"), fields.get("ICID")
        for run in self.runs:
            its = self._its(run, its_i, ri)
            err = its.process_command(raw)
            rep = run.report
            rep.events += 1
            rep.commands += 1
            rep.command_counts[name] += 1
            if err:
                rep.command_errors[err] += 1
            run.last_cmd_error = err
            if run.sink is None:
                continue
            intid = vcpu = None
            if dev is not None and ev is not None:
                ite = its.find_ite(dev, ev)
                if ite is not None:  # MOVI: the LPI's new target
                    intid, vcpu = ite.lpi.intid, ite.lpi.target
            elif name == "MAPC" and fields.get("V"):
                vcpu = run.vm.vcpu_from_rdbase(fields["RDbase"])
            run.sink.row(
                {
                    "seq": self.seq,
                    "t_ns": t,
                    "op": _OP_COMMAND,
                    "its": its_i,
                    "device_id": dev,
                    "event_id": ev,
                    "intid": intid,
                    "vcpu": vcpu,
                    "command": cmd_index,
                    "error": err,
                    "cache_entries": len(its.cache),
                    "latency_ns": FIXED_COMMAND_NS,
                    "injector": inj,
                    "icid": icid,
                }
            )
        self.seq += 1

    def _reg(self, rec, ri):
        _, t, inj, frame, index, offset, size, value, is_write = rec
        for run in self.runs:
            vm = run.vm
            if frame == "its":  # a guest MMIO access
                its = self._its(run, index, ri)
                if is_write:
                    its.mmio_write(offset, size, value)
                else:
                    its.mmio_read(offset, size)
                entries = len(its.cache)
            elif frame == "its-user":  # KVM_DEV_ARM_VGIC_GRP_ITS_REGS (userspace)
                its = self._its(run, index, ri)
                if is_write:
                    its.write_reg(offset, value)
                entries = len(its.cache)
            else:
                if not isinstance(index, int) or not 0 <= index < vm.nr_vcpus:
                    raise TraceFormatError(
                        f"vCPU index {index!r} out of range", record=ri, field="index"
                    )
                if is_write:
                    vm.write_redist_reg(index, offset, value, size)
                entries = None
            run.report.events += 1
            if run.sink is None:
                continue
            is_its = frame != "redist"
            run.sink.row(
                {
                    "seq": self.seq,
                    "t_ns": t,
                    "op": _OP_REG,
                    "its": index if is_its else None,
                    "vcpu": None if is_its else index,
                    "error": 0,
                    "cache_entries": entries,
                    "injector": inj,
                }
            )
        self.seq += 1

    def _mem(self, rec, ri):
        _, t, inj, gpa, data = rec
        for run in self.runs:
            try:
                run.vm.memory.write(gpa, data)
                err = 0
            except GuestFault:
                err = -R.EFAULT
            run.report.events += 1
            if run.sink is not None:
                run.sink.row(
                    {"seq": self.seq, "t_ns": t, "op": _OP_MEM, "error": err, "injector": inj}
                )
        self.seq += 1

    def _ctrl(self, rec, ri):
        _, t, inj, op, its_i, ret = rec
        for run in self.runs:
            if op == "save_pending_tables":
                got = run.vm.save_pending_tables()
            elif op == F.CTRL_MIGRATE:
                got = run.migrate()
            else:
                its = self._its(run, its_i, ri)
                got = {
                    "save_tables": its.save_tables,
                    "restore_tables": its.restore_tables,
                    "reset": its.reset,
                }[op]()
            run.last_ctrl = got
            if ret is not None and got != ret:
                self._fail(
                    run, ri, f"{op} returned {R.error_name(got)}, recorded {R.error_name(ret)}"
                )
            run.report.events += 1
            if run.sink is not None:
                run.sink.row(
                    {
                        "seq": self.seq,
                        "t_ns": t,
                        "op": _OP_CTRL,
                        "its": its_i,
                        "error": got,
                        "injector": inj,
                    }
                )
        self.seq += 1

    def _ack(self, rec, ri):
        _, t, inj, vcpu, intid = rec
        for run in self.runs:
            if not isinstance(vcpu, int) or not 0 <= vcpu < run.vm.nr_vcpus:
                raise TraceFormatError(f"vCPU index {vcpu!r} out of range", record=ri, field="vcpu")
            if not run.vm.ack(vcpu, intid):
                lpi = run.vm.lpis.get(intid)
                self._fail(
                    run,
                    ri,
                    f"vCPU {vcpu} acknowledged INTID {intid}, which the model "
                    f"does not have pending and enabled there ({lpi!r})",
                )
            run.report.events += 1
            if run.sink is not None:
                run.sink.row(
                    {
                        "seq": self.seq,
                        "t_ns": t,
                        "op": _OP_ACK,
                        "intid": intid,
                        "vcpu": vcpu,
                        "error": 0,
                        "injector": inj,
                    }
                )
        self.seq += 1

    def _expect(self, rec, ri):
        _, t, inj, kind, args = rec
        known = kind in F.EXPECT_KINDS
        for run in self.runs:
            if known:
                msg = check_expectation(run, kind, args)
                if msg:
                    self._fail(run, ri, msg)
                err = 1 if msg else 0
            else:  # docs/trace-format.md: unknown kinds pass through unchecked, counted
                run.report.unchecked[str(kind)] += 1
                err = None
            run.report.events += 1
            if run.sink is not None:
                run.sink.row(
                    {"seq": self.seq, "t_ns": t, "op": _OP_EXPECT, "error": err, "injector": inj}
                )
        self.seq += 1

    HANDLERS = {
        F.MSI: _msi,
        F.MSI_BLOCK: _msi_block,
        F.COMMAND: _command,
        F.REG: _reg,
        F.MEM: _mem,
        F.CTRL: _ctrl,
        F.EXPECT: _expect,
        F.ACK: _ack,
    }

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
            r.report.trace_sha256 = self.sha256
        return [r.report for r in self.runs]


def check_expectation(run, kind, args):
    """None if the expectation holds on run's model, else a one-line reason."""
    vm = run.vm
    a = args if isinstance(args, dict) else {}
    try:
        if kind == "pending":
            intid, vcpu, want = a["intid"], a["vcpu"], bool(a.get("pending", True))
            lpi = vm.lpis.get(intid)
            got = lpi is not None and lpi.pending and lpi.target == vcpu
            if got != want:
                return (
                    f"expected INTID {intid} {'' if want else 'not '}pending on vCPU {vcpu}; "
                    f"model: {lpi!r}"
                )
        elif kind == "cmd_error":
            if run.last_cmd_error != a["error"]:
                return (
                    f"expected the last command to return {R.error_name(a['error'])}, "
                    f"got {R.error_name(run.last_cmd_error or 0)}"
                )
        elif kind == "msi":
            if run.last_msi is None:
                return "expectation on the last MSI, but no MSI came before"
            ret, err, intid, vcpu = run.last_msi
            for key, got in (("ret", ret), ("error", err), ("intid", intid), ("vcpu", vcpu)):
                if key in a and a[key] != got:
                    return f"expected the last MSI's {key} = {a[key]!r}, got {got!r}"
        elif kind == "ctrl":
            if run.last_ctrl != a["ret"]:
                return f"expected the last device control to return {a['ret']}, got {run.last_ctrl}"
        elif kind == "lpi":
            lpi = vm.lpis.get(a["intid"])
            if "exists" in a and bool(a["exists"]) != (lpi is not None):
                return f"expected INTID {a['intid']} {'to exist' if a['exists'] else 'absent'}"
            for key, attr in (
                ("vcpu", "target"),
                ("priority", "priority"),
                ("enabled", "enabled"),
                ("pending", "pending"),
            ):
                if key in a:
                    if lpi is None:
                        return f"expected INTID {a['intid']} with {key}={a[key]!r}: no such LPI"
                    if getattr(lpi, attr) != a[key]:
                        return (
                            f"expected INTID {a['intid']} {key} = {a[key]!r}, "
                            f"model has {getattr(lpi, attr)!r}"
                        )
        elif kind == "its_reg":
            mask = a.get("mask", (1 << (8 * a["size"])) - 1)
            got = vm.itses[a["its"]].mmio_read(a["offset"], a["size"]) & mask
            if got != a["value"] & mask:
                return (
                    f"expected ITS register {a['offset']:#x} & {mask:#x} = "
                    f"{a['value'] & mask:#x}, model reads {got:#x}"
                )
        else:
            return None  # unknown kinds pass through unchecked (the replay counts them)
    except (KeyError, TypeError, IndexError) as e:
        return f"malformed {kind!r} expectation: missing or bad {e}"
    return None


def _as_list(traces) -> list:
    if isinstance(traces, (str, bytes, os.PathLike)):
        return [traces]
    return list(traces)


def open_replayers(
    traces,
    policies=("default",),
    kernel=None,
    preset=None,
    host_cpus=None,
    names=None,
    sha256s=None,
) -> list[Replayer]:
    """One Replayer per trace, every header read and checked before any replay starts.
    names: what to call each trace in reports and metadata (default: its path)."""
    paths = _as_list(traces)
    if not paths:
        raise ConfigError("no trace given")
    names = list(names) if names else [None] * len(paths)
    shas = list(sha256s) if sha256s else [None] * len(paths)
    return [
        Replayer(t, policies, kernel, None, preset, host_cpus, trace_index=i, name=n, sha256=h)
        for i, (t, n, h) in enumerate(zip(paths, names, shas, strict=True))
    ]


def _policy_names(replayers):
    names = []
    for rp in replayers:
        for r in rp.runs:
            if r.policy not in names:
                names.append(r.policy)
    return names


def _metadata(replayers, names):
    meta = dict(replayers[0].meta)
    meta["cache_policy"] = json.dumps(names)
    meta["traces"] = json.dumps([rp.trace_entry() for rp in replayers])
    if len(replayers) > 1:
        meta["trace_sha256"] = json.dumps([rp.sha256 for rp in replayers])
    return meta


def run_replayers(
    replayers: Sequence[Replayer],
    out=None,
    progress=None,
    events=None,
    *,
    jobs: int = 1,
    policy_names: Sequence[str] | None = None,
    metadata: dict | None = None,
) -> list[PolicyReport]:
    """Replay each trace in turn into one Parquet file (if out); reports trace-major.
    With jobs > 1, out and several policies: one process per policy (see _run_parallel)."""
    if jobs > 1 and out is not None and len(replayers[0].policy_args) > 1:
        return _run_parallel(replayers, out, jobs)
    writer = None
    if out is not None:
        from gictools.stats.parquet import EventWriter

        names = list(policy_names) if policy_names else _policy_names(replayers)
        for rp in replayers:
            for r in rp.runs:
                r.index = names.index(r.policy)
        meta = metadata if metadata is not None else _metadata(replayers, names)
        writer = EventWriter(out, meta, names, [rp.trace for rp in replayers])
    reports = []
    done = 0
    try:
        for rp in replayers:
            rp.writer, rp._own_writer = writer, False
            cb = None if events is None else (lambda n, base=done: events(base + n))
            reports += rp.run(progress, cb)
            done += rp.seq
        if writer is not None:
            writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return reports


_UNHASHED = "0" * 64  # a --jobs worker's stand-in: its parent hashes the trace meanwhile


def _replay_part(traces, policies, kernel, preset, host_cpus, part, names, trace_names):
    shas = [_UNHASHED] * len(traces)
    rps = open_replayers(traces, policies, kernel, preset, host_cpus, trace_names, shas)
    return run_replayers(rps, part, policy_names=names)


def _part_worker(conn, task):
    try:
        result = ("ok", _replay_part(*task))
    except BaseException as e:  # handed to the parent, raised there
        result = ("error", e)
    try:
        conn.send(result)
    except Exception as e:  # an exception that does not pickle
        conn.send(("error", RuntimeError(f"{type(result[1]).__name__}: {result[1]} ({e})")))
    conn.close()


def _in_fresh_processes(tasks, jobs, meanwhile=None):
    """_replay_part(*task) for each task, at most jobs at a time, each in a process of its
    own (forked from this thread alone: no pool threads, so no lock is inherited held).
    meanwhile() runs here once every process is started."""
    import multiprocessing
    from multiprocessing.connection import wait

    ctx = multiprocessing.get_context("fork")
    results = [None] * len(tasks)
    running = {}  # connection -> (index, process)
    todo = list(enumerate(tasks))
    try:
        while todo or running:
            while todo and len(running) < jobs:
                i, task = todo.pop(0)
                recv, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_part_worker, args=(send, task), daemon=True)
                proc.start()
                send.close()
                running[recv] = (i, proc)
            if meanwhile is not None and not todo:  # no fork after it starts threads
                meanwhile()
                meanwhile = None
            for conn in wait(list(running)):
                i, proc = running.pop(conn)
                try:
                    status, value = conn.recv()
                except EOFError:
                    status, value = (
                        "error",
                        RuntimeError(
                            f"replay worker for policy {tasks[i][1]} died (exit {proc.exitcode})"
                        ),
                    )
                conn.close()
                proc.join()
                if status == "error":
                    raise value
                results[i] = value
    finally:
        for conn, (_, proc) in running.items():
            proc.terminate()
            proc.join()
            conn.close()
    return results


def _hash_quietly(replayers):
    try:
        for rp in replayers:
            _ = rp.sha256  # computed once, kept on rp
    except Exception:
        pass  # not this thread's to report (a thread's exception prints a traceback)


def _run_parallel(replayers, out, jobs):
    """Policies are independent replays of the same stream: they are dealt round-robin into
    `jobs` groups, each replayed in one pass (one decode) by a fresh process that writes a
    part file; the parts' row groups are then joined into out without re-encoding
    (gictools.stats.splice). Same rows per policy as one process."""
    import tempfile
    from contextlib import ExitStack

    from gictools.outputs import atomic_path, check_output, scratch_path
    from gictools.stats.parquet import empty_file
    from gictools.stats.splice import splice

    for rp in replayers:  # the workers open the traces again
        rp.close()
    rp0 = replayers[0]
    names = _policy_names(replayers)
    traces = [rp.path for rp in replayers]
    trace_names = [rp.trace for rp in replayers]
    out = os.fspath(out)
    kind = check_output(out, traces)
    # parts beside the output (same filesystem, swept like every temporary file), or in the
    # temporary directory when the output is a stream
    d = os.path.dirname(os.path.abspath(out)) if kind == "file" else tempfile.gettempdir()
    pols = list(rp0.policy_args)
    k = min(jobs, len(pols))
    groups = [list(range(g, len(pols), k)) for g in range(k)]  # policy indices per process
    with ExitStack() as stack:
        name = os.path.basename(out)
        parts = [stack.enter_context(scratch_path(d, f"{name}.part{i}")) for i in range(k)]
        tasks = [
            (traces, [pols[i] for i in g], rp0.kernel, rp0.preset, rp0.host_cpus, part)
            + (names, trace_names)
            for g, part in zip(groups, parts)
        ]
        # the workers write stand-in hashes; the file gets the metadata a one-process run
        # writes (pyarrow's own encoding of it, ARROW:schema included)
        hashing = threading.Thread(target=_hash_quietly, args=(replayers,))
        per_group = _in_fresh_processes(tasks, k, meanwhile=hashing.start)
        hashing.join()  # a failure is raised below, here, as rp.sha256 hashes again
        with atomic_path(out, inputs=traces) as tmp:
            splice(parts, tmp, footer_of=empty_file(_metadata(replayers, names)))
    where = {i: (g, j) for g, idx in enumerate(groups) for j, i in enumerate(idx)}
    reports = []
    for t, rp in enumerate(replayers):  # trace-major, policies in the order asked
        mine = []
        for i in range(len(pols)):
            g, j = where[i]
            mine.append(per_group[g][t * len(groups[g]) + j])
            mine[-1].trace_sha256 = rp.sha256
        rp.seq = mine[0].events
        reports += mine
    return reports


def replay(
    traces,
    policies=("default",),
    kernel=None,
    out=None,
    preset=None,
    host_cpus=None,
    progress=None,
    events=None,
    jobs: int = 1,
) -> list[PolicyReport]:
    """Replay each trace (a path or a list of paths) once per policy; returns the
    PolicyReports (failures inside), trace by trace. With out, one Parquet file for all;
    jobs > 1 replays the policies in that many processes."""
    if out is not None:  # before any work: never overwrite a trace
        check_output(out, [traces] if isinstance(traces, (str, os.PathLike)) else list(traces))
    rps = open_replayers(traces, policies, kernel, preset, host_cpus)
    return run_replayers(rps, out, progress, events, jobs=jobs)
