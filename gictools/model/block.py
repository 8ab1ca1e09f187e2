"""Inject a run of MSIs between two commands as one block: columns in, columns out.

Between two commands (or register/memory writes) the ITS tables cannot change,
so each distinct (DeviceID, EventID) translates the same way for the whole run.
The block path resolves each distinct key once, lets the ITS's cache policy
decide each event's outcome (CachePolicy.run_block: the policy's own rules),
then applies the side effects common to every policy (pending latches). It must
equal calling vm.signal_msi() per event; tests check that.
"""

import numpy as np

from gictools.model.cache import COLUMN_INDEX, Block, Outcome
from gictools.model.cache.keys import split_translation_keys, translation_keys

# Outcome code -> Parquet `cache` dictionary index (hit, miss, miss-evict, bypass)
OUTCOME_TO_COLUMN = np.array(COLUMN_INDEX, dtype=np.int8)
_GROWS = np.array([o.grows for o in Outcome], dtype=bool)


class BlockResult:
    """Per-event columns of one injected block (victims sparse, in event order)."""

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
    outcome: np.ndarray  # Outcome codes (int8)
    intid: np.ndarray
    vcpu: np.ndarray
    error: np.ndarray
    entries: np.ndarray  # cache entries after each event (int32)
    victim_index: np.ndarray
    victim_device: np.ndarray
    victim_event: np.ndarray


def _unique(keys):
    """np.unique(keys, return_index=True, return_inverse=True), 3-5x faster on MSI blocks:
    an unstable sort, with each key's first event taken as the smallest index of its run."""
    n = len(keys)
    order = np.argsort(keys)
    s = keys[order]
    new = np.empty(n, dtype=bool)
    new[:1] = True
    np.not_equal(s[1:], s[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    first = np.minimum.reduceat(order, starts) if n else starts
    inverse = np.empty(n, dtype=np.intp)
    inverse[order] = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, n)))
    return s[starts], first, inverse


def _resolve_uniques(its, uniq):
    """Slow-path translation of each distinct key: (lpis list, intid, vcpu, error arrays)."""
    n = len(uniq)
    intid = np.full(n, -1, dtype=np.int64)
    vcpu = np.full(n, -1, dtype=np.int32)
    error = np.zeros(n, dtype=np.int32)
    lpis = []
    resolve = its.resolve_lpi
    dev, ev = split_translation_keys(uniq)
    for j, (d, e) in enumerate(zip(dev.tolist(), ev.tolist())):
        err, lpi = resolve(d, e)
        lpis.append(lpi)
        if err:
            error[j] = err
        else:
            intid[j] = lpi.intid
            vcpu[j] = -1 if lpi.target is None else lpi.target
    return lpis, intid, vcpu, error


def inject_block(vm, its, dev: np.ndarray, ev: np.ndarray) -> BlockResult | None:
    """Inject MSIs (dev[i], ev[i]) at its doorbell with KVM_MSI_VALID_DEVID; None if the
    block must take the per-event path (the policy declined: a cache entry the slow path
    disagrees with, or an order-dependent corner). None leaves the model untouched."""
    policy = its.cache
    if not policy.consistent(its):
        return None
    n = len(dev)
    keys = translation_keys(dev, ev)
    uniq, first, inverse = _unique(keys)
    lpis, u_intid, u_vcpu, u_error = _resolve_uniques(its, uniq)
    start_entries = len(policy)
    res = policy.run_block(its, Block(uniq, lpis, inverse, first))
    if res is None:
        return None
    latch = its.vm.latch
    for lpi in lpis:  # the latch every delivered event set (and the ap_list it joins)
        if lpi is not None:
            latch(lpi)
    r = BlockResult()
    r.outcome = res.outcome
    r.intid = u_intid[inverse]
    r.vcpu = u_vcpu[inverse]
    r.error = u_error[inverse]
    grow = _GROWS[res.outcome]
    if grow.any():
        r.entries = (start_entries + np.cumsum(grow, dtype=np.int64)).astype(np.int32)
    else:
        r.entries = np.full(n, start_entries, dtype=np.int32)
    r.victim_index = res.victim_index
    r.victim_device, r.victim_event = split_translation_keys(res.victim_keys)
    return r
