"""Per-event rows to Parquet: one row group per (trace, policy) run of rows, encoded on a
writer thread (pyarrow releases the GIL) behind a bounded queue; the file appears whole
or not at all."""

import os
import queue
import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gictools.outputs import AtomicOutput
from gictools.stats.schema import COLUMNS, DICTIONARIES, NUMPY, SCHEMA

ROW_GROUP = 1 << 17  # rows per row group (each trace and policy its own): 10.5 MB in Arrow
QUEUE_DEPTH = 1  # row groups waiting for the writer thread (memory bound)
_TYPES = dict(COLUMNS)
_DICT_COLUMNS = frozenset(n for n, t in COLUMNS if pa.types.is_dictionary(t))
# chosen by measurement (bench/replay.py, docs in README "Output"): zstd at its default
# level; dictionary encoding only where values repeat; delta encoding for the counters
WRITER_OPTIONS = {
    "compression": "zstd",
    "use_dictionary": sorted(_DICT_COLUMNS),
    "column_encoding": {"seq": "DELTA_BINARY_PACKED", "t_ns": "DELTA_BINARY_PACKED"},
    "write_statistics": True,
}


def _column(name, values, mask, n, dictionary):
    """An Arrow array from a numpy column (+ null mask, True = null), a list with None for
    null, or one value for the whole chunk."""
    typ = _TYPES[name]
    if values is None:
        return pa.nulls(n, typ)
    dt = NUMPY[name]
    if isinstance(values, list):
        arr = pa.array(values, type=pa.from_numpy_dtype(dt))
    else:
        if not isinstance(values, np.ndarray):
            values = np.full(n, values, dtype=dt)
        arr = pa.array(values.astype(dt, copy=False), mask=mask)
    if dictionary is not None:
        return pa.DictionaryArray.from_arrays(arr, dictionary)
    return arr


class EventWriter:
    """Streams per-event columns to Parquet (temp file + rename on close).

    add() takes one chunk of rows of one (trace, policy); each pair's rows go to row groups
    of their own, so a filter on cache_policy or trace skips the others' row groups.
    """

    def __init__(self, path, metadata: dict, policies, traces=("",), row_group=None):
        self.path = os.fspath(path)
        self.out = AtomicOutput(self.path)
        self.dicts = {k: pa.array(v, pa.string()) for k, v in DICTIONARIES.items()}
        self.dicts["cache_policy"] = pa.array(list(policies), pa.string())
        self.dicts["trace"] = pa.array(list(traces), pa.string())
        self.row_group = row_group or ROW_GROUP
        self.schema = SCHEMA.with_metadata({k: str(v) for k, v in metadata.items()})
        self.writer = pq.ParquetWriter(self.out.file, self.schema, **WRITER_OPTIONS)
        self.buffers = {}  # (trace, policy) -> [batches, rows]
        self.rows = 0
        self.queue = queue.Queue(QUEUE_DEPTH)
        self.error = None
        self.thread = threading.Thread(target=self._drain, name="gictools-parquet", daemon=True)
        self.thread.start()

    def _drain(self):
        while True:
            table = self.queue.get()
            if table is None:
                return
            if self.error is None:
                try:
                    self.writer.write_table(table, row_group_size=len(table))
                except BaseException as e:  # reported by close()/add()
                    self.error = e

    def add(self, cols: dict, masks: dict, n: int, policy: int = 0, trace: int = 0):
        """Append n rows of one policy and trace; cols maps column -> numpy array, list
        (None = null) or one value for all rows; missing columns are null."""
        if self.error is not None:
            raise self.error
        cols = {**cols, "cache_policy": policy, "trace": trace}
        arrays = [
            _column(name, cols.get(name), masks.get(name), n, self.dicts.get(name))
            for name, _ in COLUMNS
        ]
        buf = self.buffers.setdefault((trace, policy), [[], 0])
        buf[0].append(pa.RecordBatch.from_arrays(arrays, schema=SCHEMA))
        buf[1] += n
        self.rows += n
        if buf[1] >= self.row_group:
            self.flush(trace, policy)

    def flush(self, trace=None, policy=None):
        """Hand the buffered rows (of one pair, or all) to the writer thread."""
        keys = list(self.buffers) if trace is None else [(trace, policy)]
        for key in keys:
            batches, n = self.buffers.pop(key, ([], 0))
            if n:
                self.queue.put(pa.Table.from_batches(batches, schema=SCHEMA))

    def close(self):
        self.flush()
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error
        self.writer.close()
        self.out.commit()

    def abort(self):
        self.buffers.clear()
        self.error = self.error or RuntimeError("aborted")
        try:
            while True:
                self.queue.get_nowait()
        except queue.Empty:
            pass
        self.queue.put(None)
        self.thread.join()
        try:
            self.writer.close()
        except Exception:
            pass
        self.out.abort()
