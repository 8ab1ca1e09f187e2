"""One virtual ITS: registers (its_registers[]), command queue, devices, ITTs, collections.

Mirrors arch/arm64/kvm/vgic/vgic-its.c. Register rows are a table, commands a
dict of handlers (gictools.model.commands), table lookups check_id /
check_event_id as the kernel does. Nothing here raises for guest input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from gictools import entries as E
from gictools import regs as R
from gictools.bits import Field, extract_bytes, update_64bit_reg
from gictools.model.lpi import LPI
from gictools.model.memory import PAGE_MASK, GuestFault

if TYPE_CHECKING:
    from gictools.abi.v0 import Inspection
    from gictools.model.cache import CachePolicy
    from gictools.model.vm import VM

COLLECTION_NOT_MAPPED = 0xFFFF_FFFF
BASER_INITIAL = {
    n: R.GITS_BASER_LAYOUT.encode(
        InnerCache=R.GIC_BASER_CACHE_RaWb,
        Type=table_type,
        Entry_Size=7,
        Shareability=R.GIC_BASER_InnerShareable,
        Page_Size=R.GITS_BASER_PAGE_SIZE_64K,
    )
    for n, table_type in enumerate((R.GITS_BASER_TYPE_DEVICE, R.GITS_BASER_TYPE_COLLECTION))
}
# ID registers (vgic_mmio_read_its_idregs)
ID_REGS = {
    0xFFD0: 0x40,
    0xFFE0: 0x92,
    0xFFE4: 0xB4,
    0xFFE8: 0x3B,
    0xFFF0: 0x0D,
    0xFFF4: 0xF0,
    0xFFF8: 0x05,
    0xFFFC: 0xB1,
}

_B = R.GITS_BASER_LAYOUT
_C = R.GITS_CBASER_LAYOUT
_BASER_VALID = 1 << _B["Valid"].lo
_BASER_INDIRECT = 1 << _B["Indirect"].lo
_CWRITER_OFFSET = R.GITS_CWRITER_LAYOUT["Offset"]
_CREADR_OFFSET = R.GITS_CREADR_LAYOUT["Offset"]
SZ_64K = 0x10000


def _valid(reg: int) -> bool:
    """The Valid bit of a GITS_BASER<n> or GITS_CBASER value (bit 63 in both)."""
    return bool(_B["Valid"].get(reg))


class Device:
    __slots__ = ("device_id", "itt_addr", "num_eventid_bits", "ites")

    def __init__(self, device_id: int, itt_addr: int, num_eventid_bits: int) -> None:
        self.device_id = device_id
        self.itt_addr = itt_addr
        self.num_eventid_bits = num_eventid_bits
        self.ites: dict[int, ITE] = {}  # EventID -> ITE

    def __repr__(self) -> str:
        return f"Device({self.device_id}, itt={self.itt_addr:#x}, bits={self.num_eventid_bits})"


class Collection:
    __slots__ = ("icid", "target")

    def __init__(self, icid: int, target: int) -> None:
        self.icid, self.target = icid, target  # target: raw RDbase, or COLLECTION_NOT_MAPPED

    @property
    def mapped(self) -> bool:
        return self.target != COLLECTION_NOT_MAPPED

    def __repr__(self) -> str:
        t = "unmapped" if self.target == COLLECTION_NOT_MAPPED else self.target
        return f"Collection({self.icid}, target={t})"


class ITE:
    __slots__ = ("event_id", "collection", "lpi")

    def __init__(self, event_id: int, collection: Collection | None, lpi: LPI) -> None:
        self.event_id, self.collection, self.lpi = event_id, collection, lpi


# --- register sanitisation (vgic_sanitise_its_baser / _cbaser, vgic-mmio-v3.c) --------------


def sanitise_shareability(value: int, field: Field) -> int:
    # OuterShareable -> InnerShareable (vgic_sanitise_shareability)
    if field.get(value) == R.GIC_BASER_OuterShareable:
        value = field.put(value, R.GIC_BASER_InnerShareable)
    return value


def sanitise_inner_cache(value: int, field: Field) -> int:
    if field.get(value) in (R.GIC_BASER_CACHE_nCnB, R.GIC_BASER_CACHE_nC):
        value = field.put(value, R.GIC_BASER_CACHE_RaWb)
    return value


def sanitise_outer_cache(value: int, field: Field) -> int:
    if field.get(value) not in (R.GIC_BASER_CACHE_SameAsInner, R.GIC_BASER_CACHE_nC):
        value = field.put(value, R.GIC_BASER_CACHE_SameAsInner)
    return value


def _sanitise_cbaser(v: int) -> int:
    v = sanitise_shareability(v, _C["Shareability"])
    v = sanitise_inner_cache(v, _C["InnerCache"])
    v = sanitise_outer_cache(v, _C["OuterCache"])
    # the queue is 64 KiB aligned: address bits [15:12] (PA's low 4 bits) cleared
    return _C["PA"].put(v, _C["PA"].get(v) & ~0xF)


def _sanitise_baser(v: int) -> int:
    v = sanitise_shareability(v, _B["Shareability"])
    v = sanitise_inner_cache(v, _B["InnerCache"])
    v = sanitise_outer_cache(v, _B["OuterCache"])
    return _B["Page_Size"].put(v, R.GITS_BASER_PAGE_SIZE_64K)


_ReadFn = Callable[["ITS", int, int], int]
_WriteFn = Callable[["ITS", int, int, int], int]
# (offset, length, name, access sizes, read, guest write, userspace write or None)
_Register = tuple[int, int, str, tuple[int, ...], _ReadFn, _WriteFn, _WriteFn | None]


class ITS:
    """A vITS at `base`; `cache` is its translation-cache policy object (maybe VM-shared)."""

    def __init__(self, vm: VM, index: int, base: int, cache: CachePolicy) -> None:
        self.vm = vm
        self.index = index
        self.base = base
        self.doorbell = base + R.GITS_TRANSLATER
        self.cache = cache
        self.enabled = False
        self.abi_rev = 0
        self.cbaser = 0
        self.creadr = 0
        self.cwriter = 0
        self.baser = [0] * R.GITS_BASER_NR_REGS
        self.baser[0], self.baser[1] = BASER_INITIAL[0], BASER_INITIAL[1]
        self.devices: dict[
            int, Device
        ] = {}  # DeviceID -> Device: the first of KVM's device list with that ID
        # Devices behind a live one with the same DeviceID, in list order (a restored DTE
        # duplicating a live DeviceID: vgic_its_restore_dte appends, find_its_device returns
        # the first match, so these are invisible until the one in front is freed).
        self.shadowed: list[Device] = []
        self.collections: dict[int, Collection] = {}  # ICID -> Collection, in creation order
        self.command_hook: Callable[[bytes, int], object] | None = (
            None  # callable(raw32, error) after each queued command
        )
        self.last_error: int | None = 0

    def __repr__(self) -> str:
        return f"ITS({self.index}, base={self.base:#x}, enabled={self.enabled})"

    # --- cache invalidation at this ITS's call sites (scope is the policy's) --------------
    def invalidate_cache(self) -> None:
        self.cache.invalidate()

    # --- table geometry (vgic_its_check_id) ---------------------------------------------------
    def check_id(self, baser_index: int, id_: int) -> int | None:
        """GPA of the entry for id_ in BASER<n>'s table, or None (vgic_its_check_id)."""
        baser = self.baser[baser_index]
        btype = _B["Type"].get(baser)
        if btype == R.GITS_BASER_TYPE_DEVICE:
            if id_ > R.VITS_MAX_DEVID:
                return None
        elif btype == R.GITS_BASER_TYPE_COLLECTION:
            if id_ >= 1 << 16:
                return None
        else:
            return None
        esz = _B["Entry_Size"].get(baser) + 1
        table_size = (_B["Size"].get(baser) + 1) * SZ_64K
        base = baser_table_base(baser)
        mem = self.vm.memory
        if not baser & _BASER_INDIRECT:
            if id_ >= table_size // esz:
                return None
            gpa = base + id_ * esz
        else:
            l2_entries = SZ_64K // esz
            index = id_ // l2_entries
            if index >= table_size // 8:
                return None
            try:
                l1 = mem.read_u64(base + index * 8)
            except GuestFault:
                return None
            valid, l2 = E.unpack_l1e(l1)
            if not valid:
                return None
            gpa = l2 + (id_ % l2_entries) * esz
        if not mem.is_ram(gpa & ~PAGE_MASK, 1):  # kvm_is_visible_gfn
            return None
        return gpa

    def check_event_id(self, device: Device, event_id: int) -> bool:
        """vgic_its_check_event_id: in the device's EventID range and its ITE in RAM."""
        if event_id >= 1 << device.num_eventid_bits:
            return False
        gpa = device.itt_addr + event_id * R.VITS_ITE_SIZE
        return self.vm.memory.is_ram(gpa & ~PAGE_MASK, 1)

    # --- lookups -----------------------------------------------------------------------
    def find_ite(self, device_id: int, event_id: int) -> ITE | None:
        dev = self.devices.get(device_id)
        return None if dev is None else dev.ites.get(event_id)

    def collection_vcpu(self, coll: Collection | None) -> int | None:
        """collection_to_vcpu: the vCPU index a mapped collection targets, or None."""
        if coll is None or coll.target == COLLECTION_NOT_MAPPED:
            return None
        return self.vm.vcpu_from_rdbase(coll.target)

    def all_devices(self) -> list[Device]:
        """Every device on KVM's list: the visible ones, then the shadowed duplicates."""
        return [*self.devices.values(), *self.shadowed]

    # --- object lifetime (allocations count against the VM's budget: -ENOMEM) -----------------
    def alloc_device(self, device_id: int, itt_addr: int, num_eventid_bits: int) -> Device | None:
        """vgic_its_alloc_device: a new device appended to the list, or None (-ENOMEM).

        A DeviceID already live stays in front (find_its_device returns the first match)."""
        vm = self.vm
        if vm.nr_devices >= vm.budget.max_devices:
            return None
        vm.nr_devices += 1
        dev = Device(device_id, itt_addr, num_eventid_bits)
        if device_id in self.devices:
            self.shadowed.append(dev)
        else:
            self.devices[device_id] = dev
        return dev

    def can_alloc_ite(self) -> bool:
        """vgic_its_alloc_ite would succeed (the VM's ITE budget is not spent)."""
        return self.vm.nr_ites < self.vm.budget.max_ites

    def add_ite(
        self, device: Device, event_id: int, collection: Collection | None, lpi: LPI
    ) -> None:
        device.ites[event_id] = ITE(event_id, collection, lpi)
        self.vm.nr_ites += 1

    def free_ite(self, device: Device, ite: ITE) -> None:
        del device.ites[ite.event_id]
        self.vm.nr_ites -= 1
        self.vm.put_lpi(ite.lpi)

    def free_device(self, device: Device) -> None:
        """vgic_its_free_device: drop every ITE, invalidate, unlink the device.

        Freeing the visible device of a DeviceID uncovers the next shadowed one."""
        for ite in list(device.ites.values()):
            self.free_ite(device, ite)
        self.invalidate_cache()
        self.vm.nr_devices -= 1
        if self.devices.get(device.device_id) is device:
            del self.devices[device.device_id]
            for i, dup in enumerate(self.shadowed):
                if dup.device_id == device.device_id:
                    self.devices[dup.device_id] = self.shadowed.pop(i)
                    break
        else:
            self.shadowed = [d for d in self.shadowed if d is not device]

    def free_devices(self) -> None:
        """vgic_its_free_device_list: every device, one cache invalidation each."""
        for dev in self.all_devices():
            self.free_device(dev)

    def sort_device_list(self) -> list[Device]:
        """list_sort(device_list, vgic_its_device_cmp), as a save does; the new list order.

        vgic_its_device_cmp returns 1 for equal DeviceIDs and list_sort takes the later
        element on a positive answer, so devices sharing a DeviceID come out in reverse
        order: after a save, the last restored duplicate is the one find_its_device sees."""
        groups: dict[int, list[Device]] = {d: [dev] for d, dev in self.devices.items()}
        for dev in self.shadowed:
            groups[dev.device_id].append(dev)
        order: list[Device] = []
        for device_id in sorted(groups):
            order.extend(reversed(groups[device_id]))
        self.devices = {}
        self.shadowed = []
        for dev in order:
            if dev.device_id in self.devices:
                self.shadowed.append(dev)
            else:
                self.devices[dev.device_id] = dev
        return order

    def free_collection(self, icid: int) -> None:
        """vgic_its_free_collection: ITEs of this ITS lose their collection."""
        coll = self.collections.pop(icid, None)
        if coll is None:
            return
        for dev in self.all_devices():
            for ite in dev.ites.values():
                if ite.collection is coll:
                    ite.collection = None

    def free_collections(self) -> None:
        for icid in list(self.collections):
            self.free_collection(icid)

    # --- MSI slow path (vgic_its_resolve_lpi + vgic_its_trigger_msi) ---------------------------
    def resolve_lpi(self, device_id: int, event_id: int) -> tuple[int, LPI | None]:
        """(error, lpi): the translation without side effects (vgic_its_resolve_lpi, no fill)."""
        if not self.enabled:
            return -R.EBUSY, None
        dev = self.devices.get(device_id)
        ite = None if dev is None else dev.ites.get(event_id)
        if ite is None or ite.collection is None or ite.collection.target == COLLECTION_NOT_MAPPED:
            return R.E_ITS_INT_UNMAPPED_INTERRUPT, None
        vcpu = self.vm.vcpu_from_rdbase(ite.collection.target)
        if vcpu is None:
            return R.E_ITS_INT_UNMAPPED_INTERRUPT, None
        if not self.vm.redists[vcpu].lpis_enabled:
            return -R.EBUSY, None
        return 0, ite.lpi

    def trigger_msi(self, device_id: int, event_id: int) -> tuple[int, LPI | None, int | None]:
        """vgic_its_trigger_msi: translate, fill the cache, latch pending. Returns (err, lpi, outcome)."""
        err, lpi = self.resolve_lpi(device_id, event_id)
        if err:
            return err, None, None
        assert lpi is not None  # resolve_lpi returns an LPI with error 0
        outcome = self.cache.fill(self.doorbell, device_id, event_id, lpi)
        self.vm.latch(lpi)  # pending_latch = true; vgic_queue_irq_unlock
        return 0, lpi, outcome

    # --- command queue (vgic_its_process_commands) ------------------------------------------------
    def queue_size(self) -> int:
        return (_C["Size"].get(self.cbaser) + 1) * 4096

    def queue_base(self) -> int:
        return _C["PA"].in_place(self.cbaser) & ~(SZ_64K - 1)

    def process_commands(self) -> None:
        if not self.enabled or not _valid(self.cbaser):
            return
        size = self.queue_size()
        base = self.queue_base()
        mem = self.vm.memory
        hook = self.command_hook
        # CREADR and CWRITER are < size and 32-byte aligned, so this ends within size/32 steps.
        while self.creadr != self.cwriter:
            try:
                raw = mem.read(base + self.creadr, 32)
            except GuestFault:
                raw = None  # unreadable slot: skipped silently
            if raw is not None:
                err = self.process_command(raw)
                if hook is not None:
                    hook(raw, err)
            self.creadr += 32
            if self.creadr >= size:
                self.creadr = 0

    def process_command(self, raw: bytes) -> int:
        """Execute one 32-byte command (vgic_its_handle_command); returns its KVM result."""
        from gictools.model.commands import HANDLERS

        dw0 = int.from_bytes(raw[0:8], "little")
        handler = HANDLERS.get(R.CMD_DW0["Command"].get(dw0))
        if handler is None:
            err = -R.ENODEV  # unknown and GICv4 commands: ignored
        else:
            err = handler(
                self,
                dw0,
                int.from_bytes(raw[8:16], "little"),
                int.from_bytes(raw[16:24], "little"),
                int.from_bytes(raw[24:32], "little"),
            )
        self.last_error = err
        return err

    # --- registers (its_registers[]) ---------------------------------------------------------
    def _read_ctlr(self, off: int, size: int) -> int:
        v = R.GITS_CTLR_QUIESCENT if self.creadr == self.cwriter else 0
        return v | (R.GITS_CTLR_ENABLE if self.enabled else 0)

    def _write_ctlr(self, off: int, size: int, value: int) -> int:
        # vgic_mmio_write_its_ctlr
        if (
            not self.enabled
            and value & R.GITS_CTLR_ENABLE
            and not (_valid(self.baser[0]) and _valid(self.baser[1]) and _valid(self.cbaser))
        ):
            return 0
        self.enabled = bool(value & R.GITS_CTLR_ENABLE)
        if not self.enabled:
            self.invalidate_cache()
        self.process_commands()
        return 0

    def iidr(self) -> int:
        return R.GITS_IIDR_LAYOUT.encode(
            Implementer=R.IMPLEMENTER_ARM, Revision=self.abi_rev, ProductID=R.PRODUCT_ID_KVM
        )

    def _read_iidr(self, off: int, size: int) -> int:
        return self.iidr()

    def _uaccess_write_iidr(self, off: int, size: int, value: int) -> int:
        # vgic_mmio_uaccess_write_its_iidr
        from gictools.abi import ABIS

        rev = R.GITS_IIDR_LAYOUT["Revision"].get(value)
        if rev >= len(ABIS):
            return -R.EINVAL
        self.abi_rev = rev
        ABIS[rev].commit(self)
        return 0

    def _read_typer(self, off: int, size: int) -> int:
        return extract_bytes(R.KVM_GITS_TYPER, off, size)

    def _read_cbaser(self, off: int, size: int) -> int:
        return extract_bytes(self.cbaser, off, size)

    def _write_cbaser(self, off: int, size: int, value: int) -> int:
        if self.enabled:
            return 0
        self.cbaser = _sanitise_cbaser(update_64bit_reg(self.cbaser, value, off, size))
        self.creadr = 0
        self.cwriter = 0
        return 0

    def _read_cwriter(self, off: int, size: int) -> int:
        return extract_bytes(self.cwriter, off, size)

    def _write_cwriter(self, off: int, size: int, value: int) -> int:
        reg = _CWRITER_OFFSET.in_place(update_64bit_reg(self.cwriter, value, off, size))
        if reg >= self.queue_size():
            return 0
        self.cwriter = reg
        self.process_commands()
        return 0

    def _read_creadr(self, off: int, size: int) -> int:
        return extract_bytes(self.creadr, off, size)

    def _uaccess_write_creadr(self, off: int, size: int, value: int) -> int:
        if self.enabled:
            return -R.EBUSY
        reg = _CREADR_OFFSET.in_place(update_64bit_reg(self.creadr, value, off, size))
        if reg >= self.queue_size():
            return -R.EINVAL
        self.creadr = reg
        return 0

    def _read_baser(self, off: int, size: int) -> int:
        n = ((off - R.GITS_BASER) >> 3) & 7
        return extract_bytes(self.baser[n] if n < 2 else 0, off, size)

    def _write_baser(self, off: int, size: int, value: int) -> int:
        # vgic_mmio_write_its_baser
        n = ((off - R.GITS_BASER) >> 3) & 7
        if self.enabled or n >= 2:
            return 0
        from gictools.abi import ABIS

        abi = ABIS[self.abi_rev]
        if n == 0:
            btype, esz, indirect_mask = R.GITS_BASER_TYPE_DEVICE, abi.dte_esz, _BASER_INDIRECT
        else:
            btype, esz, indirect_mask = R.GITS_BASER_TYPE_COLLECTION, abi.cte_esz, 0
        reg = update_64bit_reg(self.baser[n], value, off, size)
        reg = _B["Entry_Size"].put(reg, esz - 1)
        reg = _B["Type"].put(reg, btype)
        reg &= ~_BASER_INDIRECT | indirect_mask
        reg = _sanitise_baser(reg)
        old, self.baser[n] = self.baser[n], reg
        if self.vm.kernel.baser_change_frees:
            # stable 6.12.112: any change frees the list, then vgic_its_invalidate_cache
            # (an unchanged rewrite, as the ITS driver does on resume, frees nothing)
            if reg != old:
                if n == 0:
                    self.free_devices()
                else:
                    self.free_collections()
                self.invalidate_cache()
        elif not _valid(reg):  # before: Valid 0 frees, and collections without invalidating
            if n == 0:
                self.free_devices()
            else:
                self.free_collections()
        return 0

    def _read_idreg(self, off: int, size: int) -> int:
        return ID_REGS.get(off, 0)

    def _ignore(self, off: int, size: int, value: int) -> int:
        return 0

    # (offset, length, name, access sizes, read, guest write, userspace write or None)
    REGISTERS: tuple[_Register, ...] = (
        (R.GITS_CTLR, 4, "GITS_CTLR", (4,), _read_ctlr, _write_ctlr, None),
        (R.GITS_IIDR, 4, "GITS_IIDR", (4,), _read_iidr, _ignore, _uaccess_write_iidr),
        (R.GITS_TYPER, 8, "GITS_TYPER", (4, 8), _read_typer, _ignore, None),
        (R.GITS_CBASER, 8, "GITS_CBASER", (4, 8), _read_cbaser, _write_cbaser, None),
        (R.GITS_CWRITER, 8, "GITS_CWRITER", (4, 8), _read_cwriter, _write_cwriter, None),
        (R.GITS_CREADR, 8, "GITS_CREADR", (4, 8), _read_creadr, _ignore, _uaccess_write_creadr),
        (R.GITS_BASER, 0x40, "GITS_BASER", (4, 8), _read_baser, _write_baser, None),
        (R.GITS_IDREGS_BASE, 0x30, "GITS_IDREGS", (4,), _read_idreg, _ignore, None),
    )

    @classmethod
    def find_register(cls, offset: int) -> _Register | None:
        for row in cls.REGISTERS:
            if row[0] <= offset < row[0] + row[1]:
                return row
        return None

    # --- guest MMIO (dispatch_mmio_read/write: RAZ/WI where no region or size matches) ---------
    def mmio_read(self, offset: int, size: int) -> int:
        row = self.find_register(offset)
        if row is None or size not in row[3] or offset & (size - 1):
            return 0
        return row[4](self, offset, size)

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        row = self.find_register(offset)
        if row is None or size not in row[3] or offset & (size - 1):
            return
        row[5](self, offset, size, value & ((1 << (8 * size)) - 1))

    # --- userspace register access (KVM_DEV_ARM_VGIC_GRP_ITS_REGS, vgic_its_attr_regs_access) --
    @staticmethod
    def register_offset(reg: str | int) -> int:
        if isinstance(reg, int):
            return reg
        name = reg.upper()
        if name.startswith("GITS_BASER") and name[10:].isdigit():
            return R.GITS_BASER + 8 * int(name[10:])
        off = getattr(R, name, None)
        if not isinstance(off, int) or not name.startswith("GITS_"):
            raise ValueError(f"unknown ITS register {reg!r}")
        return off

    def _uaccess_row(self, offset: int) -> tuple[_Register | None, int]:
        align = 4 if offset < 8 or offset >= R.GITS_IDREGS_BASE else 8
        if offset & (align - 1):
            return None, -R.EINVAL
        row = self.find_register(offset)
        if row is None:
            return None, -R.ENXIO
        return row, 0

    def read_reg(self, reg: str | int) -> int:
        """Userspace read of a register by name or offset; the whole register."""
        off = self.register_offset(reg)
        row, err = self._uaccess_row(off)
        if row is None:
            raise ValueError(f"ITS register offset {off:#x}: errno {-err}")
        return row[4](self, off, 4 if 4 in row[3] and 8 not in row[3] else 8)

    def write_reg(self, reg: str | int, value: int) -> int:
        """Userspace write (restore path): 0 or -errno, as the KVM device attribute."""
        off = self.register_offset(reg)
        row, err = self._uaccess_row(off)
        if row is None:
            return err
        size = 4 if 8 not in row[3] else 8
        fn = row[6] or row[5]
        return fn(self, off, size, value & ((1 << (8 * size)) - 1))

    # --- device control (KVM_DEV_ARM_VGIC_GRP_CTRL) ---------------------------------------------
    def reset(self) -> int:
        """KVM_DEV_ARM_ITS_CTRL_RESET (vgic_its_reset)."""
        self.baser[0] &= ~_BASER_VALID
        self.baser[1] &= ~_BASER_VALID
        self.cbaser = self.creadr = self.cwriter = 0
        self.enabled = False
        self.free_devices()
        self.free_collections()
        return 0

    def save_tables(self) -> int:
        from gictools.abi import ABIS

        return ABIS[self.abi_rev].save(self)

    def restore_tables(self, find: Inspection | None = None) -> int:
        """KVM_DEV_ARM_ITS_RESTORE_TABLES; with find (an abi.v0.Inspection) the walk only
        inspects: every problem recorded, the VM left unchanged."""
        from gictools.abi import ABIS

        return ABIS[self.abi_rev].restore(self, find)


def baser_table_base(baser: int) -> int:
    """GITS_BASER address: PA[47:16] plus PA[51:48] from bits [15:12] (GITS_BASER_ADDR_48_to_52)."""
    return _B["PA"].in_place(baser) | (_B["PA_51_48"].get(baser) << 48)
