"""scan_its_table: walk a table in guest RAM with the kernel's <0 / 0 / >0 callback contract.

vgic-its.c: read the entry at the current address (a read
outside guest RAM returns -EFAULT); call fn(id, entry); r < 0 -> return r; r == 0 ->
return 0 ("last element found"); else step r entries; if that step reaches or passes the
end of the table -> return 1 ("ran off the end"); else advance and repeat.

`size` is taken as KVM takes it: an `int` parameter copied into an `unsigned long`, so a
table length >= 2^31 bytes (an ITT with more than 2^27 EventIDs, only reachable with a
DTE Size > 15 on kernels without the 2026 Size check) is truncated as C truncates it.

Bounds: every step moves forward by at least one entry and the remaining length only
shrinks, so the walk ends; all-zero stretches (absent pages) are skipped in one step each
when the callback declares a zero entry invalid (zero_is_invalid=True, true of the DTE,
ITE and L1 callbacks: each returns 1 for an all-zero entry and has no side effect). An
iteration guard backs this up anyway: a walk never takes more steps than entries exist.
"""

from bisect import bisect_right

from gictools import regs as R
from gictools.model.memory import PAGE_MASK, PAGE_SHIFT, PAGE_SIZE

_U64 = (1 << 64) - 1


def kvm_table_len(size: int) -> int:
    """`unsigned long len = (int)size`: C's conversions of scan_its_table's size argument."""
    s = size & 0xFFFF_FFFF
    if s >= 1 << 31:
        s -= 1 << 32
    return s & _U64


class TableReader:
    """Entry reads from guest memory for one save/restore call (the entry-I/O choke point).

    Holds the sorted list of present pages so that zero stretches are skipped without a
    step per entry; pages are only ever added by writes, so the list is refreshed when
    the page count changes.
    """

    def __init__(self, mem):
        self.mem = mem
        self.fault_gpa = None  # the last entry read that failed (-EFAULT), for inspect
        self._pfns = None
        self._npages = -1

    def read_entry(self, gpa: int, esz: int = 8):
        """The entry as an int, or None if the read fails (KVM: -EFAULT)."""
        if esz != 8:  # vgic_its_read_entry_lock refuses others
            self.fault_gpa = gpa
            return None
        mem = self.mem
        if not mem.is_ram(gpa, esz):
            self.fault_gpa = gpa
            return None
        off = gpa & PAGE_MASK
        if off <= PAGE_SIZE - esz:
            page = mem.pages.get(gpa >> PAGE_SHIFT)
            return 0 if page is None else int.from_bytes(page[off : off + esz], "little")
        return int.from_bytes(mem.read(gpa, esz), "little")

    def zero_run(self, gpa: int) -> int:
        """Bytes from gpa that are in RAM and read as zero because their pages are absent."""
        mem = self.mem
        pfn = gpa >> PAGE_SHIFT
        if pfn in mem.pages:
            return 0
        slot_end = mem.slot_end(gpa)
        if slot_end is None:
            return 0
        if self._npages != len(mem.pages):
            self._pfns = sorted(mem.pages)
            self._npages = len(mem.pages)
        i = bisect_right(self._pfns, pfn)
        end = slot_end
        if i < len(self._pfns):
            end = min(end, self._pfns[i] << PAGE_SHIFT)
        return end - gpa


def scan_its_table(
    reader: TableReader,
    base: int,
    size: int,
    esz: int,
    start_id: int,
    fn,
    zero_is_invalid: bool = True,
) -> int:
    """<0 (error), 0 (a last element was found) or 1 (ran off the end of the table)."""
    length = kvm_table_len(size)
    gpa, id_ = base, start_id
    # Entries that can be visited: at most ceil(length / esz); one more for length 0.
    guard = length // esz + 2
    while guard > 0:
        guard -= 1
        if zero_is_invalid:
            run = reader.zero_run(gpa) // esz
            if run > 1:
                # fn would return 1 for each of these entries: step over all of them but the
                # last (which is read normally), unless the table ends inside the run.
                skip = run - 1
                if skip * esz >= length:
                    return 1
                id_ += skip
                gpa += skip * esz
                length -= skip * esz
                guard = length // esz + 2
        entry = reader.read_entry(gpa, esz)
        if entry is None:
            return -R.EFAULT
        r = fn(id_, entry)
        if r <= 0:
            return r
        step = r * esz
        if step >= length:
            return 1
        id_ += r
        gpa += step
        length -= step
    return 1  # unreachable: each step shrinks length
