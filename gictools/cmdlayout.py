"""ITS command layout: a command's 32 bytes <-> its mnemonic and fields.

Layout facts only, from the field tables in regs.py (COMMAND_FIELDS, CMD_DWORDS); what a
command does is gictools.model.commands. Lives beside regs.py and bits.py so that printing
or building a command (dump, the importers, the guest driver) does not load the model.
"""

from gictools import regs as R


def encode_command(name: str, **fields) -> bytes:
    """Build a command's 32 bytes from field values; field names as in regs.COMMAND_FIELDS."""
    op = R.COMMAND_OPCODES[name]
    allowed = dict((f, d) for d, f in R.COMMAND_FIELDS[name])
    dws = [R.CMD_DW0["Command"].put(0, op), 0, 0, 0]
    for f, v in fields.items():
        if f not in allowed:
            raise ValueError(f"{name} has no field {f!r} (has {', '.join(allowed)})")
        d = allowed[f]
        dws[d] = R.CMD_DWORDS[d][f].put(dws[d], v)
    return b"".join(x.to_bytes(8, "little") for x in dws)


def decode_command(raw: bytes):
    """(mnemonic, {field: value}) for display; unknown opcodes give their hex number."""
    dws = [int.from_bytes(raw[i : i + 8], "little") for i in range(0, 32, 8)]
    op = dws[0] & 0xFF
    name = R.COMMAND_NAMES.get(op, f"CMD_{op:#04x}")
    fields = {f: R.CMD_DWORDS[d][f].get(dws[d]) for d, f in R.COMMAND_FIELDS.get(name, ())}
    return name, fields
