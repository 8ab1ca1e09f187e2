"""A live migration (`--migrate-to`): the records KVM userspace produces between the source
capture and the destination's, and the `pending` expectations the destination decides
(docs/import-qemu.md §7)."""

import os
from collections import Counter

from gictools import regs as R
from gictools.errors import ImportFormatError
from gictools.trace import format as F
from gictools.trace.qemu.machine import TRIGGERS
from gictools.trace.qemu.records import PendingAfterRestore
from gictools.trace.qemu.registers import KVM_READ_ONLY


def start_destination(imp, dst):
    """Emit the migration as KVM userspace performs it (arm-vgic-its.rst): SAVE_PENDING_TABLES
    and SAVE_TABLES on the source; a fresh VM with the source's guest memory; redistributors,
    ITS registers (CBASER first), RESTORE_TABLES, GITS_CTLR last. Then make dst, the
    destination capture, the importer's current side."""
    src = imp.side
    t = src.t_last
    want, have = dst.cmdline.get("vcpus"), src.cmdline.get("vcpus")
    if want and have and want != have:
        raise ImportFormatError(
            f"destination -smp {want} differs from the source's -smp {have}", path=dst.path
        )
    first = len(imp.records)
    imp._rec("ctrl", t, None, F.CTRL_SAVE_PENDING_TABLES, None, 0)
    imp._rec("ctrl", t, None, F.CTRL_SAVE_TABLES, 0, 0)
    imp._rec("ctrl", t, None, F.CTRL_MIGRATE, None, None)
    _restore_registers(imp, t)
    lpis = {i: rd for i, rd in imp.shadow.lpis().items()}
    check = PendingAfterRestore(t, lpis, len(imp.records))
    imp._emit(check)
    for intid in lpis:
        imp._lpi_event(intid, "restore", check.index)
    # what QEMU had pending stays pending (KVM: the pending tables carry it)
    imp.migration = {
        "source": src.path and os.path.basename(src.path),
        "destination": dst.path and os.path.basename(os.fspath(dst.path)),
        "records": len(imp.records) - first,
        "lpis_carried": len(lpis),
        "check": check,
    }
    imp.sides.append(dst)
    imp.side = dst
    # a fresh QEMU process: threads and their open lookups start anew
    imp.shadow.qemu_pending = Counter({i: n for i, n in imp.shadow.qemu_pending.items() if n > 0})
    imp.recon.enable_load.clear()
    imp.recon.map_load.clear()


def _restore_registers(imp, t):
    """KVM's documented restore order: per vCPU the bases, then GICR_CTLR; the ITS registers
    as userspace (CBASER first: it zeroes CREADR/CWRITER); RESTORE_TABLES; GITS_CTLR last."""
    regs = imp.regs
    vcpus = set(regs.pendbaser) | set(regs.lpis_on)
    for v in sorted(vcpus):  # bases before GICR_CTLR: they are ignored once LPIs are on
        if regs.propbaser is not None:
            imp._rec("reg", t, None, "redist", v, R.GICR_PROPBASER, 8, regs.propbaser, True)
        if v in regs.pendbaser:
            imp._rec("reg", t, None, "redist", v, R.GICR_PENDBASER, 8, regs.pendbaser[v], True)
    for v in sorted(vcpus):
        on = R.GICR_CTLR_ENABLE_LPIS if regs.lpis_on.get(v) else 0
        imp._rec("reg", t, None, "redist", v, R.GICR_CTLR, 4, on, True)
    user = [(R.GITS_CBASER, regs.cbaser), (R.GITS_IIDR, KVM_READ_ONLY["GITS_IIDR"])]
    user += [(R.GITS_BASER + 8 * n, v) for n, v in sorted(regs.baser.items())]
    user += [(R.GITS_CREADR, 0), (R.GITS_CWRITER, 0)]
    for off, v in user:
        if v is not None:
            imp._rec("reg", t, None, "its-user", 0, off, 4 if off < 8 else 8, v, True)
    imp._rec("ctrl", t, None, F.CTRL_RESTORE_TABLES, 0, 0)
    ctlr = R.GITS_CTLR_ENABLE if regs.its_enabled else 0
    imp._rec("reg", t, None, "its-user", 0, R.GITS_CTLR, 4, ctlr, True)


def decide_pending_after_restore(imp):
    """After a migration each LPI is pending exactly when QEMU's destination delivers it
    before triggering it again."""
    if imp.migration is None:
        return
    check = imp.migration["check"]
    for intid in check.lpis:
        evs = imp.recon.lpi_events.get(intid, ())
        after = [k for k, j, _ in evs if j > check.index and k in ("ack", *TRIGGERS)]
        check.want[intid] = bool(after) and after[0] == "ack"
