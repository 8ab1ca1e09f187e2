"""The writer side: the importer's records and placeholders as trace records, the trace
header's metadata, and the trace file itself."""

import os
from collections import Counter

from gictools import entries as E
from gictools import regs as R
from gictools.trace.qemu.machine import MAX_LISTED, MAX_POINTS, QEMU_VIRT_RAM_BASE
from gictools.trace.qemu.records import (
    CfgByte,
    DumpPoint,
    L1Entry,
    MsiExpect,
    PendingAfterRestore,
    PendingLoad,
    Rec,
)


def final_records(imp, vcpus):
    """Placeholders to records: [TraceWriter method, t_ns, injector, *args]."""
    out = []
    stats = imp.stats
    for r in imp.records:
        if isinstance(r, Rec):
            out.append([r.method, r.t, r.inj, *r.args])
        elif isinstance(r, CfgByte):
            if r.value is not None:
                out.append(["mem", r.t, r.inj, r.gpa, bytes([r.value])])
        elif isinstance(r, L1Entry):
            out.append(["mem", r.t, r.inj, r.l2_gpa, bytes(r.page)])
            l1e = E.encode_l1e(E.L1Entry(True, r.l2_gpa))
            out.append(["mem", r.t, r.inj, r.l1_gpa, E.to_bytes(l1e)])
        elif isinstance(r, MsiExpect):
            if r.args is not None:
                out.append(["expect", r.t, r.inj, "msi", r.args])
        elif isinstance(r, PendingLoad):
            out.extend(_pending_bits(imp, r))
        elif isinstance(r, DumpPoint):
            side = imp.sides[r.side]
            if side.prop_final is None:
                continue
            for intid in sorted(r.lpis):
                b = side.prop_final.get(intid, side.prop_default)
                args = {
                    "intid": intid,
                    "exists": True,
                    "priority": b & R.LPI_PROP_PRIORITY_MASK,
                    "enabled": bool(b & R.LPI_PROP_ENABLE),
                }
                out.append(["expect", r.t, None, "lpi", args])
                stats["expect_lpi"] += 1
        elif isinstance(r, PendingAfterRestore):
            for intid in sorted(r.lpis):
                rd = r.lpis[intid]
                mapped = rd is not None and rd < vcpus
                lpi = {"intid": intid, "exists": True, **({"vcpu": rd} if mapped else {})}
                out.append(["expect", r.t, None, "lpi", lpi])
                stats["expect_lpi_after_restore"] += 1
                args = {"intid": intid, "vcpu": rd if mapped else 0, "pending": r.want[intid]}
                out.append(["expect", r.t, None, "pending", args])
                stats["expect_pending_after_restore"] += 1
    return out


def _pending_bits(imp, p):
    """MEM records setting the reconstructed pending bits, one per byte."""
    byts = {}
    for intid in p.bits:
        byts.setdefault(intid // 8, 0)
        byts[intid // 8] |= 1 << (intid % 8)
    imp.stats["pending_bits_reconstructed"] += len(p.bits)
    return [["mem", p.t, p.inj, p.table + b, bytes([v])] for b, v in sorted(byts.items())]


# the metadata's names of the ITS registers QEMU showed (the others by offset)
_REG_NAMES = {
    0x0: "GITS_CTLR",
    0x4: "GITS_IIDR",
    0x8: "GITS_TYPER",
    0xC: "GITS_TYPER_hi",
    0x80: "GITS_CBASER",
    0x88: "GITS_CWRITER",
    0xFFE8: "GITS_PIDR2",
}


def metadata(imp, vcpus, ram):
    """The trace header's metadata: the capture, what was emitted and reconstructed (with
    its evidence), the anomalies, and the migration (docs/import-qemu.md)."""
    src = imp.sides[0]
    rc = imp.recon
    meta = {
        # the importer's name as the first traces recorded it (kept: outputs stay identical)
        "importer": "gictools.trace.import_qemu",
        "qemu_trace_backend": "log",
        "qemu_version_format": "7.2",
        "clock": (
            "t_ns = the trace's TID@SEC.USEC stamp (host gettimeofday, CLOCK_REALTIME) "
            "in ns since the Unix epoch; injector = the host thread id"
            if src.t0 is not None
            else "the trace has no timestamps"
        ),
        "t0_ns": src.t0,
        "lines": sum(s.lineno for s in imp.sides),
        "events": dict(sorted(sum((s.counts for s in imp.sides), Counter()).items())),
        "skipped_lines": dict(sorted(sum((s.skipped for s in imp.sides), Counter()).items())),
        "vcpus_from": "highest redistributor / CPU / RDbase number seen + 1"
        + (", the command line's -smp" if src.cmdline.get("vcpus") else ""),
        "ram": {"base": QEMU_VIRT_RAM_BASE, "size": ram, "source": rc.ram_source},
        "its_registers": _its_registers(imp),
        "register_reads_qemu_vs_kvm": imp.differences,
        "emitted": dict(sorted(imp.stats.items())),
        "reconstructed": _reconstructed(imp),
        "unexplained_acks": {"count": rc.unexplained_count, "examples": rc.unexplained},
        "qemu_only_semantics_and_anomalies": dict(sorted(imp.flags.items())),
    }
    if imp.migration is not None:
        meta["migration"] = _migration(imp)
    return meta


def _its_registers(imp):
    regs = {}
    for off, v in sorted(imp.regs.its.items()):
        if R.GITS_BASER <= off < R.GITS_BASER + 0x40:
            name = f"GITS_BASER{(off - R.GITS_BASER) // 8}"
        else:
            name = _REG_NAMES.get(off, f"{off:#x}")
        regs[name] = v
    return regs


def _reconstructed(imp):
    """Every reconstruction with its evidence (at most MAX_LISTED listed; all counted)."""
    src = imp.sides[0]
    rc = imp.recon
    pending = [
        {
            "vcpu": r.vcpu,
            "before": r.kind,
            "line": r.line,
            "table": r.table,
            "bits": len(r.bits),
            "intids_and_ack_lines": sorted(r.bits.items())[:MAX_LISTED],
        }
        for r in imp.records
        if isinstance(r, PendingLoad) and r.bits
    ][:MAX_POINTS]
    cfg = [
        {"intid": r.intid, "value": r.value, "reason": r.reason, "side": r.side, "line": r.line}
        for r in imp.records
        if isinstance(r, CfgByte) and r.value is not None
    ][:MAX_LISTED]
    return {
        "device_table_level2": rc.l2_pages,
        "lpi_config_table": None
        if rc.prop_table is None
        else {
            "gpa": rc.prop_table[0],
            "size": rc.prop_table[1],
            "initial_byte": src.prop_default,
        },
        "lpi_config_bytes_by_reason": dict(sorted(rc.config_reasons.items())),
        "final_table_from": "lpiprop dump" if src.prop_final is not None else None,
        "pending_bits_by_reason": dict(sorted(rc.pending_reasons.items())),
        "pending_bits": pending,
        "lpi_config_bytes": cfg,
    }


def _migration(imp):
    m = dict(imp.migration)
    check = m.pop("check")
    m["pending_after_restore"] = sum(check.want.values())
    m["sides"] = [
        {
            "log": s.path and os.path.basename(os.fspath(s.path)),
            "lines": s.lineno,
            "t0_ns": s.t0,
            "skipped_lines": dict(s.skipped),
        }
        for s in imp.sides
    ]
    return m


def write_trace(out, vm, metadata, records, source):
    """Write converted records with a TraceWriter (atomic)."""
    from gictools.trace.writer import TraceWriter

    with TraceWriter(out, vm=vm, source=source, metadata=metadata) as w:
        methods = {
            "msi": w.msi,
            "command": w.command,
            "reg": w.reg,
            "mem": w.mem,
            "ctrl": w.ctrl,
            "expect": w.expect,
            "ack": w.ack,
        }
        for r in records:
            methods[r[0]](*r[3:], t_ns=r[1], injector=r[2])
        return w.records, w.events
