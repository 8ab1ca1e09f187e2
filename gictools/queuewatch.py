"""The commands each ITS takes from its command queue, for dump and info (QueueWatch)."""

import contextlib
from typing import Any

from gictools.trace import format as F

_QUEUE_MEM_BUFFER = 64 << 20  # memory writes kept before the first ITS register write


class QueueWatch:
    """The commands each ITS takes from its command queue (guest-memory writes, then a
    GITS_CWRITER write, as the Recorder API and real guests issue them), found by running the
    trace's register, memory, control and command records through the model with its
    command hook (vgic_its_process_commands' loop): exactly what a replay executes. MSIs are
    not run (they do not move a queue). The model is loaded at the first ITS register write,
    so a trace that never touches an ITS register costs nothing."""

    def __init__(self, header: dict):
        self.header = header
        self.vm: Any = None
        self.pending_mem: list = []
        self.mem_bytes = 0
        self.taken: list = []  # (its, raw, err) of the record being fed
        self.total = 0
        self.broken: str | None = None  # why the watch stopped (a record it could not run)

    def _start(self) -> None:
        from gictools.model.memory import DEFAULT_RAM
        from gictools.model.vm import VM

        vmh = self.header["vm"]
        kw: dict[str, Any] = {
            "vcpu_ids": vmh.get("vcpu_ids"),
            "memory": [tuple(s) for s in vmh["memory"]] if vmh.get("memory") else DEFAULT_RAM,
        }
        if vmh.get("kernel"):
            kw["kernel"] = vmh["kernel"]
        memory = self.vm.memory if self.vm is not None else None  # CTRL migrate keeps RAM
        self.vm = VM(vmh["vcpus"], **kw)
        if memory is not None:
            self.vm.memory = memory
        for i, its in enumerate(vmh.get("itses", [])):
            self.vm.add_its(its["base"])
            self.vm.itses[i].command_hook = lambda raw, err, i=i: self.taken.append(
                (i, bytes(raw), err)
            )

    def feed(self, rec) -> list:
        """The commands (its, raw, err) the ITSes took from their queues because of rec."""
        if self.broken is not None or rec[0] in (F.MSI, F.MSI_BLOCK, F.ACK, F.EXPECT):
            return []
        self.taken = []
        try:
            self._apply(rec)
        except Exception as e:  # a record replay would refuse: stop watching, say so once
            self.broken = f"{type(e).__name__}: {e}"
            return []
        self.total += len(self.taken)
        return self.taken

    def _apply(self, rec) -> None:
        from gictools.model.memory import GuestFault

        tag = rec[0]
        if self.vm is None:
            if tag == F.MEM:
                self.mem_bytes += len(rec[4])
                if self.mem_bytes > _QUEUE_MEM_BUFFER:
                    raise ValueError("over 64 MiB of memory writes before any ITS register")
                self.pending_mem.append(rec)
                return
            if not (tag == F.REG and rec[3] in ("its", "its-user")):
                return
            self._start()
            for m in self.pending_mem:
                self._apply(m)
            self.pending_mem = []
        vm = self.vm
        if tag == F.MEM:
            with contextlib.suppress(GuestFault):
                vm.memory.write(rec[3], rec[4])
        elif tag == F.REG:
            _, _, _, frame, index, offset, size, value, is_write = rec
            if not is_write:
                return
            if frame == "its":
                vm.itses[index].mmio_write(offset, size, value)
            elif frame == "its-user":
                vm.itses[index].write_reg(offset, value)
            elif 0 <= index < vm.nr_vcpus:
                vm.write_redist_reg(index, offset, value, size)
        elif tag == F.COMMAND:
            vm.itses[rec[3]].process_command(rec[4])
        elif tag == F.CTRL:
            self._ctrl(rec[3], rec[4])

    def _ctrl(self, op: str, its_i) -> None:
        if op == "save_pending_tables":
            self.vm.save_pending_tables()
        elif op == F.CTRL_MIGRATE:
            self._start()
        else:
            its = self.vm.itses[its_i]
            {
                "save_tables": its.save_tables,
                "restore_tables": its.restore_tables,
                "reset": its.reset,
            }[op]()
