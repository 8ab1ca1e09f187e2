"""Per-event rows to Parquet: one row group per (trace, policy) run of rows, encoded on a
writer thread (pyarrow releases the GIL) behind a bounded queue; the file appears whole
or not at all."""

import io
import os
import queue
import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gictools.outputs import AtomicOutput
from gictools.stats.schema import COLUMNS, DICTIONARIES, NUMPY, SCHEMA
from gictools.stats.splice import Joiner

ROW_GROUP = 1 << 16  # rows per row group (each trace and policy its own): ~5 MB in Arrow
QUEUE_DEPTH = 1  # row groups waiting for the writer thread (memory bound)
# row groups per pyarrow writer: it keeps ~17 KB of metadata per row group until closed, so
# the file is written as parts (splice.Joiner, no copy) and memory stays flat with its length
PART_ROW_GROUPS = 256
_TYPES = dict(COLUMNS)
_DICT_COLUMNS = frozenset(n for n, t in COLUMNS if pa.types.is_dictionary(t))
# chosen by measurement (bench/replay.py, docs in README "Output"): zstd at its default
# level; dictionary encoding only where values repeat; delta encoding for the counters
WRITER_OPTIONS = {
    "compression": "zstd",
    "use_dictionary": sorted(_DICT_COLUMNS),
    "column_encoding": {"seq": "DELTA_BINARY_PACKED", "t_ns": "DELTA_BINARY_PACKED"},
    "write_statistics": True,
    # values handed to the encoders per call (default 1024): -16 % of the encode time
    "write_batch_size": 1 << 16,
}


def _numpy_array(values: np.ndarray, typ: pa.DataType, mask=None) -> pa.Array:
    """An Arrow array viewing a numpy column (mask: True = null).

    Built from buffers, not pa.array: pa.array imports pandas whenever it is installed
    (pyarrow probes every input for pandas types), ~50 MB of RSS a replay never uses.
    """
    values = np.ascontiguousarray(values)
    validity = None
    nulls = 0
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        nulls = int(np.count_nonzero(mask))
        if nulls:
            validity = pa.py_buffer(np.packbits(~mask, bitorder="little"))
    return pa.Array.from_buffers(
        typ, len(values), [validity, pa.py_buffer(values)], null_count=nulls
    )


def string_array(values) -> pa.Array:
    """An Arrow string array from Python strings, without pa.array (see _numpy_array)."""
    data = [v.encode() for v in values]
    offsets = np.zeros(len(data) + 1, dtype=np.int32)
    np.cumsum([len(b) for b in data], out=offsets[1:])
    return pa.Array.from_buffers(
        pa.string(), len(data), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(data))]
    )


def _column(name, values, mask, n, dictionary):
    """An Arrow array from a numpy column (+ null mask, True = null), a list with None for
    null, or one value for the whole chunk."""
    typ = _TYPES[name]
    if values is None:
        return pa.nulls(n, typ)
    dt = NUMPY[name]
    if isinstance(values, list):
        mask = np.fromiter((v is None for v in values), dtype=bool, count=len(values))
        values = np.fromiter((0 if v is None else v for v in values), dtype=dt, count=len(values))
    elif not isinstance(values, np.ndarray):
        values = np.full(n, values, dtype=dt)
    if dictionary is not None:
        return pa.DictionaryArray.from_arrays(
            _numpy_array(values.astype(dt, copy=False), typ.index_type, mask), dictionary
        )
    return _numpy_array(values.astype(dt, copy=False), typ, mask)


def _schema(metadata: dict, columns=None) -> pa.Schema:
    schema = SCHEMA if columns is None else pa.schema([SCHEMA.field(n) for n in columns])
    return schema.with_metadata({k: str(v) for k, v in metadata.items()})


def empty_file(metadata: dict) -> bytes:
    """A Parquet file of no rows with the event schema and this metadata, as EventWriter
    writes it: its footer is what a joined file of parts written apart should carry."""
    buf = io.BytesIO()
    pq.ParquetWriter(buf, _schema(metadata), **WRITER_OPTIONS).close()
    return buf.getvalue()


class EventWriter:
    """Streams per-event columns to Parquet (temp file + rename on close).

    add() takes one chunk of rows of one (trace, policy); each pair's rows go to row groups
    of their own, so a filter on cache_policy or trace skips the others' row groups.
    """

    def __init__(self, path, metadata: dict, policies, traces=("",), row_group=None, columns=None):
        self.path = os.fspath(path)
        self.out = AtomicOutput(self.path)
        self.dicts = {k: string_array(v) for k, v in DICTIONARIES.items()}
        self.dicts["cache_policy"] = string_array(policies)
        self.dicts["trace"] = string_array(traces)
        self.row_group = row_group or ROW_GROUP
        if columns is not None and not set(columns) <= set(_TYPES):
            raise ValueError(f"not event columns: {sorted(set(columns) - set(_TYPES))}")
        # the columns written, in schema order (default all)
        self.names = [n for n, _ in COLUMNS if columns is None or n in columns]
        self.schema = _schema(metadata, self.names)
        self.batch_schema = self.schema.remove_metadata()
        self.joiner = Joiner(self.out.file)
        self.writer = None  # the current part's, opened by the writer thread
        self.sink = None
        self.part_groups = 0
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
                    self._write(table)
                except BaseException as e:  # reported by close()/add()
                    self.error = e

    def _new_part(self):
        self.sink = self.joiner.sink()
        self.writer = pq.ParquetWriter(self.sink, self.schema, **WRITER_OPTIONS)
        self.part_groups = 0

    def _write(self, table):
        if self.writer is None:
            self._new_part()
        self.writer.write_table(table, row_group_size=len(table))
        self.part_groups += 1
        if self.part_groups >= PART_ROW_GROUPS:
            self._end_part()

    def _end_part(self):
        self.sink.footer()
        self.writer.close()
        self.writer = None
        self.sink.end()

    def add(self, cols: dict, masks: dict, n: int, policy: int = 0, trace: int = 0):
        """Append n rows of one policy and trace; cols maps column -> numpy array, list
        (None = null) or one value for all rows; missing columns are null."""
        if self.error is not None:
            raise self.error
        cols = {**cols, "cache_policy": policy, "trace": trace}
        arrays = [
            _column(name, cols.get(name), masks.get(name), n, self.dicts.get(name))
            for name in self.names
        ]
        buf = self.buffers.setdefault((trace, policy), [[], 0])
        buf[0].append(pa.RecordBatch.from_arrays(arrays, schema=self.batch_schema))
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
                self.queue.put(pa.Table.from_batches(batches, schema=self.batch_schema))

    def close(self):
        self.flush()
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error
        if self.writer is None and self.joiner.first is None:  # no rows: schema only
            self._new_part()
        if self.writer is not None:
            self._end_part()
        self.joiner.finish()
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
            if self.writer is not None:
                self.writer.close()
        except Exception:
            pass
        self.out.abort()
