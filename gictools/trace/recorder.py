"""Recorder: a stand-in for a VM that writes everything a script does to it into a trace.

Pass the Recorder (and its .itses) wherever a VM (and its ITSes) would go,
Guest included. Only the script's own actions are recorded (guest memory
writes, register accesses, commands, MSIs, device controls, acknowledges);
what the model does in response is not, so the trace replays to the same state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from gictools import regs as R
from gictools.errors import StrPath
from gictools.model.its import ITS
from gictools.model.memory import GuestMemory
from gictools.model.vm import VM, MsiResult
from gictools.outputs import WholeOrNothing
from gictools.trace.writer import TraceWriter


class _Memory:
    def __init__(self, rec: Recorder, mem: GuestMemory) -> None:
        self._rec, self._mem = rec, mem

    def __getattr__(self, name: str) -> Any:  # read, read_u64, is_ram, slots, pages ...
        return getattr(self._mem, name)

    def write(self, gpa: int, data: bytes) -> None:
        data = bytes(data)
        self._rec._w.mem(gpa, data, t_ns=self._rec._now())
        self._mem.write(gpa, data)

    def write_u64(self, gpa: int, value: int) -> None:
        self.write(gpa, (value & (2**64 - 1)).to_bytes(8, "little"))

    def write_u8(self, gpa: int, value: int) -> None:
        self.write(gpa, bytes((value & 0xFF,)))


class _ITS:
    def __init__(self, rec: Recorder, its: ITS) -> None:
        object.__setattr__(self, "_rec", rec)
        object.__setattr__(self, "_its", its)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._its, name)

    def __setattr__(self, name: str, value: object) -> None:  # e.g. Guest resetting last_error
        setattr(self._its, name, value)

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        self._rec._w.reg("its", self._its.index, offset, size, value, True, t_ns=self._rec._now())
        self._its.mmio_write(offset, size, value)

    def mmio_read(self, offset: int, size: int) -> int:
        v = self._its.mmio_read(offset, size)
        self._rec._w.reg("its", self._its.index, offset, size, v, False, t_ns=self._rec._now())
        return v

    def write_reg(self, reg: str | int, value: int) -> int:
        off = self._its.register_offset(reg)
        ret = self._its.write_reg(off, value)
        size = 4 if off < 8 or off >= R.GITS_IDREGS_BASE else 8
        self._rec._w.reg("its-user", self._its.index, off, size, value, True, t_ns=self._rec._now())
        return ret

    def process_command(self, raw: bytes) -> int:
        self._rec._w.command(self._its.index, bytes(raw), t_ns=self._rec._now())
        return self._its.process_command(raw)

    def _ctrl(self, op: str) -> int:
        ret = getattr(self._its, op)()
        self._rec._w.ctrl(op, self._its.index, ret, t_ns=self._rec._now())
        return ret

    def save_tables(self) -> int:
        return self._ctrl("save_tables")

    def restore_tables(self) -> int:
        return self._ctrl("restore_tables")

    def reset(self) -> int:
        return self._ctrl("reset")


class Recorder(WholeOrNothing):
    """Record a fresh VM's workload: `with Recorder(vm, "t.msgpack") as rec: Guest(rec, rec.itses[0])`."""

    def __init__(
        self,
        vm: VM,
        path: StrPath,
        *,
        source: str = "gictools.trace.Recorder",
        metadata: dict[str, Any] | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        if (
            vm.lpis
            or vm.memory.pages
            or any(its.devices or its.collections or its.enabled for its in vm.itses)
        ):
            raise ValueError("Recorder needs a fresh VM (no memory written, no ITS state)")
        self.vm_ = vm
        self._clock = clock or time.monotonic_ns
        self._t0 = self._clock()
        header_vm = {
            "vcpus": vm.nr_vcpus,
            "vcpu_ids": list(vm.vcpu_ids),
            "kernel": vm.kernel.name,
            "memory": [list(s) for s in vm.memory.slots],
            "itses": [{"base": its.base} for its in vm.itses],
        }
        self._w = TraceWriter(path, vm=header_vm, source=source, metadata=metadata or {})
        self.memory = _Memory(self, vm.memory)
        self.itses = [_ITS(self, its) for its in vm.itses]

    def _now(self) -> int:
        return self._clock() - self._t0

    def __getattr__(self, name: str) -> Any:  # nr_vcpus, rdbase_of, lpis, pending_lpis, ...
        return getattr(self.vm_, name)

    def close(self) -> None:
        self._w.close()

    def commit(self) -> None:
        """Leaving a ``with`` block normally closes the trace; an exception aborts it."""
        self._w.close()

    def abort(self) -> None:
        self._w.abort()

    def _its(self, its: _ITS | ITS | int) -> ITS:
        if isinstance(its, _ITS):
            return its._its
        return self.vm_._its(its)

    def write_redist_reg(self, vcpu: int, reg: str | int, value: int, size: int = 8) -> None:
        off = self.vm_._redist_offset(reg)
        self._w.reg("redist", vcpu, off, size, value, True, t_ns=self._now())
        return self.vm_.write_redist_reg(vcpu, off, value, size)

    def signal_msi(
        self, its: _ITS | ITS | int, device_id: int, event_id: int, **kw: object
    ) -> MsiResult:
        if kw:
            raise ValueError("Recorder records MSIs at the ITS doorbell with KVM_MSI_VALID_DEVID")
        real = self._its(its)
        self._w.msi(real.index, device_id, event_id, t_ns=self._now())
        return self.vm_.signal_msi(real, device_id, event_id)

    def save_pending_tables(self) -> int:
        ret = self.vm_.save_pending_tables()
        self._w.ctrl("save_pending_tables", None, ret, t_ns=self._now())
        return ret

    def ack(self, vcpu: int, intid: int) -> bool:
        self._w.ack(vcpu, intid, t_ns=self._now())
        return self.vm_.ack(vcpu, intid)

    def expect(self, kind: str, **args: object) -> None:
        """Add an expectation record (checked by replay)."""
        self._w.expect(kind, args, t_ns=self._now())
