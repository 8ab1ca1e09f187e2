"""The contract Parquet columns (DESIGN.md "Replay output") and their Arrow types.

IDs are uint32, seq/t_ns int64 (no uint64, no timestamp[ns]: Spark reads neither
cleanly); op, command, cache and cache_policy are dictionary strings.
"""

import pyarrow as pa

from gictools.model.cache.outcome import COLUMN_VALUES as CACHE_VALUES
from gictools.regs import COMMAND_NAMES

OPS = ("msi", "command", "reg", "mem", "ctrl", "expect", "ack")
OP_INDEX = {name: i for i, name in enumerate(OPS)}
COMMANDS = tuple(sorted(set(COMMAND_NAMES.values()))) + ("UNKNOWN",)
COMMAND_INDEX = {name: i for i, name in enumerate(COMMANDS)}

_dict8 = pa.dictionary(pa.int8(), pa.string())

COLUMNS = (
    ("seq", pa.int64()),  # event number in the trace (MSI blocks: one per MSI)
    ("t_ns", pa.int64()),
    ("op", _dict8),
    ("its", pa.int16()),
    ("device_id", pa.uint32()),
    ("event_id", pa.uint32()),
    ("intid", pa.uint32()),
    ("vcpu", pa.uint16()),
    ("command", _dict8),
    ("error", pa.int32()),  # KVM's code: 0, E_ITS_* or -errno
    ("cache", _dict8),
    ("victim_device_id", pa.uint32()),
    ("victim_event_id", pa.uint32()),
    ("cache_entries", pa.int32()),
    ("latency_ns", pa.int64()),
    ("wait_ns", pa.int64()),
    ("injector", pa.uint32()),
    ("cache_policy", _dict8),
)
SCHEMA = pa.schema([pa.field(n, t) for n, t in COLUMNS])
DICTIONARIES = {"op": OPS, "cache": CACHE_VALUES, "command": COMMANDS}
