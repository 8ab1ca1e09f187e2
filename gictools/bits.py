"""Bit layouts declared once as (name, hi, lo) rows, in the Arm spec's notation.

Decoders, encoders and the fast-path shift/mask constants all derive from these
rows, so a layout is reviewed against the spec line by line and nowhere else.
"""

from typing import NamedTuple


class Field(NamedTuple):
    name: str
    hi: int
    lo: int

    @property
    def shift(self) -> int:
        return self.lo

    @property
    def width(self) -> int:
        return self.hi - self.lo + 1

    @property
    def mask(self) -> int:
        """Mask of the field's value (not shifted)."""
        return (1 << self.width) - 1

    def get(self, word: int) -> int:
        return (word >> self.lo) & self.mask

    def in_place(self, word: int) -> int:
        """The field's bits of word, left where they are (every other bit cleared)."""
        return word & (self.mask << self.lo)

    def put(self, word: int, value: int) -> int:
        """Deposit value into word; raises ValueError if value does not fit."""
        if value < 0 or value > self.mask:
            raise ValueError(f"{self.name}: {value:#x} does not fit bits [{self.hi}:{self.lo}]")
        return (word & ~(self.mask << self.lo)) | (value << self.lo)


class Layout:
    """A named 64-bit (or narrower) word made of Fields."""

    def __init__(self, name: str, fields, width: int = 64):
        self.name = name
        self.width = width
        self.fields = {f.name: f for f in (Field(*f) for f in fields)}
        for f in self.fields.values():
            if not (0 <= f.lo <= f.hi < width):
                raise ValueError(f"{name}.{f.name}: bad bits [{f.hi}:{f.lo}]")

    def __getitem__(self, name: str) -> Field:
        return self.fields[name]

    @property
    def res0_mask(self) -> int:
        """Bits no field covers (RES0 in the spec's register descriptions)."""
        covered = 0
        for f in self.fields.values():
            covered |= f.mask << f.lo
        return ((1 << self.width) - 1) & ~covered

    def decode(self, word: int) -> dict:
        return {n: f.get(word) for n, f in self.fields.items()}

    def encode(self, **values) -> int:
        word = 0
        for n, v in values.items():
            try:
                f = self.fields[n]
            except KeyError:
                raise ValueError(f"{self.name} has no field {n!r}") from None
            word = f.put(word, v)
        return word

    def describe(self, word: int) -> str:
        return " ".join(f"{n}={v:#x}" for n, v in self.decode(word).items())


# 64-bit registers accessed as one 64-bit or two 32-bit halves (vgic-mmio.h)
def update_64bit_reg(old: int, value: int, offset: int, size: int) -> int:
    """update_64bit_reg: a 32-bit access writes the half the offset names."""
    if size == 8:
        return value & 0xFFFF_FFFF_FFFF_FFFF
    if offset & 4:
        return (old & 0xFFFF_FFFF) | ((value & 0xFFFF_FFFF) << 32)
    return (old & ~0xFFFF_FFFF) | (value & 0xFFFF_FFFF)


def extract_bytes(value: int, offset: int, size: int) -> int:
    """vgic_mmio's extract_bytes for the 32/64-bit accesses the ITS and GICR allow."""
    if size == 8:
        return value
    return (value >> 32) & 0xFFFF_FFFF if offset & 4 else value & 0xFFFF_FFFF
