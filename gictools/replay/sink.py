"""One policy's output rows, in trace order, on their way to the Parquet writer, and the
latency of its MSIs from the replay's one latency model (gictools.latency.model).

A contention-free model (fixed-v0) prices each MSI from its outcome as it comes (the
caller fills latency_ns and wait_ns). Any other model is a closed loop: the MSIs wait,
with their rows, until PRESET_WINDOW of them are there, and the window is simulated at
once (not restarted per block); then the rows get their latencies and are written.
"""

import numpy as np

from gictools.stats.schema import NAMES

PRESET_WINDOW = 1 << 20  # MSIs of one policy simulated as one closed loop
SINK_BLOCK_MIN = 32  # MSI blocks shorter than this join the sink's rows
SINK_ROWS = 1 << 13  # per-event rows (dicts, ~0.6 kB each) a sink holds before converting them
# the closed-loop simulation's inputs per MSI: injector, outcome, vCPU, ITS, key
SIM_DTYPES = (np.uint32, np.int8, np.int32, np.int64, np.uint64)
_ROW_NAMES = tuple(n for n in NAMES if n not in ("cache_policy", "trace"))


class Sink:
    """One policy's rows of one trace, in trace order: per-event rows (dicts keyed by
    column name, missing = null) and MSI blocks (numpy columns; short ones become rows).
    Without a writer nothing is kept but what the latency model needs."""

    def __init__(self, writer, policy_index, trace_index, latency, report):
        self.writer, self.latency, self.report = writer, latency, report
        self.keep = writer is not None
        self.deferred = not latency.contention_free
        self.policy_index, self.trace_index = policy_index, trace_index
        self.rows = []
        self.msi_at = []  # deferred: index in rows of each MSI row, and its sim inputs
        self.sim = []
        self.pending = []  # chunks (cols, masks, n, sim or None, msi_at or None for all)
        self.pending_msis = 0

    def row(self, row: dict):
        if self.keep:
            self.rows.append(row)
            if len(self.rows) >= SINK_ROWS:
                self._close_rows()

    def msi_row(self, row: dict, sim: tuple):
        """One MSI's row whose latency the window's simulation gives (sim: its inputs)."""
        if self.keep:
            self.msi_at.append(len(self.rows))
            self.rows.append(row)
        self.sim.append(sim)
        if len(self.rows) >= SINK_ROWS or len(self.sim) >= SINK_ROWS:
            self._close_rows()
        if self.pending_msis + len(self.sim) >= PRESET_WINDOW:
            self._close_rows()
            self._settle()

    def block(self, cols, masks, n, sim):
        """n MSIs as columns; sim: the closed-loop simulation's inputs (deferred model)."""
        if n < SINK_BLOCK_MIN:
            self._block_rows(cols, masks, n, sim)
        else:
            self._close_rows()
            self._push((cols if self.keep else None, masks, n, sim, None), n)
        if self.pending_msis + len(self.sim) >= PRESET_WINDOW:
            self._close_rows()
            self._settle()

    def _block_rows(self, cols, masks, n, sim):
        if sim is not None:
            self.sim += zip(*(s.tolist() for s in sim))
        if not self.keep:
            if len(self.sim) >= SINK_ROWS:
                self._close_rows()
            return
        names = list(cols)
        lists = []
        for name in names:
            v = cols[name]
            v = v.tolist() if isinstance(v, np.ndarray) else [v] * n
            m = masks.get(name)
            if m is not None:
                v = [None if null else x for x, null in zip(v, m.tolist())]
            lists.append(v)
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
        rows, sims = self.rows, self.sim
        if not rows and not sims:
            return
        cols = {name: [r.get(name) for r in rows] for name in _ROW_NAMES} if rows else None
        sim = None
        if sims:
            sim = tuple(np.array(c, dtype=d) for c, d in zip(zip(*sims), SIM_DTYPES))
        chunk = (cols, {}, len(rows), sim, self.msi_at)
        self.rows, self.msi_at, self.sim = [], [], []
        self._push(chunk, len(sims))

    def _push(self, chunk, msis):
        if not self.deferred:
            self._write(chunk)
            return
        self.pending.append(chunk)
        self.pending_msis += msis

    def _write(self, chunk):
        if self.writer is not None and chunk[0] is not None:
            self.writer.add(chunk[0], chunk[1], chunk[2], self.policy_index, self.trace_index)

    def _settle(self):
        """Simulate the pending MSIs as one closed loop; write the window."""
        pending, self.pending, self.pending_msis = self.pending, [], 0
        sims = [c[3] for c in pending if c[3] is not None]
        if sims:
            cat = [np.concatenate([s[k] for s in sims]) for k in range(5)]
            lat, wait, spent = self.latency.latencies(*cat)
            self.report.add_latencies(lat, cat[0], cat[1], spent)
            pos = 0
            for cols, _, _n, sim, at in pending:
                if sim is None:
                    continue
                k = len(sim[0])
                if cols is not None:
                    _fill(cols, at, lat[pos : pos + k], wait[pos : pos + k])
                pos += k
        for chunk in pending:
            self._write(chunk)


def _fill(cols, at, lat, wait):
    """A chunk's MSI rows get their latencies: all its rows (a block), or those at `at`."""
    if at is None:
        cols["latency_ns"] = lat
        cols["wait_ns"] = wait
        return
    lcol, wcol = cols["latency_ns"], cols["wait_ns"]
    for i, lv, wv in zip(at, lat.tolist(), wait.tolist()):
        lcol[i] = lv
        wcol[i] = wv
