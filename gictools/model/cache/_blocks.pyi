# The C extension _blocks.c (built where the install has a C compiler; see native.py).
from typing import Any as Buffer  # any buffer-protocol object (collections.abc.Buffer: 3.12+)

def set_codes(hit: int, miss: int, evict: int, nofill: int, recycle: int) -> None: ...
def lru_block(
    inverse: Buffer, fillable: Buffer, order: Buffer, cap: int, out: Buffer, victim: Buffer
) -> bytes: ...
def usage_block(
    inverse: Buffer,
    fillable: Buffer,
    ent_id: Buffer,
    ent_use: Buffer,
    cap: int,
    out: Buffer,
    victim: Buffer,
) -> tuple[bytes, bytes]: ...
