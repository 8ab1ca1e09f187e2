"""The VM: vCPUs (index vs id), redistributors, the LPI set, ITSes and MSI injection."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from typing import NamedTuple

from gictools import regs as R
from gictools.bits import Layout, extract_bytes, update_64bit_reg
from gictools.errors import ConfigError
from gictools.model import kernel as K
from gictools.model.budget import DEFAULT_BUDGET, Budget
from gictools.model.cache import CachePolicy, Outcome, policy_class
from gictools.model.its import ITS
from gictools.model.lpi import LPI
from gictools.model.memory import DEFAULT_RAM, GuestFault, GuestMemory

DEFAULT_ITS_BASE = 0x0800_0000  # QEMU virt and the selftests' GITS base
_PROP = R.GICR_PROPBASER_LAYOUT
_PEND = R.GICR_PENDBASER_LAYOUT
_TYPER = R.GICR_TYPER_LAYOUT
_PTZ = 1 << _PEND["PTZ"].lo


class MsiResult(NamedTuple):
    ret: int  # what KVM_SIGNAL_MSI returns: 1 delivered, 0 blocked, -errno
    error: int  # 0, the E_ITS_* code, or -errno
    intid: int | None
    vcpu: int | None
    outcome: Outcome  # the cache lookup's real outcome (RECYCLE and MISS_NOFILL included)
    victim: tuple[int, int] | None = None

    @property
    def cache(self) -> str:
        """The Parquet `cache` value: hit / miss / miss-evict / bypass."""
        return self.outcome.column


class Redistributor:
    __slots__ = ("vcpu", "vcpu_id", "lpis_enabled", "pendbaser")

    def __init__(self, vcpu: int, vcpu_id: int) -> None:
        self.vcpu, self.vcpu_id = vcpu, vcpu_id
        self.lpis_enabled = False  # GICR_CTLR.EnableLPIs (no RWP window modelled)
        self.pendbaser = R.GICR_PENDBASER_RESET  # PTZ kept as written, read as 0

    def pending_table(self) -> int:
        return _PEND["PA"].in_place(self.pendbaser)


class VM:
    """A VM with a vGICv3 and any number of ITSes; `kernel` picks version-specific behaviour."""

    def __init__(
        self,
        vcpus: int = 1,
        *,
        vcpu_ids: Iterable[int] | None = None,
        kernel: str = K.DEFAULT_KERNEL,
        memory: Iterable[tuple[int, int]] = DEFAULT_RAM,
        cache: str | None = None,
        budget: Budget | None = None,
    ) -> None:
        if not isinstance(vcpus, int) or not 1 <= vcpus <= 4096:
            raise ConfigError(f"vcpus must be 1..4096, not {vcpus!r}")
        ids = list(range(vcpus)) if vcpu_ids is None else [int(i) for i in vcpu_ids]
        if len(ids) != vcpus or len(set(ids)) != vcpus or min(ids) < 0:
            raise ConfigError("vcpu_ids must be distinct non-negative ints, one per vCPU")
        self.kernel = K.profile(kernel)
        self.nr_vcpus = vcpus
        self.vcpu_ids = ids
        self._index_of_id = {vid: i for i, vid in enumerate(ids)}
        try:
            self.budget = (DEFAULT_BUDGET if budget is None else Budget(*budget)).check()
        except (TypeError, ValueError) as e:
            raise ConfigError(f"bad budget: {e}") from None
        self.memory = GuestMemory(memory, max_pages=self.budget.max_pages)
        self.nr_devices = 0  # devices and ITEs of all ITSes, against the budget
        self.nr_ites = 0
        self.redists = [Redistributor(i, vid) for i, vid in enumerate(ids)]
        self.propbaser = R.GICR_PROPBASER_RESET
        self.lpis: dict[int, LPI] = {}  # INTID -> LPI, in creation order
        self.itses: list[ITS] = []
        self._its_bases: list[int] = []  # sorted frame bases, and the ITS of each (for its_at)
        self._its_by_base: list[ITS] = []
        self.cache_policy = cache or self.kernel.default_cache
        policy_class(self.cache_policy)
        self._vm_cache: CachePolicy | None = None

    # --- vCPUs -----------------------------------------------------------------------------
    def vcpu_from_rdbase(self, target: int) -> int | None:
        """collection_to_vcpu: the vCPU index a processor number names, or None."""
        if self.kernel.rdbase_is_vcpu_id:
            return self._index_of_id.get(target)  # kvm_get_vcpu_by_id (v6.7+)
        return target if 0 <= target < self.nr_vcpus else None

    def rdbase_of(self, vcpu: int) -> int:
        """The processor number a guest writes in MAPC/MOVALL to name vCPU index `vcpu`."""
        return self.vcpu_ids[vcpu] if self.kernel.rdbase_is_vcpu_id else vcpu

    def _vcpu(self, vcpu: object) -> int:
        if not isinstance(vcpu, int) or not 0 <= vcpu < self.nr_vcpus:
            raise ValueError(f"no vCPU index {vcpu!r} (VM has {self.nr_vcpus})")
        return vcpu

    # --- ITSes -----------------------------------------------------------------------------
    def add_its(self, base: int | None = None, cache: str | None = None) -> ITS:
        """vgic_its_create + KVM_VGIC_ITS_ADDR_TYPE: a new ITS; resets PROPBASER as KVM does."""
        if base is None:
            base = DEFAULT_ITS_BASE + R.ITS_FRAME_SIZE * len(self.itses)
        if base < 0 or base & 0xFFFF or base + R.ITS_FRAME_SIZE > 1 << 52:
            raise ConfigError(f"ITS base {base:#x} must be 64 KiB aligned and below 2^52")
        other = self.its_at(base) or self.its_at(base + R.ITS_FRAME_SIZE - 1)
        if other is not None:
            raise ConfigError(f"ITS frame at {base:#x} overlaps the ITS at {other.base:#x}")
        name = cache or self.cache_policy
        if self.itses and name != self.cache_policy:
            raise ConfigError(f"all ITSes of a VM share one cache policy ({self.cache_policy})")
        self.cache_policy = name
        cls = policy_class(name)
        if cls.scope == "vm":
            if self._vm_cache is None:
                self._vm_cache = cls(self.nr_vcpus)
            policy = self._vm_cache
        else:
            policy = cls(self.nr_vcpus)
        its = ITS(self, len(self.itses), base, policy)
        policy.doorbells[its.doorbell] = its.index
        self.itses.append(its)
        i = bisect_right(self._its_bases, base)
        self._its_bases.insert(i, base)
        self._its_by_base.insert(i, its)
        self.propbaser = R.GICR_PROPBASER_RESET
        return its

    def its_at(self, address: int) -> ITS | None:
        """The ITS whose 128 KiB frame holds address (kvm_io_bus_get_dev), or None."""
        # frames are disjoint: the candidate is the one with the highest base <= address
        i = bisect_right(self._its_bases, address) - 1
        if i >= 0 and address < self._its_bases[i] + R.ITS_FRAME_SIZE:
            return self._its_by_base[i]
        return None

    def _its(self, its: ITS | int) -> ITS:
        if isinstance(its, ITS):
            return its
        if isinstance(its, int) and 0 <= its < len(self.itses):
            return self.itses[its]
        raise ValueError(f"no ITS {its!r}")

    def caches(self) -> list[CachePolicy]:
        """The distinct translation-cache objects of the VM."""
        if self._vm_cache is not None:
            return [self._vm_cache]
        return [its.cache for its in self.itses]

    def invalidate_all_caches(self) -> None:
        """vgic_its_invalidate_all_caches (EnableLPIs 1->0): every ITS, or the VM list."""
        for c in self.caches():
            c.invalidate()

    # --- MSI injection (KVM_SIGNAL_MSI -> kvm_send_userspace_msi -> vgic_its_inject_msi) ----------
    def signal_msi(
        self,
        its: ITS | int,
        device_id: int,
        event_id: int,
        *,
        address: int | None = None,
        flags: int = R.KVM_MSI_VALID_DEVID,
    ) -> MsiResult:
        if not self.itses:
            return MsiResult(-R.ENODEV, -R.ENODEV, None, None, Outcome.BYPASS)
        if flags & ~R.KVM_MSI_VALID_DEVID:
            return MsiResult(-R.EINVAL, -R.EINVAL, None, None, Outcome.BYPASS)
        if address is None:
            address = self._its(its).doorbell
        device_id &= 0xFFFF_FFFF
        event_id &= 0xFFFF_FFFF
        # vgic_its_inject_cached_translation: tried before DEVID flag and ITS resolution
        cache: CachePolicy | None
        if self._vm_cache is not None:
            cache = self._vm_cache
        else:
            target_its = self.its_at(address)
            cache = target_its.cache if target_its is not None else None
        if cache is not None:
            lpi = cache.lookup(address, device_id, event_id)
            if lpi is not None:
                lpi.pending = True
                return MsiResult(1, 0, lpi.intid, lpi.target, Outcome.HIT)
        target_its = self.its_at(address)
        if not flags & R.KVM_MSI_VALID_DEVID or target_its is None:
            return MsiResult(
                -R.EINVAL,
                -R.EINVAL,
                None,
                None,
                Outcome.BYPASS if cache is None or not cache.caches else Outcome.MISS_NOFILL,
            )
        err, lpi, outcome = target_its.trigger_msi(device_id, event_id)
        if err:
            o = Outcome.BYPASS if not target_its.cache.caches else Outcome.MISS_NOFILL
            return MsiResult(err if err < 0 else 0, err, None, None, o)
        assert lpi is not None and outcome is not None  # translated: trigger_msi returns both
        return MsiResult(
            1,
            0,
            lpi.intid,
            lpi.target,
            Outcome(outcome),  # type: ignore[call-arg]  # value lookup, not __new__
            target_its.cache.last_victim,
        )

    # --- LPIs (vgic_add_lpi, update_lpi_config, vgic_v3_lpi_sync_pending_status) --------------
    def max_lpis_propbaser(self) -> int:
        return 1 << min(_PROP["IDbits"].get(self.propbaser) + 1, R.INTERRUPT_ID_BITS_ITS)

    def add_lpi(self, intid: int, target: int | None) -> tuple[int, LPI | None]:
        """Get-or-create the LPI; a new one reads its config byte and imports its pending bit."""
        lpi = self.lpis.get(intid)
        if lpi is not None:
            lpi.refs += 1
            return 0, lpi
        if len(self.lpis) >= self.budget.max_lpis:
            return -R.ENOMEM, None  # vgic_add_lpi: kzalloc failed
        lpi = LPI(intid, target)
        err = self.update_lpi_config(lpi, None)
        if not err:
            err = self._sync_pending_status(lpi)
        if err:
            return err, None
        lpi.refs = 1
        self.lpis[intid] = lpi
        return 0, lpi

    def put_lpi(self, lpi: LPI) -> None:
        lpi.refs -= 1
        if lpi.refs <= 0:
            self.lpis.pop(lpi.intid, None)

    def prop_byte_gpa(self, intid: int) -> int:
        return _PROP["PA"].in_place(self.propbaser) + intid - R.LPI_BASE_INTID

    def update_lpi_config(self, lpi: LPI, filter_vcpu: int | None) -> int:
        """update_lpi_config: re-read the property byte; apply it if no filter or target matches."""
        try:
            prop = self.memory.read_u8(self.prop_byte_gpa(lpi.intid))
        except GuestFault:
            return -R.EFAULT
        if filter_vcpu is None or lpi.target == filter_vcpu:
            lpi.priority = prop & R.LPI_PROP_PRIORITY_MASK
            lpi.enabled = bool(prop & R.LPI_PROP_ENABLE)
        return 0

    def _sync_pending_status(self, lpi: LPI) -> int:
        """vgic_v3_lpi_sync_pending_status: import the bit and consume it in guest memory."""
        if lpi.target is None:
            return 0
        gpa = self.redists[lpi.target].pending_table() + lpi.intid // 8
        try:
            byte = self.memory.read_u8(gpa)
            bit = 1 << (lpi.intid % 8)
            lpi.pending = bool(byte & bit)
            if byte & bit:
                self.memory.write_u8(gpa, byte & ~bit)
        except GuestFault:
            return -R.EFAULT
        return 0

    def _lpi_walk(self) -> list[LPI]:
        """The LPIs in the order the kernel walks them (list: creation; xarray: INTID)."""
        if self.kernel.lpi_creation_order:
            return list(self.lpis.values())
        return [self.lpis[i] for i in sorted(self.lpis)]

    def copy_lpi_list(self, vcpu: int | None = None) -> list[int]:
        """vgic_copy_lpi_list: INTIDs, filtered by current target, in the kernel's walk order.

        v6.10 removed the function; its callers walk the xarray in INTID order, which is
        what is returned for those kernels.
        """
        top = self.kernel.copy_lpi_list_max
        return [
            lpi.intid
            for lpi in self._lpi_walk()
            if (vcpu is None or lpi.target == vcpu) and lpi.intid <= top
        ]

    def invall(self, vcpu: int) -> None:
        """vgic_its_invall: re-read the config of every LPI targeting vcpu; errors ignored."""
        if self.kernel.copy_lpi_list:
            for intid in self.copy_lpi_list(vcpu):
                self.update_lpi_config(self.lpis[intid], vcpu)
        else:
            for lpi in self._lpi_walk():  # reads every LPI's byte, applies to vcpu's
                self.update_lpi_config(lpi, vcpu)

    def _sync_pending_table(self, vcpu: int) -> int:
        """its_sync_lpi_pending_table (EnableLPIs 0->1): overwrite latches from the table."""
        base = self.redists[vcpu].pending_table()
        last_gpa, byte = None, 0
        if self.kernel.copy_lpi_list:
            lpis = [self.lpis[i] for i in self.copy_lpi_list(vcpu)]
        else:
            lpis = self._lpi_walk()
        for lpi in lpis:
            gpa = base + lpi.intid // 8
            if gpa != last_gpa:
                try:
                    byte = self.memory.read_u8(gpa)
                except GuestFault:
                    return -R.EFAULT  # first error aborts; the caller drops it
                last_gpa = gpa
            if lpi.target == vcpu:
                lpi.pending = bool(byte & (1 << (lpi.intid % 8)))
        return 0

    # --- redistributor registers (vgic-mmio-v3.c) -------------------------------------------
    REDIST_REGS = {
        "GICR_CTLR": R.GICR_CTLR,
        "GICR_TYPER": R.GICR_TYPER,
        "GICR_PROPBASER": R.GICR_PROPBASER,
        "GICR_PENDBASER": R.GICR_PENDBASER,
        "GICR_INVLPIR": R.GICR_INVLPIR,
        "GICR_INVALLR": R.GICR_INVALLR,
    }

    def _redist_offset(self, reg: str | int) -> int:
        if isinstance(reg, int):
            return reg
        try:
            return self.REDIST_REGS[reg.upper()]
        except KeyError:
            raise ValueError(f"unknown redistributor register {reg!r}") from None

    def read_redist_reg(self, vcpu: int, reg: str | int, size: int = 8) -> int:
        rd = self.redists[self._vcpu(vcpu)]
        off = self._redist_offset(reg)
        base = off & ~7
        if base == R.GICR_CTLR:
            v = R.GICR_CTLR_ENABLE_LPIS if rd.lpis_enabled else 0
        elif base == R.GICR_TYPER:
            # vgic_mmio_read_v3r_typer: PLPIS, Processor_Number = vcpu_id, Affinity = vcpu_id
            # (simplified MPIDR, Aff0 only), Last on the last redistributor
            v = _TYPER.encode(
                PLPIS=1,
                Processor_Number=rd.vcpu_id & _TYPER["Processor_Number"].mask,
                Affinity_Value=rd.vcpu_id & 0xFF,
                Last=int(vcpu == self.nr_vcpus - 1),
            )
        elif base == R.GICR_PROPBASER:
            v = self.propbaser
        elif base == R.GICR_PENDBASER:
            v = rd.pendbaser & ~_PTZ
        else:
            v = 0
        return extract_bytes(v, off, size)

    def write_redist_reg(self, vcpu: int, reg: str | int, value: int, size: int = 8) -> None:
        """A guest (MMIO) write to vCPU's redistributor: GICR_CTLR, PROPBASER, PENDBASER, INV*."""
        rd = self.redists[self._vcpu(vcpu)]
        off = self._redist_offset(reg)
        value &= (1 << (8 * size)) - 1
        if off == R.GICR_CTLR:
            self._write_gicr_ctlr(rd, value)
        elif off & ~7 == R.GICR_PROPBASER:
            if rd.lpis_enabled:  # ignored while this RD has LPIs enabled
                return
            v = update_64bit_reg(self.propbaser, value, off, size)
            v = _sanitise_table_base(v, _PROP)
            self.propbaser = v & ~_PROP.res0_mask
        elif off & ~7 == R.GICR_PENDBASER:
            if rd.lpis_enabled:
                return
            v = update_64bit_reg(rd.pendbaser, value, off, size)
            v = _sanitise_table_base(v, _PEND)
            rd.pendbaser = v & ~_PEND.res0_mask
        elif off == R.GICR_INVLPIR and rd.lpis_enabled:
            lpi = self.lpis.get(value & 0xFFFF_FFFF)
            if lpi is not None:
                self.update_lpi_config(lpi, None)
        elif off == R.GICR_INVALLR and rd.lpis_enabled:
            self.invall(vcpu)

    def _write_gicr_ctlr(self, rd: Redistributor, value: int) -> None:
        if not self.itses:  # vgic_mmio_write_v3r_ctlr: needs an ITS
            return
        enable = bool(value & R.GICR_CTLR_ENABLE_LPIS)
        if rd.lpis_enabled and not enable:
            rd.lpis_enabled = False  # vgic_flush_pending_lpis keeps the latches
            self.invalidate_all_caches()
        elif not rd.lpis_enabled and enable:
            rd.lpis_enabled = True
            if not rd.pendbaser & _PTZ:
                self._sync_pending_table(rd.vcpu)

    # --- observation ---------------------------------------------------------------------------
    def pending_lpis(self, vcpu: int) -> list[int]:
        """Sorted INTIDs whose pending latch is set and that target vcpu."""
        self._vcpu(vcpu)
        return sorted(i for i, lpi in self.lpis.items() if lpi.pending and lpi.target == vcpu)

    def deliverable(self, vcpu: int, intid: int) -> bool:
        """Would vcpu take this LPI now: pending, enabled, targeted there, LPIs enabled."""
        lpi = self.lpis.get(intid)
        return (
            lpi is not None
            and lpi.pending
            and lpi.enabled
            and lpi.target == vcpu
            and self.redists[vcpu].lpis_enabled
        )

    def ack(self, vcpu: int, intid: int) -> bool:
        """The vCPU acknowledges (takes) the LPI: pending cleared. Returns deliverable-before."""
        was = self.deliverable(vcpu, intid)
        lpi = self.lpis.get(intid)
        if was and lpi is not None:  # deliverable implies the LPI exists
            lpi.pending = False
        return was

    def save_pending_tables(self) -> int:
        """KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES (vgic_v3_save_pending_tables)."""
        from gictools.abi.pending import save_pending_tables

        return save_pending_tables(self)

    def state(self) -> dict[str, object]:
        """A comparable, plain-data view of the whole model state (for round-trip checks)."""
        return {
            "propbaser": self.propbaser,
            "redists": [(rd.lpis_enabled, rd.pendbaser) for rd in self.redists],
            "lpis": {i: lpi.state() for i, lpi in sorted(self.lpis.items())},
            "itses": [
                {
                    "base": its.base,
                    "enabled": its.enabled,
                    "cbaser": its.cbaser,
                    "creadr": its.creadr,
                    "cwriter": its.cwriter,
                    "baser": list(its.baser[:2]),
                    "abi_rev": its.abi_rev,
                    "collections": {c.icid: c.target for c in its.collections.values()},
                    "devices": {
                        d.device_id: (
                            d.itt_addr,
                            d.num_eventid_bits,
                            {
                                e.event_id: (
                                    e.lpi.intid,
                                    None if e.collection is None else e.collection.icid,
                                )
                                for e in sorted(d.ites.values(), key=lambda e: e.event_id)
                            },
                        )
                        for d in sorted(its.devices.values(), key=lambda d: d.device_id)
                    },
                    **(
                        {"shadowed": [(d.device_id, d.itt_addr, len(d.ites)) for d in its.shadowed]}
                        if its.shadowed
                        else {}
                    ),
                }
                for its in self.itses
            ],
        }


def _sanitise_table_base(v: int, layout: Layout) -> int:
    from gictools.model.its import sanitise_inner_cache, sanitise_outer_cache, sanitise_shareability

    v = sanitise_shareability(v, layout["Shareability"])
    v = sanitise_inner_cache(v, layout["InnerCache"])
    return sanitise_outer_cache(v, layout["OuterCache"])
