"""Column buffers flushed as 1M-row row groups; the file appears whole or not at all."""

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gictools.outputs import AtomicOutput
from gictools.stats.schema import COLUMNS, DICTIONARIES, SCHEMA

ROW_GROUP = 1 << 20
_TYPES = dict(COLUMNS)
_NP = {
    "seq": np.int64,
    "t_ns": np.int64,
    "its": np.int16,
    "device_id": np.uint32,
    "event_id": np.uint32,
    "intid": np.uint32,
    "vcpu": np.uint16,
    "error": np.int32,
    "victim_device_id": np.uint32,
    "victim_event_id": np.uint32,
    "cache_entries": np.int32,
    "latency_ns": np.int64,
    "wait_ns": np.int64,
    "injector": np.uint32,
}


def _column(name, values, mask, dictionary):
    """An Arrow array from a numpy column and optional null mask (True = null)."""
    if name in DICTIONARIES or name == "cache_policy":
        idx = pa.array(values.astype(np.int8), type=pa.int8(), mask=mask)
        return pa.DictionaryArray.from_arrays(idx, dictionary)
    return pa.array(values.astype(_NP[name], copy=False), type=_TYPES[name], mask=mask)


class EventWriter:
    """Streams per-event columns to Parquet (temp file + rename on close)."""

    def __init__(self, path, metadata: dict, policies):
        self.path = os.fspath(path)
        self.out = AtomicOutput(self.path)
        self.dicts = {k: pa.array(v, pa.string()) for k, v in DICTIONARIES.items()}
        self.dicts["cache_policy"] = pa.array(list(policies), pa.string())
        schema = SCHEMA.with_metadata({k: str(v) for k, v in metadata.items()})
        self.writer = pq.ParquetWriter(
            self.out.file,
            schema,
            compression="zstd",
            use_dictionary=["op", "command", "cache", "cache_policy"],
            column_encoding={"seq": "DELTA_BINARY_PACKED", "t_ns": "DELTA_BINARY_PACKED"},
            write_statistics=True,
        )
        self.batches = []
        self.pending = 0
        self.rows = 0

    def add(self, cols: dict, masks: dict, n: int):
        """Append n rows; cols maps column -> numpy array (missing columns are all null)."""
        arrays = []
        for name, _ in COLUMNS:
            v = cols.get(name)
            if v is None:
                arrays.append(pa.nulls(n, _TYPES[name]))
                continue
            arrays.append(_column(name, v, masks.get(name), self.dicts.get(name)))
        self.batches.append(pa.RecordBatch.from_arrays(arrays, schema=SCHEMA))
        self.pending += n
        self.rows += n
        if self.pending >= ROW_GROUP:
            self.flush()

    def flush(self):
        if self.batches:
            self.writer.write_table(
                pa.Table.from_batches(self.batches, schema=SCHEMA), row_group_size=ROW_GROUP
            )
            self.batches, self.pending = [], 0

    def close(self):
        self.flush()
        self.writer.close()
        self.out.commit()

    def abort(self):
        try:
            self.writer.close()
        except Exception:
            pass
        self.out.abort()
