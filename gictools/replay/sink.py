"""One policy's output rows, in trace order, on their way to the Parquet writer."""

import numpy as np

from gictools.latency.events import simulate_events
from gictools.stats.schema import NAMES

PRESET_WINDOW = 1 << 20  # MSIs of one policy simulated as one closed loop with --preset
SINK_BLOCK_MIN = 32  # MSI blocks shorter than this join the sink's rows
SINK_ROWS = 1 << 13  # per-event rows (dicts, ~0.6 kB each) a sink holds before converting them
# the closed-loop simulation's inputs per MSI: injector, outcome, vCPU, ITS, key
_SIM_DTYPES = (np.uint32, np.int8, np.int32, np.int64, np.uint64)
_ROW_NAMES = tuple(n for n in NAMES if n not in ("cache_policy", "trace"))


class Sink:
    """One policy's rows of one trace, in trace order: per-event rows (dicts keyed by
    column name, missing = null) and MSI blocks (numpy columns; short ones become rows).
    With a latency preset, chunks wait until PRESET_WINDOW MSIs are there, so that the
    closed loop is simulated over the whole window at once, not restarted per block."""

    def __init__(self, writer, policy_index, trace_index, latency, report):
        self.writer, self.report = writer, report
        self.preset, self.host_cpus = latency.preset, latency.host_cpus
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
