"""The per-record handlers of everything but MSIs: commands, registers, memory, device
control, acknowledgements and expectations, each applied to every policy's VM."""

from gictools import regs as R
from gictools.cmdlayout import decode_command
from gictools.errors import TraceFormatError
from gictools.latency.model import COMMAND_NS
from gictools.model.memory import GuestFault
from gictools.replay.expect import check_expectation
from gictools.stats.schema import COMMAND_INDEX, OP_INDEX
from gictools.trace import format as F

_OP_COMMAND, _OP_REG, _OP_MEM, _OP_CTRL, _OP_EXPECT, _OP_ACK = (
    OP_INDEX[k] for k in ("command", "reg", "mem", "ctrl", "expect", "ack")
)


def _row(rp, t, inj, op, **fields):
    """A record's row for the events table: what every row has, then its own columns (a
    column a row does not name is null)."""
    return {"seq": rp.seq, "t_ns": t, "op": op, "injector": inj, **fields}


def _event(rp, run, t, inj, op, **fields):
    """Count one record of run, and write its row where run keeps rows."""
    run.report.events += 1
    if run.sink is not None:
        run.sink.row(_row(rp, t, inj, op, **fields))


def command_fields(run, its, its_i, raw, err) -> tuple[str, dict]:
    """One executed command's mnemonic and its events-row columns (op, seq, time and
    injector aside): a COMMAND record's or one the ITS took from its command queue."""
    name, fields = decode_command(raw)
    dev, ev = fields.get("DeviceID"), fields.get("EventID")
    intid = vcpu = None
    if dev is not None and ev is not None:
        ite = its.find_ite(dev, ev)
        if ite is not None:  # MOVI: the LPI's new target
            intid, vcpu = ite.lpi.intid, ite.lpi.target
    elif name == "MAPC" and fields.get("V"):
        vcpu = run.vm.vcpu_from_rdbase(fields["RDbase"])
    return name, {
        "its": its_i,
        "device_id": dev,
        "event_id": ev,
        "intid": intid,
        "vcpu": vcpu,
        "command": COMMAND_INDEX.get(name, COMMAND_INDEX["UNKNOWN"]),
        "error": err,
        "cache_entries": len(its.cache),
        "latency_ns": COMMAND_NS,
        "icid": fields.get("ICID"),
    }


def command_record(rp, rec, ri):
    _, t, inj, its_i, raw = rec
    name = decode_command(raw)[0]
    for run in rp.runs:
        its = rp.its(run, its_i, ri)
        err = its.process_command(raw)
        rep = run.report
        rep.events += 1
        rep.commands += 1
        rep.command_counts[name] += 1
        if err:
            rep.command_errors[err] += 1
        run.last_cmd_error = err
        if run.sink is None or not run.sink.keep:
            continue
        run.sink.row(_row(rp, t, inj, _OP_COMMAND, **command_fields(run, its, its_i, raw, err)[1]))
    rp.seq += 1


def reg_record(rp, rec, ri):
    _, t, inj, frame, index, offset, size, value, is_write = rec
    for run in rp.runs:
        vm = run.vm
        if frame == "its":  # a guest MMIO access
            its = rp.its(run, index, ri)
            if is_write:
                its.mmio_write(offset, size, value)
            else:
                its.mmio_read(offset, size)
            entries = len(its.cache)
        elif frame == "its-user":  # KVM_DEV_ARM_VGIC_GRP_ITS_REGS (userspace)
            its = rp.its(run, index, ri)
            if is_write:
                its.write_reg(offset, value)
            entries = len(its.cache)
        else:
            if not isinstance(index, int) or not 0 <= index < vm.nr_vcpus:
                raise TraceFormatError(
                    f"vCPU index {index!r} out of range", record=ri, field="index"
                )
            if is_write:
                vm.write_redist_reg(index, offset, value, size)
            entries = None
        run.report.events += 1
        if run.sink is None:
            continue
        is_its = frame != "redist"
        run.sink.row(
            _row(
                rp,
                t,
                inj,
                _OP_REG,
                its=index if is_its else None,
                vcpu=None if is_its else index,
                error=0,
                cache_entries=entries,
            )
        )
        if run.queued:  # what the write made the ITS take from its command queue
            for fields in run.queued:
                run.sink.row(_row(rp, t, inj, _OP_COMMAND, **fields))
            run.queued.clear()
    rp.seq += 1


def mem_record(rp, rec, ri):
    _, t, inj, gpa, data = rec
    for run in rp.runs:
        try:
            run.vm.memory.write(gpa, data)
            err = 0
        except GuestFault:
            err = -R.EFAULT
        _event(rp, run, t, inj, _OP_MEM, error=err)
    rp.seq += 1


def ctrl_record(rp, rec, ri):
    _, t, inj, op, its_i, ret = rec
    for run in rp.runs:
        if op == "save_pending_tables":
            got = run.vm.save_pending_tables()
        elif op == F.CTRL_MIGRATE:
            got = run.migrate()
        else:
            its = rp.its(run, its_i, ri)
            got = {
                "save_tables": its.save_tables,
                "restore_tables": its.restore_tables,
                "reset": its.reset,
            }[op]()
        run.last_ctrl = got
        if ret is not None and got != ret:
            rp.fail(run, ri, f"{op} returned {R.error_name(got)}, recorded {R.error_name(ret)}")
        _event(rp, run, t, inj, _OP_CTRL, its=its_i, error=got)
    rp.seq += 1


def ack_record(rp, rec, ri):
    _, t, inj, vcpu, intid = rec
    for run in rp.runs:
        if not isinstance(vcpu, int) or not 0 <= vcpu < run.vm.nr_vcpus:
            raise TraceFormatError(f"vCPU index {vcpu!r} out of range", record=ri, field="vcpu")
        if not run.vm.ack(vcpu, intid):
            lpi = run.vm.lpis.get(intid)
            rp.fail(
                run,
                ri,
                f"vCPU {vcpu} acknowledged INTID {intid}, which the model "
                f"does not have pending and enabled there ({lpi!r})",
            )
        _event(rp, run, t, inj, _OP_ACK, intid=intid, vcpu=vcpu, error=0)
    rp.seq += 1


def expect_record(rp, rec, ri):
    _, t, inj, kind, args = rec
    known = kind in F.EXPECT_KINDS
    for run in rp.runs:
        if known:
            msg = check_expectation(run, kind, args)
            if msg:
                rp.fail(run, ri, msg)
            err = 1 if msg else 0
        else:  # docs/trace-format.md: unknown kinds pass through unchecked, counted
            run.report.unchecked[str(kind)] += 1
            err = None
        _event(rp, run, t, inj, _OP_EXPECT, error=err)
    rp.seq += 1
