"""Sparse, page-granular, little-endian guest memory with KVM's memslot rule.

Accesses outside every RAM slot fail as KVM's guest accesses do (-EFAULT),
here by raising GuestFault, which the model's handlers turn into -EFAULT.
Memory costs one 4 KiB bytearray per page written, never per address named.
"""

from bisect import bisect_right
from collections.abc import Iterable, Iterator

from gictools.errors import ConfigError, GuestFault

Journal = list[tuple[int, bytes, list[int]]]
"""(gpa, old bytes, new page frame numbers) per write, oldest first."""

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = PAGE_SIZE - 1
_ZERO_PAGE = bytes(PAGE_SIZE)

DEFAULT_RAM = ((0x4000_0000, 0x1_0000_0000),)  # QEMU virt's RAM base, 4 GiB


class MemoryBudgetExceeded(GuestFault):
    """A write needing a new page beyond the VM's page budget (Budget.max_pages).

    A GuestFault, so a caller that only knows faults stops as for one; the save/restore
    and image paths report it as -ENOMEM."""

    def __init__(self, gpa: int, size: int, max_pages: int) -> None:
        Exception.__init__(
            self,
            f"guest-physical write at {gpa:#x} (+{size}) needs more than the "
            f"{max_pages} pages of the VM's memory budget",
        )
        self.gpa, self.size, self.max_pages = gpa, size, max_pages


class GuestMemory:
    def __init__(
        self, slots: Iterable[tuple[int, int]] = DEFAULT_RAM, max_pages: int | None = None
    ) -> None:
        norm = []
        for base, size in slots:
            if (
                base < 0
                or size <= 0
                or base & PAGE_MASK
                or size & PAGE_MASK
                or base + size > 1 << 52
            ):
                raise ConfigError(
                    f"bad RAM slot base={base:#x} size={size:#x} (page aligned, < 2^52)"
                )
            norm.append((int(base), int(size)))
        norm.sort()
        for (b0, s0), (b1, _) in zip(norm, norm[1:]):
            if b0 + s0 > b1:
                raise ConfigError(f"RAM slots overlap at {b1:#x}")
        self.slots = tuple(norm)
        # sorted, disjoint slot bases and ends: is_ram bisects instead of scanning every slot
        self._bases = [b for b, _ in norm]
        self._ends = [b + sz for b, sz in norm]
        self.pages: dict[int, bytearray] = {}  # page frame number -> bytearray(PAGE_SIZE)
        self.max_pages = max_pages  # None: unbounded
        self.journal: Journal | None = None  # list of (gpa, old bytes, new pfns) while journaling

    # -- undo journal (operations put back afterwards, such as an inspect walk) --------------------
    def begin_journal(self) -> None:
        self.journal = []

    def end_journal(self) -> Journal:
        journal, self.journal = self.journal, None
        return journal or []

    def undo(self, journal: Journal) -> None:
        """Put back every byte a journal recorded, newest first; drop pages it created."""
        for gpa, old, new_pfns in reversed(journal):
            self.write(gpa, old)
            for pfn in new_pfns:
                page = self.pages.get(pfn)
                if page is not None and not any(page):
                    del self.pages[pfn]

    # -- memslot rule (kvm_is_visible_gfn) -------------------------------------------
    def is_ram(self, gpa: int, size: int = 1) -> bool:
        if gpa < 0 or size < 0:
            return False
        i = bisect_right(self._bases, gpa) - 1
        return i >= 0 and gpa + size <= self._ends[i]

    def slot_end(self, gpa: int) -> int | None:
        """End of the RAM slot holding gpa, or None."""
        i = bisect_right(self._bases, gpa) - 1
        return self._ends[i] if i >= 0 and gpa < self._ends[i] else None

    def _check(self, gpa: int, size: int) -> None:
        if not self.is_ram(gpa, size):
            raise GuestFault(gpa, size)

    # -- byte access ------------------------------------------------------------------
    def read(self, gpa: int, size: int) -> bytes:
        self._check(gpa, size)
        out = bytearray()
        pages = self.pages
        while size > 0:
            pfn, off = gpa >> PAGE_SHIFT, gpa & PAGE_MASK
            n = min(size, PAGE_SIZE - off)
            page = pages.get(pfn)
            out += (page if page is not None else _ZERO_PAGE)[off : off + n]
            gpa += n
            size -= n
        return bytes(out)

    def write(self, gpa: int, data: bytes | bytearray | memoryview) -> None:
        data = memoryview(bytes(data))
        self._check(gpa, len(data))
        pages = self.pages
        if self.journal is not None and len(data):
            last = (gpa + len(data) - 1) >> PAGE_SHIFT
            self.journal.append(
                (
                    gpa,
                    self.read(gpa, len(data)),
                    [p for p in range(gpa >> PAGE_SHIFT, last + 1) if p not in pages],
                )
            )
        pos = 0
        while pos < len(data):
            pfn, off = gpa >> PAGE_SHIFT, gpa & PAGE_MASK
            n = min(len(data) - pos, PAGE_SIZE - off)
            page = pages.get(pfn)
            if page is None:
                chunk = data[pos : pos + n]
                if not any(chunk):
                    gpa += n
                    pos += n
                    continue  # zeros into an untouched page: nothing to store
                if self.max_pages is not None and len(pages) >= self.max_pages:
                    raise MemoryBudgetExceeded(gpa, len(data) - pos, self.max_pages)
                page = pages[pfn] = bytearray(PAGE_SIZE)
            page[off : off + n] = data[pos : pos + n]
            gpa += n
            pos += n

    def read_u64(self, gpa: int) -> int:
        page = self.pages.get(gpa >> PAGE_SHIFT)
        off = gpa & PAGE_MASK
        if off <= PAGE_SIZE - 8 and self.is_ram(gpa, 8):
            return 0 if page is None else int.from_bytes(page[off : off + 8], "little")
        return int.from_bytes(self.read(gpa, 8), "little")

    def write_u64(self, gpa: int, value: int) -> None:
        self.write(gpa, (value & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "little"))

    def read_u8(self, gpa: int) -> int:
        self._check(gpa, 1)
        page = self.pages.get(gpa >> PAGE_SHIFT)
        return 0 if page is None else page[gpa & PAGE_MASK]

    def write_u8(self, gpa: int, value: int) -> None:
        self.write(gpa, bytes((value & 0xFF,)))

    # -- whole-memory views, for images and comparisons ---------------------------------
    def nonzero_pages(self) -> Iterator[tuple[int, bytes]]:
        """(gpa, bytes) of every page holding a non-zero byte, ascending."""
        for pfn in sorted(self.pages):
            page = self.pages[pfn]
            if any(page):
                yield pfn << PAGE_SHIFT, bytes(page)

    def nonzero_page_buffers(self) -> Iterator[tuple[int, bytearray]]:
        """(gpa, page buffer) of every page holding a non-zero byte, ascending (no copies)."""
        for pfn in sorted(self.pages):
            page = self.pages[pfn]
            if any(page):
                yield pfn << PAGE_SHIFT, page

    def copy(self) -> "GuestMemory":
        m = GuestMemory(self.slots, self.max_pages)
        m.pages = {pfn: bytearray(p) for pfn, p in self.pages.items()}
        return m

    def snapshot(self) -> dict[int, bytes]:
        """A comparable view: {pfn: bytes} of non-zero pages."""
        return {gpa >> PAGE_SHIFT: data for gpa, data in self.nonzero_pages()}
