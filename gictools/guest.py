"""What a guest ITS driver does, for tests, generators and users' own scenarios.

Guest allocates its tables and command queue in guest memory, programs the
redistributors and the ITS through guest MMIO, and posts each command alone
(write the slot, advance CWRITER), returning the command's KVM result, as the
kvm-unit-tests and selftest libraries do. It works on a VM or on anything with
the VM's public surface (a Recorder).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gictools import entries as E
from gictools import regs as R
from gictools.cmdlayout import encode_command

if TYPE_CHECKING:
    from gictools.model.its import ITS
    from gictools.model.vm import VM
    from gictools.trace.recorder import _ITS as RecordedITS
    from gictools.trace.recorder import Recorder

SZ_64K = 0x10000


class Guest:
    def __init__(
        self,
        vm: VM | Recorder,
        its: ITS | RecordedITS,
        *,
        alloc_base: int | None = None,
        idbits: int = 16,
        device_table_pages: int = 1,
        indirect: bool = False,
        collection_table_pages: int = 1,
        queue_pages: int = 16,
    ) -> None:
        self.vm, self.its = vm, its
        base = alloc_base if alloc_base is not None else vm.memory.slots[0][0] + 0x0100_0000
        self._next = (base + SZ_64K - 1) & ~(SZ_64K - 1)
        self.idbits = idbits
        self.prop_table = self.alloc(max(SZ_64K, (1 << idbits) // 8 * 8))
        self.pend_tables = [self.alloc(SZ_64K) for _ in range(vm.nr_vcpus)]
        self.indirect = indirect
        self.device_table = self.alloc(SZ_64K * device_table_pages)
        self.collection_table = self.alloc(SZ_64K * collection_table_pages)
        self.queue = self.alloc(4096 * queue_pages)
        self.queue_size = 4096 * queue_pages
        self.l2_tables: dict[int, int] = {}  # L1 index -> L2 table GPA
        self.itts: dict[tuple[int, int], int] = {}  # (DeviceID, itt_bits) -> ITT GPA
        B = R.GITS_BASER_LAYOUT
        dev = B.encode(
            Valid=1,
            Indirect=int(indirect),
            PA=self.device_table >> 16,
            Size=device_table_pages - 1,
            Shareability=R.GIC_BASER_InnerShareable,
            InnerCache=R.GIC_BASER_CACHE_RaWb,
            Page_Size=R.GITS_BASER_PAGE_SIZE_64K,
        )
        coll = B.encode(
            Valid=1,
            PA=self.collection_table >> 16,
            Size=collection_table_pages - 1,
            Shareability=R.GIC_BASER_InnerShareable,
            InnerCache=R.GIC_BASER_CACHE_RaWb,
            Page_Size=R.GITS_BASER_PAGE_SIZE_64K,
        )
        its.mmio_write(R.GITS_BASER, 8, dev)
        its.mmio_write(R.GITS_BASER + 8, 8, coll)
        cbaser = R.GITS_CBASER_LAYOUT.encode(
            Valid=1,
            PA=self.queue >> 12,
            Size=queue_pages - 1,
            Shareability=R.GIC_BASER_InnerShareable,
            InnerCache=R.GIC_BASER_CACHE_RaWb,
        )
        its.mmio_write(R.GITS_CBASER, 8, cbaser)
        its.mmio_write(R.GITS_CWRITER, 8, 0)

    def alloc(self, size: int, align: int = SZ_64K) -> int:
        """A zeroed, aligned range of guest RAM (bump allocator)."""
        addr = (self._next + align - 1) & ~(align - 1)
        if not self.vm.memory.is_ram(addr, size):
            raise MemoryError(f"guest allocator out of RAM at {addr:#x} (+{size:#x})")
        self._next = addr + size
        return addr

    # --- LPI set-up --------------------------------------------------------------------------
    def enable_lpis(self, vcpu: int | None = None, *, enable_its: bool = True) -> None:
        """PROPBASER/PENDBASER + EnableLPIs on vcpu (all vCPUs if None), then enable the ITS."""
        vcpus = range(self.vm.nr_vcpus) if vcpu is None else [vcpu]
        prop = R.GICR_PROPBASER_LAYOUT.encode(
            IDbits=self.idbits - 1,
            PA=self.prop_table >> 12,
            Shareability=R.GIC_BASER_InnerShareable,
            InnerCache=R.GIC_BASER_CACHE_RaWb,
        )
        for v in vcpus:
            self.vm.write_redist_reg(v, "GICR_PROPBASER", prop)
            pend = R.GICR_PENDBASER_LAYOUT.encode(
                PA=self.pend_tables[v] >> 16,
                Shareability=R.GIC_BASER_InnerShareable,
                InnerCache=R.GIC_BASER_CACHE_RaWb,
            )
            self.vm.write_redist_reg(v, "GICR_PENDBASER", pend)
            self.vm.write_redist_reg(v, "GICR_CTLR", R.GICR_CTLR_ENABLE_LPIS)
        if enable_its:
            self.its.mmio_write(R.GITS_CTLR, 4, R.GITS_CTLR_ENABLE)

    def disable_lpis(self, vcpu: int) -> None:
        self.vm.write_redist_reg(vcpu, "GICR_CTLR", 0)

    def set_lpi_config(self, intid: int, priority: int = 0xA0, enabled: bool = True) -> None:
        byte = (priority & R.LPI_PROP_PRIORITY_MASK) | R.LPI_PROP_GROUP1 | int(enabled)
        self.vm.memory.write(self.prop_table + intid - R.LPI_BASE_INTID, bytes((byte,)))

    def set_pending_bit(self, vcpu: int, intid: int, pending: bool = True) -> None:
        gpa = self.pend_tables[vcpu] + intid // 8
        b = self.vm.memory.read(gpa, 1)[0]
        b = b | (1 << intid % 8) if pending else b & ~(1 << intid % 8)
        self.vm.memory.write(gpa, bytes((b,)))

    # --- the command queue ----------------------------------------------------------------------
    def command(self, raw: bytes) -> int | None:
        """Post one command and advance CWRITER; the command's KVM result (None if not run)."""
        its = self.its
        cwriter = its.mmio_read(R.GITS_CWRITER, 8)
        self.vm.memory.write(self.queue + cwriter, raw)
        its.last_error = None
        its.mmio_write(R.GITS_CWRITER, 8, (cwriter + 32) % self.queue_size)
        return its.last_error

    def _itt_for(self, device_id: int, itt_bits: int) -> int:
        size = max(256, (1 << itt_bits) * R.VITS_ITE_SIZE)
        return self.alloc(size, 256)

    def _ensure_l2(self, device_id: int) -> None:
        l1_index = device_id // (SZ_64K // 8)
        if l1_index not in self.l2_tables:
            l2 = self.alloc(SZ_64K)
            self.l2_tables[l1_index] = l2
            self.vm.memory.write(
                self.device_table + 8 * l1_index, E.to_bytes(E.encode_l1e(E.L1Entry(True, l2)))
            )

    def mapd(
        self, device_id: int, itt_bits: int, valid: bool = True, itt_addr: int | None = None
    ) -> int | None:
        if valid and itt_addr is None:
            itt_addr = self.itts.get((device_id, itt_bits)) or self._itt_for(device_id, itt_bits)
            self.itts[(device_id, itt_bits)] = itt_addr
        if self.indirect and valid and device_id < (SZ_64K // 8) * (SZ_64K // 8):
            self._ensure_l2(device_id)
        return self.command(
            encode_command(
                "MAPD",
                DeviceID=device_id,
                Size=(itt_bits - 1) & 0x1F,
                ITT_addr=(itt_addr or 0) >> 8,
                V=int(valid),
            )
        )

    def rdbase(self, vcpu: int) -> int:
        """The RDbase field a guest writes to name vcpu (its_encode_target).

        GITS_TYPER.PTA = 0 (always so in KVM): a processor number, GICR_TYPER's
        Processor_Number of that redistributor, i.e. what rdbase_of gives for a vCPU
        the VM has. Any other number is sent as it is (a buggy or hostile guest), so
        the model answers it (e.g. E_ITS_MAPC_PROCNUM_OOR), as KVM would.
        """
        pta = R.GITS_TYPER_LAYOUT["PTA"].get(self.its.read_reg("GITS_TYPER"))
        if pta:
            raise NotImplementedError("GITS_TYPER.PTA = 1 (physical RDbase): not a KVM ITS")
        if isinstance(vcpu, int) and 0 <= vcpu < self.vm.nr_vcpus:
            return self.vm.rdbase_of(vcpu)
        return vcpu & R.RDBASE_MASK

    def mapc(self, icid: int, vcpu: int, valid: bool = True) -> int | None:
        return self.command(
            encode_command("MAPC", ICID=icid, RDbase=self.rdbase(vcpu), V=int(valid))
        )

    def mapti(self, device_id: int, event_id: int, intid: int, icid: int) -> int | None:
        return self.command(
            encode_command("MAPTI", DeviceID=device_id, EventID=event_id, pINTID=intid, ICID=icid)
        )

    def mapi(self, device_id: int, event_id: int, icid: int) -> int | None:
        return self.command(encode_command("MAPI", DeviceID=device_id, EventID=event_id, ICID=icid))

    def movi(self, device_id: int, event_id: int, icid: int) -> int | None:
        return self.command(encode_command("MOVI", DeviceID=device_id, EventID=event_id, ICID=icid))

    def discard(self, device_id: int, event_id: int) -> int | None:
        return self.command(encode_command("DISCARD", DeviceID=device_id, EventID=event_id))

    def int_(self, device_id: int, event_id: int) -> int | None:
        return self.command(encode_command("INT", DeviceID=device_id, EventID=event_id))

    def clear(self, device_id: int, event_id: int) -> int | None:
        return self.command(encode_command("CLEAR", DeviceID=device_id, EventID=event_id))

    def inv(self, device_id: int, event_id: int) -> int | None:
        return self.command(encode_command("INV", DeviceID=device_id, EventID=event_id))

    def invall(self, icid: int) -> int | None:
        return self.command(encode_command("INVALL", ICID=icid))

    def movall(self, from_vcpu: int, to_vcpu: int) -> int | None:
        return self.command(
            encode_command("MOVALL", RDbase=self.rdbase(from_vcpu), RDbase2=self.rdbase(to_vcpu))
        )

    def sync(self, vcpu: int) -> int | None:
        return self.command(encode_command("SYNC", RDbase=self.rdbase(vcpu)))
