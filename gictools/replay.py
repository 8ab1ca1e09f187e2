"""The replay loop: one streaming pass over a trace, one model VM per cache policy.

Each record goes to every policy's VM in trace order; MSI blocks take the
block path (gictools.model.block) and everything else the per-record path.
Per-event rows stream to Parquet; expectations are checked as they come.
"""

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from gictools import __version__
from gictools import regs as R
from gictools.errors import ConfigError, TraceFormatError
from gictools.model.block import OUTCOME_TO_COLUMN, inject_block
from gictools.model.cache import BYPASS, EVICT, HIT, N_OUTCOMES, POLICIES, Outcome
from gictools.model.cache.keys import translation_keys
from gictools.model.commands import decode_command
from gictools.model.memory import DEFAULT_RAM, GuestFault
from gictools.model.vm import VM
from gictools.outputs import check_output
from gictools.stats.schema import CACHE_VALUES, COMMAND_INDEX, OP_INDEX
from gictools.trace import format as F
from gictools.trace.reader import TraceReader

# Fixed per-outcome cost (ns) used when no latency preset is given: entry + lookup (+ slow
# path translation + fill / eviction). A placeholder scale, not a calibrated model.
FIXED_COST_NS = np.array([250, 750, 900, 600, 650, 750], dtype=np.int64)  # by outcome code
FIXED_COMMAND_NS = 1000
PRESET_WINDOW = 1 << 20  # MSIs simulated as one closed loop with --preset
_CACHE_COL = {name: i for i, name in enumerate(CACHE_VALUES)}


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
            "policy": self.policy,
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
        }


class _Rows:
    """Row-wise buffer for the (few) non-MSI-block events, flushed before each block."""

    NAMES = (
        "seq",
        "t_ns",
        "op",
        "its",
        "device_id",
        "event_id",
        "intid",
        "vcpu",
        "command",
        "error",
        "cache",
        "victim_device_id",
        "victim_event_id",
        "cache_entries",
        "latency_ns",
        "wait_ns",
        "injector",
        "cache_policy",
    )

    def __init__(self):
        self.rows = []

    def add(self, *row):
        self.rows.append(row)

    def drain(self):
        """(cols, masks, n) for EventWriter.add."""
        rows, self.rows = self.rows, []
        if not rows:
            return None
        cols, masks = {}, {}
        for name, values in zip(self.NAMES, zip(*rows)):
            mask = np.fromiter((v is None for v in values), dtype=bool, count=len(values))
            if mask.all():
                continue
            arr = np.array([0 if v is None else v for v in values], dtype=np.int64)
            cols[name] = arr
            if mask.any():
                masks[name] = mask
        return cols, masks, len(rows)


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


class Replayer:
    """Replays one trace for several policies; see replay() for the one-call form."""

    def __init__(
        self,
        trace,
        policies=("default",),
        kernel=None,
        out=None,
        preset=None,
        host_cpus=None,
        max_failures=20,
    ):
        self.trace = os.fspath(trace)
        if out is not None:
            check_output(out, [self.trace])  # before any work: never overwrite the trace
        for p in policies:
            if p != "default" and p not in POLICIES:
                raise ConfigError(f"unknown cache policy {p!r} (known: {', '.join(POLICIES)})")
        self.reader = TraceReader(self.trace)
        self.header = self.reader.header
        try:
            self.runs = [_PolicyRun(self.header, p, kernel, i) for i, p in enumerate(policies)]
        except ConfigError as e:
            if kernel is not None and "kernel" in str(e):
                raise  # the user's --kernel, not the file
            raise TraceFormatError(
                f"header describes a VM the model cannot build: {e}",
                record=0,
                offset=0,
                field="vm",
                path=self.trace,
            ) from None
        except ValueError as e:  # RAM slots, ITS frames
            raise TraceFormatError(
                f"header describes a VM the model cannot build: {e}",
                record=0,
                offset=0,
                field="vm",
                path=self.trace,
            ) from None
        names = [r.policy for r in self.runs]
        if len(set(names)) != len(names):
            raise ConfigError(f"cache policy given twice: {names}")
        self.preset = preset
        self.host_cpus = host_cpus
        self.max_failures = max_failures
        self.out = out
        self.writer = None
        self.rows = _Rows()
        self.pending, self.pending_msis = [], 0
        self.seq = 0
        self.records = 0
        self.meta = {
            "gictools_version": __version__,
            "trace_sha256": _sha256(self.trace),
            "cache_policy": json.dumps(names),
            "kernel": json.dumps([r.vm.kernel.name for r in self.runs]),
            "latency_preset": json.dumps(preset.name if preset else "fixed-v0"),
            "latency_parameters": json.dumps(
                preset.as_dict()
                if preset
                else {"cost_ns_by_outcome": FIXED_COST_NS.tolist(), "command_ns": FIXED_COMMAND_NS}
            ),
            "vm": json.dumps(self.header["vm"]),
        }

    # --- output ------------------------------------------------------------------------------
    def _open(self):
        if self.out is not None:
            from gictools.stats.parquet import EventWriter

            self.writer = EventWriter(self.out, self.meta, [r.policy for r in self.runs])

    def _flush_rows(self):
        d = self.rows.drain()
        if d is not None:
            self._emit(*d)

    def _emit(self, cols, masks, n, run=None, sim=None):
        """Rows to the output in trace order. With a latency preset, MSI blocks wait in a
        window (<= PRESET_WINDOW MSIs) so that the closed loop is simulated over the whole
        window at once, not restarted per block; the rows follow them in order."""
        if self.preset is None:
            if self.writer is not None:
                self.writer.add(cols, masks, n)
            return
        self.pending.append((cols, masks, n, run, sim))
        if sim is not None:
            self.pending_msis += n
            if self.pending_msis >= PRESET_WINDOW:
                self._settle()

    def _settle(self):
        """Simulate each policy's pending MSIs as one closed loop; write the window."""
        from gictools.latency.contention import simulate_events

        for run in self.runs:
            items = [it for it in self.pending if it[3] is run]
            if not items:
                continue
            cat = [np.concatenate([it[4][k] for it in items]) for k in range(5)]
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
                run.report.latency[v] += k
            pos = 0
            for cols, _, n, _, _ in items:
                cols["latency_ns"] = lat[pos : pos + n]
                cols["wait_ns"] = wait[pos : pos + n]
                pos += n
        if self.writer is not None:
            for cols, masks, n, _, _ in self.pending:
                self.writer.add(cols, masks, n)
        self.pending, self.pending_msis = [], 0

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
        for run in self.runs:
            self._msi_run(run, self._its(run, its_i, ri), its_i, t, dev, ev, inj, self.seq)
        self.seq += 1

    def _msi_run(self, run, its, its_i, t, dev, ev, inj, seq):
        res = run.vm.signal_msi(its, dev, ev)
        rep = run.report
        rep.events += 1
        rep.msis += 1
        rep.delivered += res.ret == 1
        outcome = Outcome.of_column(res.cache, res.error)
        rep.outcomes[outcome] += 1
        if res.error:
            rep.msi_errors[res.error] += 1
        lat = int(FIXED_COST_NS[outcome])
        rep.latency[lat] += 1
        run.last_msi = (res.ret, res.error, res.intid, res.vcpu)
        vd, ve = res.victim if res.victim else (None, None)
        self.rows.add(
            seq,
            t,
            OP_INDEX["msi"],
            its_i,
            dev,
            ev,
            res.intid,
            res.vcpu,
            None,
            res.error,
            _CACHE_COL[res.cache],
            vd,
            ve,
            len(its.cache),
            lat,
            None if self.preset is None else 0,
            inj,
            run.index,
        )

    def _msi_block(self, rec, ri):
        _, n, its_i, ts, dev, ev, inj = rec
        self._flush_rows()
        seq = np.arange(self.seq, self.seq + n, dtype=np.int64)
        t_ns = ts.astype(np.int64)
        for run in self.runs:
            its = self._its(run, its_i, ri)
            r = inject_block(run.vm, its, dev, ev)
            if r is None:
                self._msi_block_slow(run, its, its_i, seq, t_ns, dev, ev, inj)
                continue
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
                        rep.latency[int(FIXED_COST_NS[code])] += k
            else:
                lat = None  # filled in by _settle()
            last = n - 1
            e = int(r.error[last])
            run.last_msi = (
                _ret_of(e),
                e,
                None if r.intid[last] < 0 else int(r.intid[last]),
                None if r.vcpu[last] < 0 else int(r.vcpu[last]),
            )
            if self.writer is None and self.preset is None:
                continue
            vmask = np.ones(n, dtype=bool)
            vmask[r.victim_index] = False
            vdev = np.zeros(n, dtype=np.uint32)
            vev = np.zeros(n, dtype=np.uint32)
            vdev[r.victim_index] = r.victim_device
            vev[r.victim_index] = r.victim_event
            cols = {
                "seq": seq,
                "t_ns": t_ns,
                "op": np.zeros(n, np.int8),
                "its": np.full(n, its_i, np.int16),
                "device_id": dev,
                "event_id": ev,
                "intid": np.maximum(r.intid, 0),
                "vcpu": np.maximum(r.vcpu, 0),
                "error": r.error,
                "cache": OUTCOME_TO_COLUMN[r.outcome],
                "victim_device_id": vdev,
                "victim_event_id": vev,
                "cache_entries": r.entries,
                "latency_ns": lat,
                "cache_policy": np.full(n, run.index, np.int8),
            }
            masks = {
                "intid": r.intid < 0,
                "vcpu": r.vcpu < 0,
                "victim_device_id": vmask,
                "victim_event_id": vmask,
            }
            if inj is not None:
                cols["injector"] = inj
            sim = None
            if self.preset is not None:
                injectors = inj if inj is not None else np.zeros(n, dtype=np.uint32)
                keys = translation_keys(dev, ev)
                sim = (
                    injectors,
                    r.outcome,
                    np.maximum(r.vcpu, 0),
                    np.full(n, its_i, np.int64),
                    keys,
                )
            self._emit(cols, masks, n, run, sim)
        self.seq += n

    def _msi_block_slow(self, run, its, its_i, seq, t_ns, dev, ev, inj):
        """Per-event fallback for a block (a cache entry the slow path disagrees with)."""
        for i in range(len(dev)):
            self._msi_run(
                run,
                its,
                its_i,
                int(t_ns[i]),
                int(dev[i]),
                int(ev[i]),
                None if inj is None else int(inj[i]),
                int(seq[i]),
            )
        self._flush_rows()

    def _command(self, rec, ri):
        _, t, inj, its_i, raw = rec
        name, fields = decode_command(raw)
        cmd_index = COMMAND_INDEX.get(name, COMMAND_INDEX["UNKNOWN"])
        dev, ev = fields.get("DeviceID"), fields.get("EventID")
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
            intid = vcpu = None
            if dev is not None and ev is not None:
                ite = its.find_ite(dev, ev)
                if ite is not None:
                    intid, vcpu = ite.lpi.intid, ite.lpi.target
            self.rows.add(
                self.seq,
                t,
                OP_INDEX["command"],
                its_i,
                dev,
                ev,
                intid,
                vcpu,
                cmd_index,
                err,
                None,
                None,
                None,
                len(its.cache),
                FIXED_COMMAND_NS,
                None,
                inj,
                run.index,
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
            is_its = frame != "redist"
            self.rows.add(
                self.seq,
                t,
                OP_INDEX["reg"],
                index if is_its else None,
                None,
                None,
                None,
                None if is_its else index,
                None,
                0,
                None,
                None,
                None,
                entries,
                None,
                None,
                inj,
                run.index,
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
            self.rows.add(
                self.seq,
                t,
                OP_INDEX["mem"],
                None,
                None,
                None,
                None,
                None,
                None,
                err,
                None,
                None,
                None,
                None,
                None,
                None,
                inj,
                run.index,
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
            self.rows.add(
                self.seq,
                t,
                OP_INDEX["ctrl"],
                its_i,
                None,
                None,
                None,
                None,
                None,
                got,
                None,
                None,
                None,
                None,
                None,
                None,
                inj,
                run.index,
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
            self.rows.add(
                self.seq,
                t,
                OP_INDEX["ack"],
                None,
                None,
                None,
                intid,
                vcpu,
                None,
                0,
                None,
                None,
                None,
                None,
                None,
                None,
                inj,
                run.index,
            )
        self.seq += 1

    def _expect(self, rec, ri):
        _, t, inj, kind, args = rec
        for run in self.runs:
            msg = check_expectation(run, kind, args)
            if msg:
                self._fail(run, ri, msg)
            run.report.events += 1
            self.rows.add(
                self.seq,
                t,
                OP_INDEX["expect"],
                None,
                None,
                None,
                None,
                None,
                None,
                1 if msg else 0,
                None,
                None,
                None,
                None,
                None,
                None,
                inj,
                run.index,
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

    def run(self, progress=None):
        """Replay to the end; progress(offset) is called after each record if given."""
        self._open()
        try:
            handlers = self.HANDLERS
            reader = self.reader
            for rec in reader:
                handlers[rec[0]](self, rec, reader.record_index)
                self.records += 1
                if progress is not None:
                    progress(reader.offset)
            self._flush_rows()
            if self.preset is not None:
                self._settle()
            if self.writer is not None:
                self.writer.close()
        except BaseException:
            if self.writer is not None:
                self.writer.abort()
            raise
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
            return f"unknown expectation kind {kind!r}"
    except (KeyError, TypeError, IndexError) as e:
        return f"malformed {kind!r} expectation: missing or bad {e}"
    return None


def replay(
    trace, policies=("default",), kernel=None, out=None, preset=None, host_cpus=None, progress=None
):
    """Replay trace once per policy; returns the PolicyReports (failures inside)."""
    return Replayer(trace, policies, kernel, out, preset, host_cpus).run(progress)
