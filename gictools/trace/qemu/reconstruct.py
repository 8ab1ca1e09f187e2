"""Reconstruction of guest memory the log cannot show (docs/import-qemu.md §5): the LPI
configuration bytes each config load read, acknowledges KVM would deliver only after a
later load, and where the level-2 device-table pages and the RAM go."""

import bisect
from typing import NamedTuple

from gictools import regs as R
from gictools.errors import ImportFormatError
from gictools.trace.qemu.machine import MAX_RAM, QEMU_VIRT_RAM_BASE, SZ_64K, TRIGGERS
from gictools.trace.qemu.records import CfgByte, DumpPoint, L1Entry, Rec

LOADS = ("map", "inv", "invall")  # LPI events where KVM (re)reads the configuration byte


class Load(NamedTuple):
    """One config load of an LPI and the evidence after it, up to its next load."""

    kind: str  # one of LOADS
    at: int  # record index of its CfgByte placeholder
    window: list  # kinds of the LPI's events up to the next load
    next_load: int | None  # record index of the next load
    next_seen: int | None  # record index of the next acknowledge, trigger or INV


def decide_config_bytes(imp):
    """Decide every reconstructed LPI configuration byte (docs/import-qemu.md §5.2).

    Config loads (KVM re-reads the byte) are MAPTI (a new LPI), INV and INVALL. Evidence
    for the byte at a load, from the window up to the next load: an acknowledge (enabled);
    a trigger never acknowledged there (disabled: QEMU did not deliver it); the final
    --lpiprop dump for the last load before it; Linux's mask-before-DISCARD."""
    why = imp.recon.config_reasons
    default0 = imp.sides[0].prop_default
    for intid, evs in imp.recon.lpi_events.items():
        cur = default0
        for load, s in _loads(evs):
            val, reason = _byte_at_load(load, imp.sides[s], intid, cur)
            cfg = imp.records[load.at]
            if val is not None and cfg.gpa is not None:
                cfg.value, cfg.reason = val, reason
                why[reason] += 1
                cur = val
    imp.stats["lpi_config_writes"] = sum(why.values())
    at_dump = _defer_acks(imp, default0)
    for s, side in enumerate(imp.sides):
        if side.prop_final is not None and side.dump is not None:
            seen = at_dump.get(s, {})
            imp.flags["final_table_mismatch"] += sum(
                seen.get(i, default0) != side.prop_final.get(i, side.prop_default)
                for i in side.dump.lpis
            )
    for k in [k for k, v in imp.flags.items() if not v]:
        del imp.flags[k]


def _loads(evs):
    """(Load, side index) for each config load among one LPI's events, in order."""
    loads = [i for i, (k, _, _) in enumerate(evs) if k in LOADS]
    # record index of the next acknowledge, trigger or INV after each event
    nxt_seen, seen = [None] * len(evs), None
    for i in range(len(evs) - 1, -1, -1):
        nxt_seen[i] = seen
        if evs[i][0] in ("ack", "inv", *TRIGGERS):
            seen = evs[i][1]
    for n, i in enumerate(loads):
        kind, idx, s = evs[i]
        end = loads[n + 1] if n + 1 < len(loads) else len(evs)
        window = [k for k, _, _ in evs[i + 1 : end]]
        nxt = evs[loads[n + 1]][1] if n + 1 < len(loads) else None
        yield Load(kind, idx, window, nxt, nxt_seen[i]), s


def _byte_at_load(load, side, intid, cur):
    """(byte, reason) the guest had stored when KVM loaded it, or (None, None): unknown, the
    byte stays cur (the last decided one)."""
    kind, idx, window, nxt = load.kind, load.at, load.window, load.next_load
    final = side.prop_final
    dump = side.dump_index
    acked = "ack" in window
    # QEMU delivers an enabled LPI at once: an INT followed by another trigger (or
    # nothing) before any acknowledge found the LPI disabled
    first = window.index("int") if "int" in window else None
    unseen = first is not None and (first + 1 == len(window) or window[first + 1] in TRIGGERS)
    last_before_dump = idx < dump and (nxt is None or nxt > dump)
    fb = None if final is None else final.get(intid, side.prop_default)
    prio = (fb if fb is not None else side.prop_default) & R.LPI_PROP_PRIORITY_MASK
    on, off = prio | 0x3, prio | 0x2
    if kind == "inv":
        if unseen:
            return off, "int_not_delivered"
        if acked:
            return on, "delivered_after"
        if last_before_dump and fb is not None:
            return fb, "final_table"
        if window and window[0] in ("discard", "unmap"):
            return off, "masked_before_discard"
        return on, "unmask"
    if unseen:
        if cur & 1:
            return off, f"int_not_delivered_{kind}"
    elif acked and not cur & 1:
        return on, f"delivered_after_{kind}"  # delivered though no INV
    elif (
        fb is not None
        and idx < dump
        and intid in side.dump.lpis
        and fb != cur
        and (load.next_seen is None or load.next_seen > dump)
    ):
        # never delivered up to the dump: the byte there is the guest's
        return fb, f"final_table_{kind}"
    return None, None


def _defer_acks(imp, default0):
    """An acknowledge of an LPI whose loaded byte is disabled: QEMU applied a byte the guest
    stored without INV (it reads the table on every delivery); KVM delivers only after the
    next config load that enables it (INV/INVALL). Move the ACK just after that command.
    Returns each side's LPI bytes at its dump point."""
    recs = imp.records
    cfg_at, next_cmd = {}, [None] * (len(recs) + 1)
    for i, r in enumerate(recs):
        if isinstance(r, CfgByte):
            cfg_at.setdefault(r.intid, []).append(i)
    for i in range(len(recs) - 1, -1, -1):
        r = recs[i]
        cmd = isinstance(r, Rec) and r.method == "command"
        next_cmd[i] = i if cmd else next_cmd[i + 1]
    state, at_dump, moves = {}, {}, {}
    for i, r in enumerate(recs):
        if isinstance(r, CfgByte) and r.value is not None:
            state[r.intid] = r.value
        elif isinstance(r, DumpPoint):
            at_dump[r.side] = dict(state)
        elif isinstance(r, Rec) and r.method == "ack":
            intid = r.args[1]
            if state.get(intid, default0) & 1:
                continue
            to = _enabling_load(imp, i, intid, cfg_at, next_cmd)
            if to is None:
                imp.flags["acks_of_disabled_lpi"] += 1
            else:
                moves.setdefault(to, []).append(i)
                imp.flags["acks_deferred_to_config_load"] += 1
    if moves:
        moved = {i for v in moves.values() for i in v}
        out = []
        for i, r in enumerate(recs):
            if i not in moved:
                out.append(r)
            out.extend(recs[j] for j in moves.get(i, ()))
        imp.records = out
    return at_dump


def _enabling_load(imp, i, intid, cfg_at, next_cmd):
    """Index of the command after the first later config load enabling intid, or None."""
    recs = imp.records
    at = cfg_at.get(intid, [])
    for j in at[bisect.bisect_right(at, i) :]:
        r = recs[j]
        if r.value is None:
            continue
        if not r.value & 1:
            return None
        return next_cmd[j]  # the load's own command follows its placeholders
    return None


def place_l2_and_ram(imp):
    """Choose the level-2 device-table pages (free guest RAM), then the RAM size."""
    rc = imp.recon
    regions = sorted((g, s) for g, s in rc.regions if g >= QEMU_VIRT_RAM_BASE)
    top = max((g + s for g, s in regions), default=QEMU_VIRT_RAM_BASE)
    nxt = (top + SZ_64K - 1) & ~(SZ_64K - 1)
    for r in imp.records:
        if isinstance(r, L1Entry):
            nxt = (nxt + r.page - 1) & ~(r.page - 1)
            r.l2_gpa = nxt
            rc.l2_pages.append({"l1_entry_gpa": r.l1_gpa, "l2_page_gpa": nxt, "size": r.page})
            nxt += r.page
    need = nxt - QEMU_VIRT_RAM_BASE
    if need > MAX_RAM:
        raise ImportFormatError(
            f"the trace names guest addresses up to {nxt:#x}, beyond {MAX_RAM >> 30} GiB "
            f"of RAM at {QEMU_VIRT_RAM_BASE:#x}",
            path=imp.sides[0].path,
        )
    ram = imp.sides[0].cmdline.get("ram")
    if ram is None and imp.sides[0].cmdline:
        ram, rc.ram_source = 128 << 20, "QEMU's default -m (128 MiB): the command line has none"
    if ram is None:
        ram = 128 << 20
        while ram < need:
            ram <<= 1
        rc.ram_source = "inferred from the addresses the trace names"
    else:
        rc.ram_source = rc.ram_source or "command line -m"
        if ram < need:
            raise ImportFormatError(
                f"the command line's -m ({ram >> 20} MiB) is smaller than the "
                f"guest addresses the trace uses ({need >> 20} MiB above "
                f"{QEMU_VIRT_RAM_BASE:#x})",
                path=imp.sides[0].path,
            )
    return ram
