"""KVM ITS ABI revision 0 table entries: the only place their bits are packed or unpacked.

All entries are 8 bytes, little-endian (Documentation/virt/kvm/devices/arm-vgic-its.rst,
the KVM_ITS_* masks in arch/arm64/kvm/vgic/vgic.h). Layouts are (name, hi, lo) rows;
the typed NamedTuples and the fast pack/unpack helpers used by the save/restore loops
derive their shifts and masks from those rows (tests check fast == generic).
"""

from typing import NamedTuple

from gictools.bits import Layout

ENTRY_SIZE = 8

# Device Table Entry (indexed by DeviceID):
# | V 63 | next 62:49 | ITT_addr 48:5 (= ITT address [51:8]) | Size 4:0 (= EventID bits - 1) |
DTE_LAYOUT = Layout("DTE", [("Size", 4, 0), ("ITT_addr", 48, 5), ("next", 62, 49), ("V", 63, 63)])
# Interrupt Translation Entry (indexed by EventID in the device's ITT):
# | next 63:48 | pINTID 47:16 (0 = invalid entry) | ICID 15:0 |
ITE_LAYOUT = Layout("ITE", [("ICID", 15, 0), ("pINTID", 47, 16), ("next", 63, 48)])
# Collection Table Entry (packed from entry 0, not indexed):
# | V 63 | RES0 62:52 | RDBase 51:16 (KVM writes and reads [47:16], a u32) | ICID 15:0 |
CTE_LAYOUT = Layout(
    "CTE",
    [("ICID", 15, 0), ("RDBase", 47, 16), ("RDBase_hi", 51, 48), ("RES0", 62, 52), ("V", 63, 63)],
)
# Level-1 device-table entry (two-level tables; written by the guest, never by KVM):
# | V 63 | ... | L2 page address 51:16 | ... |
L1E_LAYOUT = Layout("L1E", [("L2_addr", 51, 16), ("V", 63, 63)])


# Derived constants for the hot loops (never written by hand).
DTE_VALID_SHIFT = DTE_LAYOUT["V"].shift
DTE_NEXT_SHIFT, DTE_NEXT_MASK = DTE_LAYOUT["next"].shift, DTE_LAYOUT["next"].mask
DTE_ITTADDR_SHIFT, DTE_ITTADDR_MASK = DTE_LAYOUT["ITT_addr"].shift, DTE_LAYOUT["ITT_addr"].mask
DTE_SIZE_MASK = DTE_LAYOUT["Size"].mask
DTE_NEXT_MAX = DTE_NEXT_MASK  # 16383: save caps the DeviceID distance
ITE_NEXT_SHIFT, ITE_NEXT_MASK = ITE_LAYOUT["next"].shift, ITE_LAYOUT["next"].mask
ITE_PINTID_SHIFT, ITE_PINTID_MASK = ITE_LAYOUT["pINTID"].shift, ITE_LAYOUT["pINTID"].mask
ITE_ICID_MASK = ITE_LAYOUT["ICID"].mask
ITE_NEXT_MAX = ITE_NEXT_MASK
CTE_VALID_SHIFT = CTE_LAYOUT["V"].shift
CTE_RDBASE_SHIFT, CTE_RDBASE_MASK = CTE_LAYOUT["RDBase"].shift, CTE_LAYOUT["RDBase"].mask
CTE_ICID_MASK = CTE_LAYOUT["ICID"].mask
CTE_IGNORED_MASK = (CTE_LAYOUT["RDBase_hi"].mask << CTE_LAYOUT["RDBase_hi"].shift) | (
    CTE_LAYOUT["RES0"].mask << CTE_LAYOUT["RES0"].shift
)
L1E_VALID_SHIFT = L1E_LAYOUT["V"].shift
L1E_ADDR_MASK = L1E_LAYOUT["L2_addr"].mask << L1E_LAYOUT["L2_addr"].shift
ITT_ADDR_GRANULE = 256  # the DTE holds ITT address bits [51:8]


class DeviceTableEntry(NamedTuple):
    valid: bool
    next: int  # DeviceID distance to the next valid DTE; 0 = last
    itt_addr: int  # byte address (256-byte aligned)
    size: int  # the raw field: EventID bits - 1

    @property
    def num_eventid_bits(self) -> int:
        return self.size + 1


class InterruptTranslationEntry(NamedTuple):
    next: int  # EventID distance to the next ITE; 0 = last
    pintid: int  # 0 = invalid entry
    icid: int

    @property
    def valid(self) -> bool:
        return self.pintid != 0


class CollectionTableEntry(NamedTuple):
    valid: bool
    rdbase: int  # the collection's target (u32; 0xFFFFFFFF = created by MAPTI, unmapped)
    icid: int


class L1Entry(NamedTuple):
    valid: bool
    l2_addr: int  # 64 KiB-aligned L2 page address


# --- generic (layout-driven) decoders and encoders -------------------------------------------


def decode_dte(word: int) -> DeviceTableEntry:
    f = DTE_LAYOUT.decode(word)
    return DeviceTableEntry(bool(f["V"]), f["next"], f["ITT_addr"] << 8, f["Size"])


def encode_dte(e: DeviceTableEntry) -> int:
    if e.itt_addr % ITT_ADDR_GRANULE:
        raise ValueError(f"DTE: ITT address {e.itt_addr:#x} is not 256-byte aligned")
    return DTE_LAYOUT.encode(V=int(e.valid), next=e.next, ITT_addr=e.itt_addr >> 8, Size=e.size)


def decode_ite(word: int) -> InterruptTranslationEntry:
    f = ITE_LAYOUT.decode(word)
    return InterruptTranslationEntry(f["next"], f["pINTID"], f["ICID"])


def encode_ite(e: InterruptTranslationEntry) -> int:
    return ITE_LAYOUT.encode(next=e.next, pINTID=e.pintid, ICID=e.icid)


def decode_cte(word: int) -> CollectionTableEntry:
    """As vgic_its_restore_cte reads it: target = (u32)(val >> 16), bits [51:48] ignored."""
    f = CTE_LAYOUT.decode(word)
    return CollectionTableEntry(bool(f["V"]), f["RDBase"], f["ICID"])


def encode_cte(e: CollectionTableEntry) -> int:
    return CTE_LAYOUT.encode(V=int(e.valid), RDBase=e.rdbase, ICID=e.icid)


def decode_l1e(word: int) -> L1Entry:
    f = L1E_LAYOUT.decode(word)
    return L1Entry(bool(f["V"]), f["L2_addr"] << 16)


def encode_l1e(e: L1Entry) -> int:
    if e.l2_addr & 0xFFFF:
        raise ValueError(f"L1 entry: L2 address {e.l2_addr:#x} is not 64 KiB aligned")
    return L1E_LAYOUT.encode(V=int(e.valid), L2_addr=e.l2_addr >> 16)


# --- fast helpers for the save/restore loops (same bits, no dicts) ---------------------------


def pack_dte(next_: int, itt_addr: int, size: int) -> int:
    """A valid DTE (vgic_its_save_dte); the caller keeps next_ <= DTE_NEXT_MAX."""
    return (
        (1 << DTE_VALID_SHIFT)
        | (next_ << DTE_NEXT_SHIFT)
        | ((itt_addr >> 8) << DTE_ITTADDR_SHIFT)
        | size
    )


def pack_ite(next_: int, pintid: int, icid: int) -> int:
    """An ITE (vgic_its_save_ite)."""
    return (next_ << ITE_NEXT_SHIFT) | (pintid << ITE_PINTID_SHIFT) | icid


def pack_cte(rdbase: int, icid: int) -> int:
    """A valid CTE (vgic_its_save_cte): the u32 target << 16."""
    return (1 << CTE_VALID_SHIFT) | (rdbase << CTE_RDBASE_SHIFT) | icid


def unpack_dte(word: int):
    """(valid, next, itt_addr, num_eventid_bits) as vgic_its_restore_dte reads them."""
    return (
        word >> DTE_VALID_SHIFT,
        (word >> DTE_NEXT_SHIFT) & DTE_NEXT_MASK,
        ((word >> DTE_ITTADDR_SHIFT) & DTE_ITTADDR_MASK) << 8,
        (word & DTE_SIZE_MASK) + 1,
    )


def unpack_ite(word: int):
    """(next, pintid, icid) as vgic_its_restore_ite reads them."""
    return (
        (word >> ITE_NEXT_SHIFT) & ITE_NEXT_MASK,
        (word >> ITE_PINTID_SHIFT) & ITE_PINTID_MASK,
        word & ITE_ICID_MASK,
    )


def unpack_cte(word: int):
    """(valid, target, icid) as vgic_its_restore_cte reads them."""
    return (
        word >> CTE_VALID_SHIFT,
        (word >> CTE_RDBASE_SHIFT) & CTE_RDBASE_MASK,
        word & CTE_ICID_MASK,
    )


def unpack_l1e(word: int):
    """(valid, l2_addr) as handle_l1_dte reads them."""
    return word >> L1E_VALID_SHIFT, word & L1E_ADDR_MASK


def to_bytes(word: int) -> bytes:
    return word.to_bytes(ENTRY_SIZE, "little")


def from_bytes(raw) -> int:
    return int.from_bytes(raw, "little")
