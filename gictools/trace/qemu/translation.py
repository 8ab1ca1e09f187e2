"""MSIs, QEMU's table lookups that translate them, and acknowledges: each translation
becomes an MSI record and the `msi` expectation of what QEMU delivered; an acknowledge no
MSI or INT explains is traced to a pending bit the guest stored (docs/import-qemu.md §5.3)."""

from gictools.trace import format as F
from gictools.trace.qemu.machine import GITS_TRANSLATER_OFFSET, LPI_BASE
from gictools.trace.qemu.records import MsiExpect
from gictools.trace.qemu.state import MsiCtx


class TranslationEvents:
    """Importer handlers of gicv3_its_translation_write, the DTE/ITE/CTE lookups that follow
    it on the same thread, and gicv3_icc_iar1_read (mixed into Importer)."""

    def on_translation_write(self, t, tid, args):
        offset, data, size, requester_id = args
        self._close(tid)
        if offset != GITS_TRANSLATER_OFFSET:
            self.flags["translation_frame_other_offset"] += 1
            return
        event_id = data & (0xFFFF if size == 2 else 0xFFFF_FFFF)
        self._rec("msi", t, tid, 0, requester_id, event_id)
        exp = MsiExpect(t, tid)
        self._emit(exp)
        self.side.ctx[tid] = MsiCtx(self.lineno, requester_id, event_id, exp)

    def _lookup(self, tid, stage, table, field, got, valid):
        """The translation on thread tid that this table read continues (stage 0 DTE, 1 ITE,
        2 CTE), or None: a command's own lookup, or an invalid entry, which ends the
        translation (QEMU delivers nothing). A read of another entry than the one being
        translated means the lines are not one capture."""
        c = self.side.ctx.get(tid)
        if not isinstance(c, MsiCtx) or c.stage != stage:
            return None
        want = (c.dev, c.ev, c.icid)[stage]
        if got != want:
            raise self.error(
                f"{table} read for {field} {got:#x} inside the translation "
                f"of {field} {want:#x} (line {c.line})"
            )
        if not valid:
            self._close(tid)
            return None
        return c

    def on_dte_read(self, t, tid, args):
        devid, valid, size, itt = args
        c = self._lookup(tid, 0, "Device Table", "DeviceID", devid, valid)
        if c is not None:
            c.stage = 1

    def on_ite_read(self, t, tid, args):
        itt, eventid, valid, inttype, intid, icid, vpeid, doorbell = args
        c = self._lookup(tid, 1, "Interrupt Table", "EventID", eventid, valid)
        if c is None:
            return
        if inttype != 1:
            self.flags["msi_virtual_ite"] += 1
            self._close(tid)
            return
        c.intid, c.icid, c.stage = intid, icid, 2

    def on_cte_read(self, t, tid, args):
        icid, valid, rdbase = args
        c = self._lookup(tid, 2, "Collection Table", "ICID", icid, valid)
        if c is None:
            return
        self._cpu(rdbase, "RDBase")
        c.expect.args = {"ret": 1, "intid": c.intid, "vcpu": rdbase}
        self.stats["expect_msi"] += 1
        self._trigger(c.intid, "msi")
        mine = self.shadow.ite(c.dev, c.ev)
        if mine is None or mine[0] != c.intid or self.shadow.collections.get(mine[1]) != rdbase:
            self.flags["msi_translation_differs_from_kvm"] += 1
        c.stage = 3
        self._close(tid)

    def _trigger(self, intid, kind):
        """An MSI QEMU translated, or an INT: the LPI became pending in QEMU."""
        self.shadow.qemu_pending[intid] += 1
        self._lpi_event(intid, kind)

    def on_table_fault(self, t, tid, args):
        self.flags["table_read_fault"] += 1
        if isinstance(self.side.ctx.get(tid), MsiCtx):
            self._close(tid)

    def on_table_write(self, t, tid, args):
        pass  # QEMU's side of a command we already have

    def on_cte_write(self, t, tid, args):
        """QEMU wrote a collection: its RDbase names a CPU the VM has."""
        icid, valid, rdbase = args
        if valid:
            self._cpu(rdbase, "RDBase")

    def on_iar1_read(self, t, tid, args):
        cpu, value = args
        cpu = self._cpu(cpu, "CPU")
        if value < LPI_BASE or value > F.U32_MAX:
            self.stats["acks_below_8192"] += 1
            return
        self._lpi_event(value, "ack")
        index = self._rec("ack", t, tid, cpu, value)
        self.stats["acks"] += 1
        sh = self.shadow
        if sh.qemu_pending[value] > 0:
            sh.qemu_pending[value] -= 1
        else:
            self._explain_ack(value, cpu, index)
        self.recon.last_ack[value] = index

    def _explain_ack(self, intid, cpu, index):
        """An acknowledge no MSI or INT explains: a pending bit the guest stored in memory,
        read by KVM at the latest pending load of that vCPU since the LPI's last ack."""
        rc = self.recon
        since = rc.last_ack.get(intid, -1)
        best = None
        e = rc.enable_load.get(cpu)
        m = rc.map_load.get(intid)
        # the enable read the bit if the LPI existed then, targeting this vCPU (as it does now)
        if (
            e is not None
            and e[0] > since
            and self.shadow.target_of(intid) == cpu
            and rc.created.get(intid, len(self.records)) < e[0]
        ):
            best = e
        if m is not None and m[0] > since and m[1].vcpu == cpu and (best is None or m[0] > best[0]):
            best = m
        if best is None:
            rc.unexplained_count += 1
            if len(rc.unexplained) < 20:
                rc.unexplained.append({"line": self.lineno, "vcpu": cpu, "intid": intid})
            return
        point = best[1]
        point.bits[intid] = self.lineno
        rc.pending_reasons[f"before_{point.kind}"] += 1

    # -- commands -----------------------------------------------------------------------------

    HANDLERS = {
        "gicv3_its_translation_write": on_translation_write,
        "gicv3_its_cte_read": on_cte_read,
        "gicv3_its_cte_write": on_cte_write,
        "gicv3_its_cte_read_fault": on_table_fault,
        "gicv3_its_ite_read": on_ite_read,
        "gicv3_its_ite_read_fault": on_table_fault,
        "gicv3_its_ite_write": on_table_write,
        "gicv3_its_dte_read": on_dte_read,
        "gicv3_its_dte_write": on_table_write,
        "gicv3_its_dte_read_fault": on_table_fault,
        "gicv3_its_vte_read": on_table_write,
        "gicv3_its_vte_read_fault": on_table_fault,
        "gicv3_its_vte_write": on_table_write,
        "gicv3_icc_iar1_read": on_iar1_read,
    }
