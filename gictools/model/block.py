"""Inject a run of MSIs between two commands as one block: columns in, columns out.

Between two commands (or register/memory writes) the ITS tables cannot change,
so each distinct (DeviceID, EventID) translates the same way for the whole run.
The block path resolves each distinct key once, decides each event's cache
outcome with the policy's own rules (a per-event loop only where order
matters: LRU and usage-count victims), then applies the side effects (pending
latches, cache contents) the per-event path would have left. It must equal
calling vm.signal_msi() per event; tests check that.
"""

import numpy as np

from gictools.model.cache import BYPASS, EVICT, HIT, MISS, MISS_NOFILL, RECYCLE
from gictools.regs import VITS_MAX_DEVID, VITS_MAX_EVENTID

# cache column dictionary indices: hit, miss, miss-evict, bypass
OUTCOME_TO_COLUMN = np.array([0, 1, 2, 3, 1, 1], dtype=np.int8)


class BlockResult:
    __slots__ = (
        "outcome",
        "intid",
        "vcpu",
        "error",
        "entries",
        "victim_index",
        "victim_device",
        "victim_event",
    )


def _resolve_uniques(its, uniq):
    """Slow-path translation of each distinct key: (lpis list, intid, vcpu, error arrays)."""
    n = len(uniq)
    intid = np.full(n, -1, dtype=np.int64)
    vcpu = np.full(n, -1, dtype=np.int32)
    error = np.zeros(n, dtype=np.int32)
    lpis = []
    resolve = its.resolve_lpi
    for j, k in enumerate(uniq.tolist()):
        err, lpi = resolve(k >> 32, k & 0xFFFF_FFFF)
        lpis.append(lpi)
        if err:
            error[j] = err
        else:
            intid[j] = lpi.intid
            vcpu[j] = -1 if lpi.target is None else lpi.target
    return lpis, intid, vcpu, error


def _cache_consistent(its, policy):
    """True if every cached entry of this ITS is what the slow path gives now.

    Only a KVM quirk breaks this (collection BASER invalidated without a cache
    invalidation); the caller then falls back to the per-event path.
    """
    idx = its.index
    if policy.scope == "its":
        items = ((k >> 16, k & 0xFFFF, lpi) for k, lpi in policy.map.items())
    elif policy.name == "lru-v6.8":
        items = (
            ((k >> 32) & 0xFFFF_FFFF, k & 0xFFFF_FFFF, lpi)
            for k, lpi in policy.map.items()
            if k >> 64 == idx
        )
    elif policy.name == "usage-v2":
        items = (
            ((k >> 32) & 0xFFFF_FFFF, k & 0xFFFF_FFFF, e.lpi)
            for k, e in policy.map.items()
            if k >> 64 == idx
        )
    else:
        return True
    return all(its.resolve_lpi(d, e)[1] is lpi for d, e, lpi in items)


def _run_none(policy, its, keys64, inverse, first, lpis, n):
    return np.full(n, BYPASS, dtype=np.int8), [], []


def _run_per_its(policy, its, keys64, inverse, first, lpis, n):
    # vgic_its_check_cache: a hit if cached at block start or filled earlier in this block
    m = policy.map
    uniq_out = np.empty(len(lpis), dtype=np.int8)
    first_miss = np.zeros(len(lpis), dtype=bool)
    for j, k in enumerate(keys64):
        d, e = k >> 32, k & 0xFFFF_FFFF
        ck = d << 16 | e if d <= VITS_MAX_DEVID and e <= VITS_MAX_EVENTID else None
        lpi = lpis[j]
        if ck is not None and ck in m:
            uniq_out[j] = HIT
        elif lpi is None:
            uniq_out[j] = MISS_NOFILL
        else:
            uniq_out[j] = HIT
            first_miss[j] = True
            m[ck] = lpi  # vgic_its_cache_translation
    out = uniq_out[inverse]
    out[first[first_miss]] = MISS
    return out, [], []


def _event_keys(its, keys64, inverse, lpis):
    """Per-event VM-cache keys (ITS index above the packed IDs) and key -> resolved LPI."""
    off = its.index << 64
    resolved = {k | off: lpi for k, lpi in zip(keys64, lpis)}
    keys = (np.asarray(keys64, dtype=np.uint64)[inverse]).tolist()
    if off:
        keys = [k | off for k in keys]
    return keys, resolved


def _run_lru(policy, its, keys64, inverse, first, lpis, n):
    # vgic_its_check_cache / vgic_its_cache_translation, one event at a time
    keys, resolved = _event_keys(its, keys64, inverse, lpis)
    od = policy.map
    get, move, popitem = od.get, od.move_to_end, od.popitem
    cap = policy.capacity
    out = bytearray(n)  # HIT == 0
    vidx, vkey = [], []
    size = len(od)
    for i, k in enumerate(keys):
        if get(k) is not None:
            move(k)
            continue
        lpi = resolved[k]
        if lpi is None:
            out[i] = MISS_NOFILL
        elif size >= cap:
            if cap == 0:
                out[i] = MISS
                continue
            vk, _ = popitem(False)
            vidx.append(i)
            vkey.append(vk)
            out[i] = EVICT
            od[k] = lpi
        else:
            out[i] = MISS
            od[k] = lpi
            size += 1
    return np.frombuffer(bytes(out), dtype=np.int8), vidx, vkey


def _run_usage(policy, its, keys64, inverse, first, lpis, n):
    # hits bump a counter; fills go through UsageV2.fill_key (victim scan)
    keys, resolved = _event_keys(its, keys64, inverse, lpis)
    get = policy.map.get
    fill = policy.fill_key
    out = bytearray(n)
    vidx, vkey = [], []
    for i, k in enumerate(keys):
        e = get(k)
        if e is not None:
            e.usage += 1
            continue
        lpi = resolved[k]
        if lpi is None:
            out[i] = MISS_NOFILL
            continue
        o = fill(k, lpi)
        out[i] = o
        if o == EVICT:
            vd, ve = policy.last_victim
            vidx.append(i)
            vkey.append(vd << 32 | ve)
    return np.frombuffer(bytes(out), dtype=np.int8), vidx, vkey


RUNNERS = {
    "none": _run_none,
    "per-its-v6.10": _run_per_its,
    "lru-v6.8": _run_lru,
    "usage-v2": _run_usage,
}


def inject_block(vm, its, dev, ev):
    """Inject MSIs (dev[i], ev[i]) at its doorbell with KVM_MSI_VALID_DEVID; None if the
    block must take the per-event path (a cache entry the slow path disagrees with)."""
    policy = its.cache
    runner = RUNNERS.get(policy.name)
    if runner is None or not _cache_consistent(its, policy):
        return None
    n = len(dev)
    keys = (dev.astype(np.uint64) << np.uint64(32)) | ev.astype(np.uint64)
    uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    keys64 = uniq.tolist()
    lpis, u_intid, u_vcpu, u_error = _resolve_uniques(its, uniq)
    start_entries = len(policy)
    outcome, vidx, vkey = runner(policy, its, keys64, inverse, first, lpis, n)
    for lpi in lpis:  # the latch every delivered event set
        if lpi is not None:
            lpi.pending = True
    r = BlockResult()
    r.outcome = outcome
    r.intid = u_intid[inverse]
    r.vcpu = u_vcpu[inverse]
    r.error = u_error[inverse]
    if policy.name == "none":
        r.entries = np.zeros(n, dtype=np.int32)
    else:
        grow = (outcome == MISS) | (outcome == RECYCLE)
        r.entries = (start_entries + np.cumsum(grow, dtype=np.int64)).astype(np.int32)
    r.victim_index = np.asarray(vidx, dtype=np.int64)
    vk = np.asarray(vkey, dtype=np.uint64) if vkey else np.zeros(0, dtype=np.uint64)
    r.victim_device = ((vk >> np.uint64(32)) & np.uint64(0xFFFF_FFFF)).astype(np.uint32)
    r.victim_event = (vk & np.uint64(0xFFFF_FFFF)).astype(np.uint32)
    return r
