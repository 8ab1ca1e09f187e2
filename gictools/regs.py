"""Every GIC/ITS layout and constant gictools uses, with spec and KVM names verbatim.

Sources: include/linux/irqchip/arm-gic-v3.h (opcodes, E_ITS_*), vgic-its.c
(its_cmd_get_* field positions), vgic-mmio-v3.c (GICR_* sanitisation).
"""

from gictools.bits import Layout

# --- errno values (Linux, arm64 = generic) -----------------------------------------
EPERM, ENXIO, E2BIG, EAGAIN, ENOMEM, EACCES, EFAULT = 1, 6, 7, 11, 12, 13, 14
EBUSY, EEXIST, ENODEV, EINVAL = 16, 17, 19, 22

ERRNO_NAMES = {
    EPERM: "EPERM",
    ENXIO: "ENXIO",
    E2BIG: "E2BIG",
    EAGAIN: "EAGAIN",
    ENOMEM: "ENOMEM",
    EACCES: "EACCES",
    EFAULT: "EFAULT",
    EBUSY: "EBUSY",
    EEXIST: "EEXIST",
    ENODEV: "ENODEV",
    EINVAL: "EINVAL",
}

# --- ITS command opcodes (GITS_CMD_* in arm-gic-v3.h): declared once ------------------
# The physical commands (< 0x20) are the ones KVM's vITS handles; the GICv4 ones
# (GITS_CMD_GICv4(x) = x | 0x20) are decoded for display only (KVM's vITS answers them
# -ENODEV, as any unknown opcode).
GITS_CMD_MOVI, GITS_CMD_INT, GITS_CMD_CLEAR, GITS_CMD_SYNC = 0x01, 0x03, 0x04, 0x05
GITS_CMD_MAPD, GITS_CMD_MAPC, GITS_CMD_MAPTI, GITS_CMD_MAPI = 0x08, 0x09, 0x0A, 0x0B
GITS_CMD_INV, GITS_CMD_INVALL, GITS_CMD_MOVALL, GITS_CMD_DISCARD = 0x0C, 0x0D, 0x0E, 0x0F
GITS_CMD_VMOVI, GITS_CMD_VMOVP, GITS_CMD_VSGI, GITS_CMD_VSYNC = 0x21, 0x22, 0x23, 0x25
GITS_CMD_VMAPP, GITS_CMD_VMAPTI, GITS_CMD_VMAPI = 0x29, 0x2A, 0x2B
GITS_CMD_VINVALL, GITS_CMD_INVDB = 0x2D, 0x2E
# name <-> opcode
ITS_OPCODES = {
    "MOVI": GITS_CMD_MOVI,
    "INT": GITS_CMD_INT,
    "CLEAR": GITS_CMD_CLEAR,
    "SYNC": GITS_CMD_SYNC,
    "MAPD": GITS_CMD_MAPD,
    "MAPC": GITS_CMD_MAPC,
    "MAPTI": GITS_CMD_MAPTI,
    "MAPI": GITS_CMD_MAPI,
    "INV": GITS_CMD_INV,
    "INVALL": GITS_CMD_INVALL,
    "MOVALL": GITS_CMD_MOVALL,
    "DISCARD": GITS_CMD_DISCARD,
    "VMOVI": GITS_CMD_VMOVI,
    "VMOVP": GITS_CMD_VMOVP,
    "VSGI": GITS_CMD_VSGI,
    "VSYNC": GITS_CMD_VSYNC,
    "VMAPP": GITS_CMD_VMAPP,
    "VMAPTI": GITS_CMD_VMAPTI,
    "VMAPI": GITS_CMD_VMAPI,
    "VINVALL": GITS_CMD_VINVALL,
    "INVDB": GITS_CMD_INVDB,
}
GICV4_OPCODE_MIN = 0x20
ITS_OPCODE_NAMES = {op: n for n, op in ITS_OPCODES.items()}
# Kept names: opcode -> name (all), name -> opcode (the physical commands KVM handles).
COMMAND_NAMES = ITS_OPCODE_NAMES
COMMAND_OPCODES = {n: op for n, op in ITS_OPCODES.items() if op < GICV4_OPCODE_MIN}

# --- architectural command error codes (0x01_<opcode>_<reason>) --------------------
E_ITS_MOVI_UNMAPPED_INTERRUPT = 0x010107
E_ITS_MOVI_UNMAPPED_COLLECTION = 0x010109
E_ITS_INT_UNMAPPED_INTERRUPT = 0x010307
E_ITS_CLEAR_UNMAPPED_INTERRUPT = 0x010507
E_ITS_MAPD_DEVICE_OOR = 0x010801
E_ITS_MAPD_ITTSIZE_OOR = 0x010802
E_ITS_MAPC_PROCNUM_OOR = 0x010902
E_ITS_MAPC_COLLECTION_OOR = 0x010903
E_ITS_MAPTI_UNMAPPED_DEVICE = 0x010A04
E_ITS_MAPTI_ID_OOR = 0x010A05
E_ITS_MAPTI_PHYSICALID_OOR = 0x010A06
E_ITS_INV_UNMAPPED_INTERRUPT = 0x010C07
E_ITS_INVALL_UNMAPPED_COLLECTION = 0x010D09
E_ITS_MOVALL_PROCNUM_OOR = 0x010E01
E_ITS_DISCARD_UNMAPPED_INTERRUPT = 0x010F07

E_ITS_NAMES = {v: k for k, v in list(globals().items()) if k.startswith("E_ITS_")}


def error_name(code: int) -> str:
    """'0', 'E_ITS_...' or '-EINVAL' for a KVM return value."""
    if code == 0:
        return "0"
    if code > 0:
        return E_ITS_NAMES.get(code, f"{code:#x}")
    return "-" + ERRNO_NAMES.get(-code, str(-code))


# --- ITS command fields, per doubleword (its_cmd_get_*) ------------------------------
# DW0: | DeviceID 63:32 | .... | Command 7:0 |
CMD_DW0 = Layout("CMD_DW0", [("Command", 7, 0), ("DeviceID", 63, 32)])
# DW1: | pINTID 63:32 | EventID 31:0 |   (MAPD: Size 4:0)
CMD_DW1 = Layout("CMD_DW1", [("EventID", 31, 0), ("pINTID", 63, 32), ("Size", 4, 0)])
# DW2: | V 63 | ITT_addr 51:8 | ... ; RDbase 47:16 (KVM reads 32 bits) | ICID 15:0 |
CMD_DW2 = Layout(
    "CMD_DW2", [("ICID", 15, 0), ("ITT_addr", 51, 8), ("RDbase", 47, 16), ("V", 63, 63)]
)
# DW3: RDbase2 47:16 (MOVALL)
CMD_DW3 = Layout("CMD_DW3", [("RDbase2", 47, 16)])

# Which fields each command carries, (dword, field): for encoders and the disassembler.
COMMAND_FIELDS = {
    "MAPD": [(0, "DeviceID"), (1, "Size"), (2, "ITT_addr"), (2, "V")],
    "MAPC": [(2, "ICID"), (2, "RDbase"), (2, "V")],
    "MAPTI": [(0, "DeviceID"), (1, "EventID"), (1, "pINTID"), (2, "ICID")],
    "MAPI": [(0, "DeviceID"), (1, "EventID"), (2, "ICID")],
    "MOVI": [(0, "DeviceID"), (1, "EventID"), (2, "ICID")],
    "DISCARD": [(0, "DeviceID"), (1, "EventID")],
    "CLEAR": [(0, "DeviceID"), (1, "EventID")],
    "INT": [(0, "DeviceID"), (1, "EventID")],
    "INV": [(0, "DeviceID"), (1, "EventID")],
    "INVALL": [(2, "ICID")],
    "SYNC": [(2, "RDbase")],
    "MOVALL": [(2, "RDbase"), (3, "RDbase2")],
}
CMD_DWORDS = (CMD_DW0, CMD_DW1, CMD_DW2, CMD_DW3)

# Fast-path constants derived from the rows above (never written by hand).
DEVICEID_SHIFT, DEVICEID_MASK = CMD_DW0["DeviceID"].shift, CMD_DW0["DeviceID"].mask
EVENTID_MASK = CMD_DW1["EventID"].mask
PINTID_SHIFT, PINTID_MASK = CMD_DW1["pINTID"].shift, CMD_DW1["pINTID"].mask
SIZE_MASK = CMD_DW1["Size"].mask
ICID_MASK = CMD_DW2["ICID"].mask
ITT_ADDR_SHIFT, ITT_ADDR_MASK = CMD_DW2["ITT_addr"].shift, CMD_DW2["ITT_addr"].mask
RDBASE_SHIFT, RDBASE_MASK = CMD_DW2["RDbase"].shift, CMD_DW2["RDbase"].mask
VALID_SHIFT = CMD_DW2["V"].shift

# --- ITS registers ------------------------------------------------------------------
GITS_CTLR, GITS_IIDR, GITS_TYPER = 0x0000, 0x0004, 0x0008
GITS_CBASER, GITS_CWRITER, GITS_CREADR = 0x0080, 0x0088, 0x0090
GITS_BASER = 0x0100  # GITS_BASER<n> at 0x100 + 8n
GITS_IDREGS_BASE = 0xFFD0
GITS_PIDR2 = 0xFFE8
GITS_TRANSLATER = 0x10040
ITS_FRAME_SIZE = 0x20000  # KVM_VGIC_V3_ITS_SIZE: two 64 KiB pages

GITS_CTLR_LAYOUT = Layout("GITS_CTLR", [("Enabled", 0, 0), ("Quiescent", 31, 31)], width=32)
GITS_CTLR_ENABLE = 1 << GITS_CTLR_LAYOUT["Enabled"].lo
GITS_CTLR_QUIESCENT = 1 << GITS_CTLR_LAYOUT["Quiescent"].lo
# GITS_CWRITER / GITS_CREADR: | Offset 19:5 | ... | Retry / Stalled 0 |
GITS_CWRITER_LAYOUT = Layout("GITS_CWRITER", [("Retry", 0, 0), ("Offset", 19, 5)])
GITS_CREADR_LAYOUT = Layout("GITS_CREADR", [("Stalled", 0, 0), ("Offset", 19, 5)])

GITS_TYPER_LAYOUT = Layout(
    "GITS_TYPER",
    [
        ("Physical", 0, 0),
        ("Virtual", 1, 1),
        ("ITT_entry_size", 7, 4),
        ("IDbits", 12, 8),
        ("Devbits", 17, 13),
        ("SEIS", 18, 18),
        ("PTA", 19, 19),
        ("HCC", 31, 24),
        ("CIDbits", 35, 32),
        ("CIL", 36, 36),
    ],
)
VITS_TYPER_IDBITS = 16
VITS_TYPER_DEVBITS = 16
VITS_MAX_EVENTID = (1 << VITS_TYPER_IDBITS) - 1
VITS_MAX_DEVID = (1 << VITS_TYPER_DEVBITS) - 1
VITS_ITE_SIZE = 8
KVM_GITS_TYPER = GITS_TYPER_LAYOUT.encode(
    Physical=1,
    ITT_entry_size=VITS_ITE_SIZE - 1,
    IDbits=VITS_TYPER_IDBITS - 1,
    Devbits=VITS_TYPER_DEVBITS - 1,
)  # = 0x1EF71

GITS_IIDR_LAYOUT = Layout(
    "GITS_IIDR",
    [("Implementer", 11, 0), ("Revision", 15, 12), ("Variant", 19, 16), ("ProductID", 31, 24)],
    width=32,
)
IMPLEMENTER_ARM = 0x43B
PRODUCT_ID_KVM = 0x4B

# GITS_CBASER: | Valid 63 | InnerCache 61:59 | OuterCache 55:53 | PA 51:12 | Shareability 11:10 | Size 7:0 |
GITS_CBASER_LAYOUT = Layout(
    "GITS_CBASER",
    [
        ("Size", 7, 0),
        ("Shareability", 11, 10),
        ("PA", 51, 12),
        ("OuterCache", 55, 53),
        ("InnerCache", 61, 59),
        ("Valid", 63, 63),
    ],
)
# GITS_BASER<n>: | Valid 63 | Indirect 62 | InnerCache 61:59 | Type 58:56 | OuterCache 55:53 |
#                | Entry_Size 52:48 | PA 47:12 | Shareability 11:10 | Page_Size 9:8 | Size 7:0 |
GITS_BASER_LAYOUT = Layout(
    "GITS_BASER",
    [
        ("Size", 7, 0),
        ("Page_Size", 9, 8),
        ("Shareability", 11, 10),
        ("PA_51_48", 15, 12),
        ("PA", 47, 16),
        ("Entry_Size", 52, 48),
        ("OuterCache", 55, 53),
        ("Type", 58, 56),
        ("InnerCache", 61, 59),
        ("Indirect", 62, 62),
        ("Valid", 63, 63),
    ],
)
GITS_BASER_TYPE_DEVICE = 1
GITS_BASER_TYPE_COLLECTION = 4
GITS_BASER_PAGE_SIZE_64K = 2
GITS_BASER_NR_REGS = 8

# Cacheability/shareability encodings shared by the GIC's table base registers.
GIC_BASER_CACHE_nCnB, GIC_BASER_CACHE_nC, GIC_BASER_CACHE_RaWb = 0, 1, 3
GIC_BASER_CACHE_SameAsInner = 0
GIC_BASER_NonShareable, GIC_BASER_InnerShareable, GIC_BASER_OuterShareable = 0, 1, 2

# --- redistributor LPI registers ---------------------------------------------------
GICR_CTLR, GICR_TYPER = 0x0000, 0x0008
GICR_PROPBASER, GICR_PENDBASER = 0x0070, 0x0078
GICR_INVLPIR, GICR_INVALLR = 0x00A0, 0x00B0
GICR_CTLR_ENABLE_LPIS = 1 << 0
GICR_CTLR_CES, GICR_CTLR_IR = 1 << 1, 1 << 2  # reported from KVM_VGIC_IMP_REV_3 (v6.0)
GICD_CTLR = 0x0000  # distributor: EnableGrp1 (KVM's dist->enabled), ARE_NS, DS
GICD_CTLR_ENABLE_SS_G1, GICD_CTLR_ARE_NS, GICD_CTLR_DS = 1 << 1, 1 << 4, 1 << 6

# GICR_TYPER: | Affinity_Value 63:32 | PPInum 31:27 | VSGI 26 | CommonLPIAff 25:24 |
#             | Processor_Number 23:8 | RVPEID 7 | MPAM 6 | DPGS 5 | Last 4 | DirectLPI 3 |
#             | Dirty 2 | VLPIS 1 | PLPIS 0 |
GICR_TYPER_LAYOUT = Layout(
    "GICR_TYPER",
    [
        ("PLPIS", 0, 0),
        ("VLPIS", 1, 1),
        ("Dirty", 2, 2),
        ("DirectLPI", 3, 3),
        ("Last", 4, 4),
        ("DPGS", 5, 5),
        ("MPAM", 6, 6),
        ("RVPEID", 7, 7),
        ("Processor_Number", 23, 8),
        ("CommonLPIAff", 25, 24),
        ("VSGI", 26, 26),
        ("PPInum", 31, 27),
        ("Affinity_Value", 63, 32),
    ],
)

# GICR_PROPBASER: | OuterCache 58:56 | PA 51:12 | Shareability 11:10 | InnerCache 9:7 | IDbits 4:0 |
GICR_PROPBASER_LAYOUT = Layout(
    "GICR_PROPBASER",
    [
        ("IDbits", 4, 0),
        ("InnerCache", 9, 7),
        ("Shareability", 11, 10),
        ("PA", 51, 12),
        ("OuterCache", 58, 56),
    ],
)
# GICR_PENDBASER: | PTZ 62 | OuterCache 58:56 | PA 51:16 | Shareability 11:10 | InnerCache 9:7 |
GICR_PENDBASER_LAYOUT = Layout(
    "GICR_PENDBASER",
    [
        ("InnerCache", 9, 7),
        ("Shareability", 11, 10),
        ("PA", 51, 16),
        ("OuterCache", 58, 56),
        ("PTZ", 62, 62),
    ],
)
GICR_PROPBASER_RESET = 0x580  # KVM's initial PROPBASER/PENDBASER (RaWb, inner shareable)
GICR_PENDBASER_RESET = 0x580

LPI_PROP_ENABLE = 1 << 0
LPI_PROP_GROUP1 = 1 << 1
LPI_PROP_PRIORITY_MASK = 0xFC
LPI_BASE_INTID = 8192
INTERRUPT_ID_BITS_ITS = 16

# KVM_SIGNAL_MSI
KVM_MSI_VALID_DEVID = 1 << 0
