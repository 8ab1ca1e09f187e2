"""The work behind `gictools save / restore / roundtrip / inspect`; returns printable results.

The CLI only parses arguments and prints what these functions return.
"""

import contextlib
import os
from collections.abc import Callable

from gictools import regs as R
from gictools.errors import ImageError
from gictools.image import (
    dump_image,
    is_image,
    load_image_bytes,
    parse_image,
    save_image,
    stream_vm,
)
from gictools.model.its import COLLECTION_NOT_MAPPED
from gictools.model.memory import PAGE_SIZE
from gictools.outputs import check_output

# --- save TRACE -----------------------------------------------------------------------------


def _replayer(trace, name=None):
    from gictools.replay import Replayer, TraceSource

    return Replayer(trace, ["default"], source=TraceSource(name))


def _numbered(out, k):
    root, ext = os.path.splitext(os.fspath(out))
    return f"{root}-{k}{ext}"


def save_trace(
    trace,
    out,
    *,
    at_saves: bool = False,
    name: str | None = None,
    out_name: str | None = None,
    progress: Callable[[str, int, int | None], None] | None = None,
) -> list:
    """Replay trace, then write an image of the final state to out (KVM save sequence
    first). With at_saves, also write OUT-<k>.EXT right after the k-th save_tables record
    (memory as the trace's own save left it). Returns one line per image written.
    name/out_name: how the lines call the trace and out (a spooled stdin or stdout).
    progress(stage, done, total): "replay" in events (total None if the trace does not
    say), then "write" in bytes, for a progress bar."""
    check_output(out, [trace])  # before any work: never overwrite the trace
    rp = _replayer(trace, name)
    with contextlib.closing(rp):
        lines = _replay_saving(rp, out, at_saves, progress)
    step = None if progress is None else (lambda done, total: progress("write", done, total))
    n = save_image(rp.runs[0].vm, out, progress=step)
    records = rp.reader.record_index + 1
    lines.append(f"wrote {out_name or out} ({n:,} bytes) after {records} records")
    return lines


def _replay_saving(rp, out, at_saves, progress) -> list:
    """The replay half of save_trace (with the --at-saves images)."""
    from gictools.trace import format as F

    lines, k, reader, run = [], 0, rp.reader, rp.runs[0]
    for rec in reader:
        rp.HANDLERS[rec[0]](rp, rec, reader.record_index)
        if progress is not None:
            progress("replay", reader.events_read, reader.events_total)
        if at_saves and rec[0] == F.CTRL and rec[3] == F.CTRL_SAVE_TABLES:
            k += 1
            p = _numbered(out, k)
            n = save_image(run.vm, p, flush=False)
            lines.append(f"wrote {p} ({n:,} bytes) at record {reader.record_index}")
    return lines


# --- restore IMAGE ---------------------------------------------------------------------------


def describe_vm(vm) -> list:
    """Devices, ITEs, collections and pending LPIs per vCPU, one item per line."""
    out = [
        f"VM: {vm.nr_vcpus} vCPU(s) (ids {vm.vcpu_ids}), kernel {vm.kernel.name}, "
        f"cache {vm.cache_policy}, {len(vm.lpis)} LPI(s)"
    ]
    for its in vm.itses:
        nites = sum(len(d.ites) for d in its.devices.values())
        out.append(
            f"ITS {its.index} @ {its.base:#x}: {'enabled' if its.enabled else 'disabled'}, "
            f"{len(its.devices)} device(s), {nites} ITE(s), "
            f"{len(its.collections)} collection(s)"
        )
        for c in its.collections.values():
            tgt = (
                "unmapped"
                if c.target == COLLECTION_NOT_MAPPED
                else f"RDbase {c.target} (vCPU {vm.vcpu_from_rdbase(c.target)})"
            )
            out.append(f"  collection {c.icid}: {tgt}")
        for d in its.shadowed:
            out.append(
                f"  device {d.device_id} (shadowed by the live one, find_its_device): ITT "
                f"{d.itt_addr:#x}, {d.num_eventid_bits} EventID bits, {len(d.ites)} ITE(s)"
            )
        for d in sorted(its.devices.values(), key=lambda d: d.device_id):
            out.append(
                f"  device {d.device_id}: ITT {d.itt_addr:#x}, {d.num_eventid_bits} "
                f"EventID bits, {len(d.ites)} ITE(s)"
            )
            for eid in sorted(d.ites):
                ite = d.ites[eid]
                icid = "-" if ite.collection is None else ite.collection.icid
                lpi = ite.lpi
                out.append(
                    f"    event {eid} -> INTID {lpi.intid}, ICID {icid}, vCPU {lpi.target}, "
                    f"prio {lpi.priority:#x}, {'en' if lpi.enabled else 'dis'}abled"
                    f"{', pending' if lpi.pending else ''}"
                )
    for v in range(vm.nr_vcpus):
        p = vm.pending_lpis(v)
        out.append(
            f"vCPU {v}: LPIs {'enabled' if vm.redists[v].lpis_enabled else 'disabled'}, "
            f"pending {p if p else 'none'}"
        )
    return out


def restore_image(path, progress: Callable[[int, int], None] | None = None) -> list:
    """Restore the image at path into a fresh VM, streaming it (memory: the VM plus one
    record); progress(done, total) in file bytes."""
    return describe_vm(stream_vm(path, path, progress=progress)[0])


# --- roundtrip TRACE|IMAGE -------------------------------------------------------------------


def _diff_state(a, b, path="state", out=None, limit=40):
    out = [] if out is None else out
    if len(out) >= limit:
        return out
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=repr):
            if k not in a:
                out.append(f"{path}[{k!r}]: only after restore: {b[k]!r}")
            elif k not in b:
                out.append(f"{path}[{k!r}]: lost by save/restore: {a[k]!r}")
            else:
                _diff_state(a[k], b[k], f"{path}[{k!r}]", out, limit)
    elif (
        isinstance(a, (list, tuple))
        and isinstance(b, (list, tuple))
        and len(a) == len(b)
        and any(isinstance(x, (dict, list, tuple)) for x in a)
    ):
        for i, (x, y) in enumerate(zip(a, b)):
            _diff_state(x, y, f"{path}[{i}]", out, limit)
    elif a != b:
        out.append(f"{path}: {a!r} before, {b!r} after")
    return out[:limit]


def _diff_images(x: bytes, y: bytes, limit=20) -> list:
    """Byte differences between two images, by record (memory by guest address)."""
    if x == y:
        return []
    a, b = parse_image(x), parse_image(y)
    out = []
    if a.vm != b.vm:
        out.append(f"vm config: {a.vm} vs {b.vm}")
    if a.redists != b.redists:
        out.append(f"redistributor registers: {a.redists} vs {b.redists}")
    for ia, ib in zip(a.itses, b.itses):
        if ia[:3] != ib[:3]:
            out.append(f"ITS {ia[0]} registers: {ia[2]} vs {ib[2]}")
    ma = {g + i: d[i : i + PAGE_SIZE] for g, d, _ in a.mem for i in range(0, len(d), PAGE_SIZE)}
    mb = {g + i: d[i : i + PAGE_SIZE] for g, d, _ in b.mem for i in range(0, len(d), PAGE_SIZE)}
    zero = bytes(PAGE_SIZE)
    for gpa in sorted(set(ma) | set(mb)):
        pa, pb = ma.get(gpa, zero), mb.get(gpa, zero)
        if pa != pb:
            diffs = [i for i in range(PAGE_SIZE) if pa[i] != pb[i]]
            out.append(
                f"memory page {gpa:#x}: {len(diffs)} byte(s) differ, first at "
                f"{gpa + diffs[0]:#x} ({pa[diffs[0]]:#04x} vs {pb[diffs[0]]:#04x})"
            )
            if len(out) >= limit:
                break
    return out or ["images differ (encoding only)"]


def roundtrip(path) -> tuple:
    """(ok, lines): save -> restore into a fresh VM -> save; compare bytes and model state."""
    if is_image(path):
        with open(path, "rb") as f:
            vm0 = load_image_bytes(f.read(), path)
        src = "image"
    else:
        rp = _replayer(path)
        rp.run()
        vm0 = rp.runs[0].vm
        src = "trace"
    first = dump_image(vm0)
    state0 = vm0.state()
    vm1 = load_image_bytes(first)
    second = dump_image(vm1)
    byte_diffs = _diff_images(first, second)
    state_diffs = _diff_state(state0, vm1.state())
    lines = [f"{src} {path}: image {len(first):,} bytes, re-saved {len(second):,} bytes"]
    lines += [f"BYTES: {d}" for d in byte_diffs]
    lines += [f"STATE: {d}" for d in state_diffs]
    ok = not byte_diffs and not state_diffs
    lines.append(
        "round trip: identical bytes and equal model state"
        if ok
        else f"round trip FAILED: {len(byte_diffs)} byte and {len(state_diffs)} state difference(s)"
    )
    return ok, lines


# --- inspect IMAGE ---------------------------------------------------------------------------


def _overlap_notes(vm, walks) -> list:
    """Overlaps between every table restore reads: ITS tables, property and pending tables."""
    from gictools.abi.v0 import Inspection

    every = Inspection()
    for idx, find in walks:
        every.ranges += [(a, b, f"ITS {idx} {what}") for a, b, what in find.ranges]
    if any(rd.lpis_enabled for rd in vm.redists):
        idbits = min(R.GICR_PROPBASER_LAYOUT["IDbits"].get(vm.propbaser) + 1, 32)
        nbytes = max((1 << idbits) - R.LPI_BASE_INTID, 0)
        every.table(vm.prop_byte_gpa(R.LPI_BASE_INTID), nbytes, "LPI property table")
        for rd in vm.redists:
            if rd.lpis_enabled:
                every.table(rd.pending_table(), (1 << idbits) // 8, f"vCPU {rd.vcpu} pending table")
    return every.overlap_notes()


def inspect_image(path) -> tuple:
    """(ok, lines): the restore itself run in inspect mode (image.StepFailures and the walk's
    abi.v0.Inspection): every entry it meets listed, every problem flagged with its address
    and KVM's errno, table overlaps noted. ok is exactly "load_image would succeed"."""
    from gictools.image import StepFailures, stream_vm

    fail = StepFailures()
    src, path = path, None if isinstance(path, (bytes, bytearray)) else path
    head = f"image {path or '(bytes)'}: version ok, checksum ok"
    try:
        vm, img = stream_vm(src, path, fail=fail)
    except ImageError as e:
        if e.step is None:
            raise  # not an image at all: a format error (exit 2)
        err = f" ({R.error_name(e.errno)})" if e.errno else ""
        return False, [head, f"restore: FAILS at step {e.step}: {e.what}{err}", "1 problem"]
    lines = [
        f"{head}, {vm.nr_vcpus} vCPU(s), kernel {vm.kernel.name}, cache {vm.cache_policy}",
    ]
    walks = dict(fail.walks)
    for (idx, base, regs, _off), its in zip(img.itses, vm.itses):
        lines.append(
            f"ITS {idx} @ {base:#x}: "
            + ", ".join(f"{k}={v:#x}" for k, v in regs.items() if k != "GITS_BASER")
            + f", BASER0={its.baser[0]:#x}, BASER1={its.baser[1]:#x}"
        )
        find = walks.get(idx)
        if find is None:
            continue
        lines += find.lines
        if find.unlisted:
            lines.append(f"    ... {find.unlisted} more entries not listed")
        if find.full:
            lines.append(f"    walk stopped after {len(find.problems)} problems")
    lines += [f"  {n}" for n in _overlap_notes(vm, fail.walks)]
    for step, _err, what in fail.failures:
        if not step.endswith(".restore_tables"):
            lines.append(f"    MALFORMED register at step {step}: {what}")
    nbad = sum(len(f.problems) for _, f in fail.walks)
    nbad += sum(1 for step, _, _ in fail.failures if not step.endswith(".restore_tables"))
    if fail.failures:
        step, _err, what = fail.failures[0]
        lines.append(f"restore: FAILS at step {step}: {what}")
    else:
        lines.append("restore: ok")
    lines.append(f"{nbad} malformed entr{'y' if nbad == 1 else 'ies'}")
    return not fail.failures, lines


__all__ = ["save_trace", "restore_image", "roundtrip", "inspect_image", "describe_vm"]
