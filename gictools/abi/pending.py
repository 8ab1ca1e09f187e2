"""vgic_v3_save_pending_tables: write each targeted LPI's pending latch into its vCPU's table."""

from gictools import regs as R
from gictools.model.memory import GuestFault


def save_pending_tables(vm) -> int:
    """One cached byte, re-read when the pointer changes; a byte written only when its bit changes."""
    last_ptr, val = None, 0
    for lpi in vm._lpi_walk():
        if lpi.target is None:
            continue
        ptr = vm.redists[lpi.target].pending_table() + lpi.intid // 8
        bit = 1 << (lpi.intid % 8)
        try:
            if ptr != last_ptr:
                val = vm.memory.read_u8(ptr)
                last_ptr = ptr
            stored = bool(val & bit)
            if stored == lpi.pending:
                continue
            val = (val | bit) if lpi.pending else (val & ~bit)
            vm.memory.write_u8(ptr, val)
        except GuestFault:
            return -R.EFAULT
    return 0
