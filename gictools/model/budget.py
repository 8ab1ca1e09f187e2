"""The model's allocation budget: KVM's kzalloc()/-ENOMEM, made deterministic.

KVM allocates one object per device (vgic_its_alloc_device), per ITE (vgic_its_alloc_ite)
and per LPI (vgic_add_lpi); when the kernel runs out of memory these fail with -ENOMEM
and the command or the restore fails (a restore then frees as any failing one). Guest-controlled
tables can ask for far more objects than their size suggests: 8,192 DTEs of a 631 KB
image may all name one ITT of 65,536 ITEs, i.e. 2^29 ITEs to allocate. The model applies
a fixed, configurable budget per VM instead of the host's memory, so such input fails
the same way (-ENOMEM) in bounded time and memory, and the same way on every machine.

Defaults (about 1 GiB of model objects at most) fit the largest workloads the tool is
meant for: 65,536 devices x 16 events (the save/restore benchmark) and 512 MiB of
touched guest RAM.
"""

from typing import NamedTuple


class Budget(NamedTuple):
    max_devices: int = 1 << 18  # devices, all ITSes of the VM together
    max_ites: int = 1 << 21  # ITEs, all devices together
    max_lpis: int = 1 << 16  # LPI objects (INTIDs are 16 bits wide in KVM's vITS anyway)
    max_pages: int = 1 << 18  # guest-memory pages (4 KiB) holding data: 1 GiB

    def check(self) -> "Budget":
        for name, v in self._asdict().items():
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"budget {name} must be a non-negative int, not {v!r}")
        return self


DEFAULT_BUDGET = Budget()
