"""The work behind `gictools save / restore / roundtrip / inspect`; returns printable results.

The CLI only parses arguments and prints what these functions return.
"""

import os

from gictools import regs as R
from gictools.abi import entries as E
from gictools.errors import ImageError
from gictools.image import build_vm, dump_image, is_image, load_image_bytes, parse_image, save_image
from gictools.model.its import COLLECTION_NOT_MAPPED, SZ_64K, baser_table_base
from gictools.model.memory import PAGE_SHIFT, PAGE_SIZE
from gictools.outputs import check_output

# --- save TRACE -----------------------------------------------------------------------------


def _replayer(trace):
    from gictools.replay import Replayer

    return Replayer(trace, ["default"])


def _numbered(out, k):
    root, ext = os.path.splitext(os.fspath(out))
    return f"{root}-{k}{ext}"


def save_trace(trace, out, *, at_saves: bool = False) -> list:
    """Replay trace, then write an image of the final state to out (KVM save sequence
    first). With at_saves, also write OUT-<k>.EXT right after the k-th save_tables record
    (memory as the trace's own save left it). Returns one line per image written."""
    from gictools.trace import format as F

    check_output(out, [trace])  # before any work: never overwrite the trace
    rp = _replayer(trace)
    run = rp.runs[0]
    lines = []
    k = 0
    reader = rp.reader
    for rec in reader:
        rp.HANDLERS[rec[0]](rp, rec, reader.record_index)
        if at_saves and rec[0] == F.CTRL and rec[3] == F.CTRL_SAVE_TABLES:
            k += 1
            p = _numbered(out, k)
            n = save_image(run.vm, p, flush=False)
            lines.append(f"wrote {p} ({n:,} bytes) at record {reader.record_index}")
    n = save_image(run.vm, out)
    lines.append(f"wrote {out} ({n:,} bytes) after {reader.record_index + 1} records")
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


def restore_image(path) -> list:
    with open(path, "rb") as f:
        data = f.read()
    return describe_vm(load_image_bytes(data, path))


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


def _nonzero_entries(mem, base, length):
    """(gpa, word) of every non-zero 8-byte entry in [base, base+length), present pages only."""
    end = base + length
    first, last = base >> PAGE_SHIFT, (end - 1) >> PAGE_SHIFT
    pfns = sorted(p for p in mem.pages if first <= p <= last) if length > 0 else []
    for pfn in pfns:
        page = mem.pages[pfn]
        pbase = pfn << PAGE_SHIFT
        lo = max(base, pbase) - pbase
        hi = min(end, pbase + PAGE_SIZE) - pbase
        lo += (-(pbase + lo - base)) % 8
        for off in range(lo, hi - 7, 8):
            w = int.from_bytes(page[off : off + 8], "little")
            if w:
                yield pbase + off, w


def inspect_image(path) -> tuple:
    """(ok, lines): every table entry decoded; malformed ones flagged with their address."""
    with open(path, "rb") as f:
        data = f.read()
    img = parse_image(data, path)
    vm = build_vm(img, path, restore=False)
    mem = vm.memory
    lines = [
        f"image {path}: version ok, checksum ok, {vm.nr_vcpus} vCPU(s), kernel "
        f"{vm.kernel.name}, {len(img.mem)} memory run(s)"
    ]
    bad = 0

    def flag(gpa, what):
        nonlocal bad
        bad += 1
        lines.append(f"    MALFORMED at {gpa:#x}: {what}")

    for (idx, base, regs, _off), its in zip(img.itses, vm.itses):
        lines.append(
            f"ITS {idx} @ {base:#x}: "
            + ", ".join(f"{k}={v:#x}" for k, v in regs.items() if k != "GITS_BASER")
            + f", BASER0={regs['GITS_BASER'][0]:#x}, BASER1={regs['GITS_BASER'][1]:#x}"
        )
        rev = R.GITS_IIDR_LAYOUT["Revision"].get(regs["GITS_IIDR"])
        if rev != 0:
            flag(0, f"GITS_IIDR revision {rev} (only ABI revision 0 exists)")
        # registers as the restore would set them (sanitised), for geometry
        its.write_reg("GITS_BASER0", regs["GITS_BASER"][0])
        its.write_reg("GITS_BASER1", regs["GITS_BASER"][1])
        cb, db = its.baser[1], its.baser[0]
        icids = {}
        if cb >> 63:
            cbase, csize = baser_table_base(cb), (R.GITS_BASER_LAYOUT["Size"].get(cb) + 1) * SZ_64K
            lines.append(f"  collection table {cbase:#x} (+{csize:#x})")
            ended = False
            for i in range(csize // 8):
                gpa = cbase + 8 * i
                if not mem.is_ram(gpa, 8):
                    flag(gpa, "collection table entry outside guest RAM")
                    break
                w = mem.read_u64(gpa)
                e = E.decode_cte(w)
                if not e.valid:
                    if not ended:
                        ended = True
                        lines.append(f"    {gpa:#x} CTE terminator")
                    if w:
                        lines.append(f"    {gpa:#x} CTE invalid, non-zero {w:#018x} (ignored)")
                    continue
                if ended:
                    lines.append(f"    {gpa:#x} CTE ICID {e.icid} after the terminator (ignored)")
                    continue
                tgt = "unmapped" if e.rdbase == COLLECTION_NOT_MAPPED else f"RDbase {e.rdbase}"
                lines.append(f"    {gpa:#x} CTE ICID {e.icid} -> {tgt}")
                if e.rdbase != COLLECTION_NOT_MAPPED and vm.vcpu_from_rdbase(e.rdbase) is None:
                    flag(gpa, f"CTE target {e.rdbase} names no vCPU (-EINVAL)")
                if e.icid in icids:
                    flag(gpa, f"CTE ICID {e.icid} duplicated (-EEXIST)")
                if its.check_id(1, e.icid) is None:
                    flag(gpa, f"CTE ICID {e.icid} outside the collection table (-EINVAL)")
                if w & E.CTE_IGNORED_MASK:
                    lines.append(f"    {gpa:#x} note: bits outside [47:16]/63/[15:0] set (ignored)")
                icids[e.icid] = e
        if db >> 63:
            dbase, dsize = baser_table_base(db), (R.GITS_BASER_LAYOUT["Size"].get(db) + 1) * SZ_64K
            lines.append(
                f"  device table {dbase:#x} (+{dsize:#x}), "
                f"{'two-level' if db & (1 << 62) else 'flat'}"
            )
            pages = []
            if db & (1 << 62):
                if not mem.is_ram(dbase, dsize):
                    flag(dbase, "level-1 table not entirely in guest RAM")
                for gpa, w in _nonzero_entries(mem, dbase, dsize):
                    e = E.decode_l1e(w)
                    index = (gpa - dbase) // 8
                    lines.append(
                        f"    {gpa:#x} L1[{index}] {'valid' if e.valid else 'invalid'} "
                        f"-> L2 {e.l2_addr:#x}"
                    )
                    if e.valid:
                        if not mem.is_ram(e.l2_addr, SZ_64K):
                            flag(gpa, f"L2 page {e.l2_addr:#x} outside guest RAM (-EFAULT)")
                        else:
                            pages.append((e.l2_addr, SZ_64K, index * (SZ_64K // 8)))
            else:
                if not mem.is_ram(dbase, dsize):
                    flag(dbase, "device table not entirely in guest RAM")
                pages.append((dbase, dsize, 0))
            for tbase, tsize, first_id in pages:
                for gpa, w in _nonzero_entries(mem, tbase, tsize):
                    device_id = first_id + (gpa - tbase) // 8
                    e = E.decode_dte(w)
                    if not e.valid:
                        lines.append(f"    {gpa:#x} DTE {device_id} invalid, non-zero {w:#018x}")
                        continue
                    lines.append(
                        f"    {gpa:#x} DTE {device_id}: ITT {e.itt_addr:#x}, "
                        f"{e.num_eventid_bits} bits, next {e.next}"
                    )
                    if e.num_eventid_bits > R.VITS_TYPER_IDBITS:
                        flag(gpa, f"DTE Size {e.size}: {e.num_eventid_bits} EventID bits > 16")
                    if its.check_id(0, device_id) is None:
                        flag(gpa, f"DeviceID {device_id} fails check_id (-EINVAL)")
                    nbits = min(e.num_eventid_bits, R.VITS_TYPER_IDBITS)
                    ilen = (1 << nbits) * 8
                    if not mem.is_ram(e.itt_addr, 8):
                        flag(gpa, f"ITT {e.itt_addr:#x} outside guest RAM (-EFAULT)")
                        continue
                    for igpa, iw in _nonzero_entries(mem, e.itt_addr, ilen):
                        eid = (igpa - e.itt_addr) // 8
                        ie = E.decode_ite(iw)
                        if not ie.valid:
                            lines.append(f"      {igpa:#x} ITE {eid} invalid, non-zero {iw:#018x}")
                            continue
                        lines.append(
                            f"      {igpa:#x} ITE {eid}: INTID {ie.pintid}, "
                            f"ICID {ie.icid}, next {ie.next}"
                        )
                        if ie.pintid < R.LPI_BASE_INTID:
                            flag(igpa, f"ITE pINTID {ie.pintid} < 8192 (-EINVAL)")
                        if eid + ie.next >= 1 << e.num_eventid_bits:
                            flag(igpa, f"ITE next {ie.next} points past the ITT (-EINVAL)")
                        if ie.icid not in icids:
                            flag(
                                igpa, f"ITE ICID {ie.icid} is not in the collection table (-EINVAL)"
                            )
    # what KVM's restore would say
    try:
        build_vm(img, path)
        lines.append("restore: ok")
        restore_ok = True
    except ImageError as e:
        lines.append(
            f"restore: FAILS at step {e.step}: {e.what} "
            f"({R.error_name(e.errno) if e.errno else ''})"
        )
        restore_ok = False
    lines.append(f"{bad} malformed entr{'y' if bad == 1 else 'ies'}")
    return bad == 0 and restore_ok, lines


__all__ = ["save_trace", "restore_image", "roundtrip", "inspect_image", "describe_vm"]
