"""The contract Parquet columns (docs/replay-output.md) and their Arrow types, declared once.

IDs are uint32, seq/t_ns int64 (no uint64, no timestamp[ns]: Spark reads neither
cleanly); op, command, cache, cache_policy and trace are dictionary strings.
"""

import numpy as np
import pyarrow as pa

from gictools.model.cache.outcome import COLUMN_VALUES as CACHE_VALUES
from gictools.regs import COMMAND_NAMES

OPS = ("msi", "command", "reg", "mem", "ctrl", "expect", "ack")
OP_INDEX = {name: i for i, name in enumerate(OPS)}
COMMANDS = tuple(sorted(set(COMMAND_NAMES.values()))) + ("UNKNOWN",)
COMMAND_INDEX = {name: i for i, name in enumerate(COMMANDS)}

_dict8 = pa.dictionary(pa.int8(), pa.string())
_dict16 = pa.dictionary(pa.int16(), pa.string())

# (name, Arrow type, numpy dtype of the values or of the dictionary indices)
COLUMN_TABLE = (
    ("seq", pa.int64(), np.int64),  # event number in its trace (MSI blocks: one per MSI)
    ("t_ns", pa.int64(), np.int64),
    ("op", _dict8, np.int8),
    ("its", pa.int16(), np.int16),
    ("device_id", pa.uint32(), np.uint32),
    ("event_id", pa.uint32(), np.uint32),
    ("intid", pa.uint32(), np.uint32),
    ("vcpu", pa.uint16(), np.uint16),  # MSI/ACK: the LPI's vCPU; MAPC/MOVI: the target vCPU
    ("command", _dict8, np.int8),
    ("error", pa.int32(), np.int32),  # KVM's code: 0, E_ITS_* or -errno
    ("cache", _dict8, np.int8),
    ("victim_device_id", pa.uint32(), np.uint32),
    ("victim_event_id", pa.uint32(), np.uint32),
    ("cache_entries", pa.int32(), np.int32),
    ("latency_ns", pa.int64(), np.int64),
    ("wait_ns", pa.int64(), np.int64),
    ("injector", pa.uint32(), np.uint32),
    ("cache_policy", _dict8, np.int8),
    ("icid", pa.uint32(), np.uint32),  # commands naming a collection (MAPC, MAPTI, MOVI, ...)
    ("trace", _dict16, np.int16),  # the trace file, as named on the command line
)
COLUMNS = tuple((n, t) for n, t, _ in COLUMN_TABLE)
NAMES = tuple(n for n, _, _ in COLUMN_TABLE)
NUMPY = {n: d for n, _, d in COLUMN_TABLE}
SCHEMA = pa.schema([pa.field(n, t) for n, t in COLUMNS])
# fixed dictionaries; cache_policy and trace get theirs per output file
DICTIONARIES = {"op": OPS, "cache": CACHE_VALUES, "command": COMMANDS}
