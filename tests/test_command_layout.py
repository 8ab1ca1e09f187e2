"""ITS command opcodes and field positions: known answers written by hand from the GIC
architecture spec (IHI 0069, "ITS commands") and KVM (arm-gic-v3.h, vgic-its.c's
its_cmd_get_*), never derived from regs.py's own tables."""

from gictools import regs as R
from gictools.cmdlayout import decode_command, encode_command
from gictools.model.commands import HANDLERS

# IHI 0069 ITS command opcodes; arm-gic-v3.h's GITS_CMD_* (GITS_CMD_GICv4(x) = x | 0x20)
SPEC_OPCODES = {
    "MOVI": 0x01, "INT": 0x03, "CLEAR": 0x04, "SYNC": 0x05, "MAPD": 0x08, "MAPC": 0x09,
    "MAPTI": 0x0A, "MAPI": 0x0B, "INV": 0x0C, "INVALL": 0x0D, "MOVALL": 0x0E, "DISCARD": 0x0F,
    "VMOVI": 0x21, "VMOVP": 0x22, "VSGI": 0x23, "VSYNC": 0x25, "VMAPP": 0x29, "VMAPTI": 0x2A,
    "VMAPI": 0x2B, "VINVALL": 0x2D, "INVDB": 0x2E,
}  # fmt: skip
# vgic_its_handle_command's switch: every other opcode is -ENODEV
KVM_HANDLED = {
    "MAPD", "MAPC", "MAPI", "MAPTI", "MOVI", "DISCARD", "CLEAR", "MOVALL", "INT", "INV",
    "INVALL", "SYNC",
}  # fmt: skip


def _dwords(*dws):
    return b"".join(d.to_bytes(8, "little") for d in dws)


def test_opcodes_are_the_specs():
    assert R.ITS_OPCODES == SPEC_OPCODES
    assert {R.ITS_OPCODE_NAMES[op] for op in HANDLERS} == KVM_HANDLED
    assert (R.GITS_CMD_MAPTI, R.GITS_CMD_DISCARD, R.GITS_CMD_VMAPP) == (0x0A, 0x0F, 0x29)
    assert decode_command(bytes([0x2C]) + bytes(31))[0] == "CMD_0x2c"  # no such command
    assert decode_command(bytes([0x2D]) + bytes(31))[0] == "VINVALL"


def test_command_fields_at_the_kernels_bits():
    # its_cmd_get_*: DeviceID DW0[63:32], EventID DW1[31:0], pINTID DW1[63:32], ICID DW2[15:0],
    # Size DW1[4:0], ITT_addr DW2[51:8], RDbase DW2[47:16], V DW2[63], RDbase2 DW3[47:16]
    cases = [
        (
            ("MAPTI", {"DeviceID": 7, "EventID": 3, "pINTID": 8200, "ICID": 2}),
            (0x0000_0007_0000_000A, 0x0000_2008_0000_0003, 0x0002, 0),
        ),
        (
            ("MAPD", {"DeviceID": 0xFFFF_FFFF, "Size": 0x1F, "ITT_addr": 0xF_FFFF_FFFF_FF, "V": 1}),
            (0xFFFF_FFFF_0000_0008, 0x1F, 0x800F_FFFF_FFFF_FF00, 0),
        ),
        (
            ("MAPC", {"ICID": 0xFFFF, "RDbase": 0x1234, "V": 1}),
            (0x09, 0, 0x8000_0000_1234_FFFF, 0),
        ),
        (("MOVALL", {"RDbase": 1, "RDbase2": 0xFFFF_FFFF}), (0x0E, 0, 1 << 16, 0xFFFF_FFFF << 16)),
        (("SYNC", {"RDbase": 3}), (0x05, 0, 3 << 16, 0)),
        (("INVALL", {"ICID": 9}), (0x0D, 0, 9, 0)),
    ]
    for (name, fields), dws in cases:
        raw = _dwords(*dws)
        assert encode_command(name, **fields) == raw, name
        assert decode_command(raw) == (name, fields), name
