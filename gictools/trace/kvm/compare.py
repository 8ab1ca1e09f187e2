"""Checks of a KVM recording against gictools: the workload (commands, MSIs) against a generated
trace, and the kernel's translation-cache counts against the model's policy for that kernel.

Both sides are read from trace files, so the shipped fixtures can be checked without a kernel.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from gictools import regs as R
from gictools.cmdlayout import decode_command
from gictools.errors import StrPath
from gictools.model.cache import EVICT, MISS, RECYCLE
from gictools.model.kernel import profile
from gictools.trace import format as F
from gictools.trace.reader import TraceReader


def workload(path: StrPath) -> dict[str, Any]:
    """The ITS commands (raw, in processing order) and MSIs of a trace.

    A COMMAND record is one command; with a guest command queue (REG GITS_CBASER/CWRITER and
    the queue's bytes in MEM records), the commands are the entries between CREADR and each
    CWRITER write, as KVM's vgic_its_process_commands takes them.
    """
    cmds: list[bytes] = []
    msis: list[tuple[int, int, int | None]] = []
    mem: dict[int, bytes] = {}  # 32-byte queue entries by guest-physical address
    cbaser: dict[int, int] = {}
    creadr: dict[int, int] = defaultdict(int)
    with TraceReader(path) as rd:
        for rec in rd:
            tag = rec[0]
            if tag == F.COMMAND:
                cmds.append(bytes(rec[4]))
            elif tag == F.MEM and len(rec[4]) == 32:
                mem[rec[3]] = bytes(rec[4])
            elif tag == F.REG and rec[3] in ("its", "its-user") and rec[8]:
                its, off, val = rec[4], rec[5], rec[7]
                if off == R.GITS_CBASER:
                    cbaser[its], creadr[its] = val, 0
                elif off == R.GITS_CWRITER and its in cbaser:
                    q = R.GITS_CBASER_LAYOUT.decode(cbaser[its])
                    base, size = q["PA"] << 12, (q["Size"] + 1) << 12
                    end = val & 0xF_FFE0
                    while creadr[its] != end and creadr[its] < size:
                        cmds.append(mem.get(base + creadr[its], bytes(32)))
                        creadr[its] = (creadr[its] + 32) % size
            elif tag == F.MSI:
                msis.append((rec[4], rec[5], rec[2]))
            elif tag == F.MSI_BLOCK:
                dev, ev = rec[4].tolist(), rec[5].tolist()  # the reader's numpy columns
                inj = rec[6].tolist() if rec[6] is not None else [None] * len(dev)
                msis += list(zip(dev, ev, inj, strict=True))
    return {"commands": cmds, "msis": msis}


def _fields(raw: bytes) -> dict[str, Any]:
    name, fields = decode_command(raw)
    return {"name": name, **fields}


def compare_workloads(recorded: StrPath, generated: StrPath) -> dict[str, Any]:
    """Commands and MSIs of a recording against a generated trace (gen lpi-stress).

    Commands are compared field by field, guest-physical addresses (MAPD's ITT_addr) by their
    rank: the selftest places its tables at the top of the guest's IPA space, gen lpi-stress
    at 0x4000_0000. MSIs are compared per injector (each selftest thread's own order) and as a
    multiset; the interleaving of threads is the scheduler's and is reported, not compared.
    """
    a, b = workload(recorded), workload(generated)

    def norm(cmds):
        out, itts = [], {}
        for raw in cmds:
            f = _fields(raw)
            if "ITT_addr" in f:
                f["ITT_addr"] = itts.setdefault(f["ITT_addr"], len(itts))
            out.append(f)
        return out

    ca, cb = norm(a["commands"]), norm(b["commands"])
    cmd_diff = [(i, x, y) for i, (x, y) in enumerate(zip(ca, cb, strict=False)) if x != y]
    by_dev_a: dict[int, list[int]] = defaultdict(list)
    by_dev_b: dict[int, list[int]] = defaultdict(list)
    for d, e, _ in a["msis"]:
        by_dev_a[d].append(e)
    for d, e, _ in b["msis"]:
        by_dev_b[d].append(e)
    same_order = [(d, e) for d, e, _ in a["msis"]] == [(d, e) for d, e, _ in b["msis"]]
    return {
        "commands": (len(ca), len(cb)),
        "commands_equal": len(ca) == len(cb) and not cmd_diff,
        "command_differences": cmd_diff[:10],
        "command_names": dict(Counter(f["name"] for f in ca)),
        "msis": (len(a["msis"]), len(b["msis"])),
        "msis_multiset_equal": Counter((d, e) for d, e, _ in a["msis"])
        == Counter((d, e) for d, e, _ in b["msis"]),
        "msis_per_device_equal": dict(by_dev_a) == dict(by_dev_b),
        "msis_global_order_equal": same_order,
    }


def model_cache_counts(trace: StrPath, policy: str | None = None, kernel: str | None = None):
    """Hits, misses, fills, evictions and invalidations of one replay of trace under policy
    (default: the kernel's own, from --kernel or the trace header)."""
    from gictools.replay import replay  # the replay loop, imported only when asked

    if policy is None:
        with TraceReader(trace) as rd:
            kv = kernel or rd.header["vm"].get("kernel")
        policy = profile(kv).default_cache if kv else profile().default_cache
    (rep,) = replay(trace, policies=(policy,), kernel=kernel)
    o = rep.outcomes
    return {
        "policy": policy,
        "lookups": rep.lookups,
        "hits": rep.hits,
        "misses": rep.misses,
        "fills": int(o[MISS] + o[EVICT] + o[RECYCLE]),
        "evictions": rep.evictions,
        "invalidations": rep.invalidations,
        "failed_expectations": rep.failure_count,
    }
