"""numba kernels of the order-dependent policies' block rules (imported by jit.py only).

Entries are small ints (ids) chosen by the caller: the block's distinct keys, then the
resident entries the block does not name. Outcome codes are Outcome's values.
"""

import numba as nb
import numpy as np

from gictools.model.cache.outcome import Outcome

_HIT = int(Outcome.HIT)
_MISS = int(Outcome.MISS)
_EVICT = int(Outcome.EVICT)
_NOFILL = int(Outcome.MISS_NOFILL)
_RECYCLE = int(Outcome.RECYCLE)


@nb.njit(cache=True, nogil=True, inline="always")
def _link_mru(prv, nxt, lru, mru, x):
    """Link unlinked id x at the MRU end; returns the new (lru, mru)."""
    prv[x] = mru
    nxt[x] = -1
    if mru >= 0:
        nxt[mru] = x
    else:
        lru = x
    return lru, x


@nb.njit(cache=True, nogil=True)
def lru_block(inverse, fillable, order, cap, out, victim):
    """lru-v6.8 (vgic_its_check_cache + vgic_its_cache_translation) over one block.

    order: the cache's ids, LRU first. Writes out/victim per event; returns the final
    order, LRU first. An intrusive doubly linked list over ids.
    """
    nid = fillable.shape[0]
    prv = np.full(nid, -1, np.int64)
    nxt = np.full(nid, -1, np.int64)
    inc = np.zeros(nid, np.bool_)
    lru = -1
    mru = -1
    size = 0
    for x in order:
        lru, mru = _link_mru(prv, nxt, lru, mru, x)
        inc[x] = True
        size += 1
    for i in range(inverse.shape[0]):
        x = inverse[i]
        if inc[x]:
            out[i] = _HIT
            if x != mru:
                p = prv[x]
                q = nxt[x]
                if p >= 0:
                    nxt[p] = q
                else:
                    lru = q
                prv[q] = p
                prv[x] = mru
                nxt[x] = -1
                nxt[mru] = x
                mru = x
            continue
        if not fillable[x]:
            out[i] = _NOFILL
            continue
        if size >= cap:
            if cap == 0:
                out[i] = _MISS
                continue
            v = lru
            lru = nxt[v]
            if lru >= 0:
                prv[lru] = -1
            else:
                mru = -1
            nxt[v] = -1
            inc[v] = False
            victim[i] = v
            out[i] = _EVICT
        else:
            size += 1
            out[i] = _MISS
        lru, mru = _link_mru(prv, nxt, lru, mru, x)
        inc[x] = True
    final = np.empty(size, np.int64)
    x = lru
    k = 0
    while x >= 0:
        final[k] = x
        k += 1
        x = nxt[x]
    return final


@nb.njit(cache=True, nogil=True)
def usage_block(inverse, fillable, ent_id, ent_use, cap, out, victim):
    """usage-v2 (series v2 patch 13/23 victim scan) over one block.

    ent_id/ent_use: the list, tail first (id -1 = invalidated entry still linked). Writes
    out/victim per event; returns the final (ent_id, ent_use), tail first.
    """
    nid = fillable.shape[0]
    m = ent_id.shape[0]
    nslot = max(cap, m)
    slot_of = np.full(nid, -1, np.int64)
    sid = np.full(nslot, -1, np.int64)
    suse = np.zeros(nslot, np.int64)
    order = np.zeros(nslot, np.int64)  # slots, tail first
    for p in range(m):
        sid[p] = ent_id[p]
        suse[p] = ent_use[p]
        order[p] = p
        if ent_id[p] >= 0:
            slot_of[ent_id[p]] = p
    cnt = m
    for i in range(inverse.shape[0]):
        x = inverse[i]
        s = slot_of[x]
        if s >= 0:
            suse[s] += 1
            out[i] = _HIT
            continue
        if not fillable[x]:
            out[i] = _NOFILL
            continue
        usage = 0
        if cnt >= cap:
            if cap == 0:
                out[i] = _MISS
                continue
            vp = -1
            best = 0
            for p in range(cnt - 1, -1, -1):  # from the head
                s2 = order[p]
                if sid[s2] < 0:
                    vp = p
                    break
                u = suse[s2]
                if u > usage:
                    usage = u
                if vp < 0 or u <= best:
                    best = u
                    vp = p
            s = order[vp]
            if sid[s] < 0:
                out[i] = _RECYCLE
            else:
                slot_of[sid[s]] = -1
                victim[i] = sid[s]
                out[i] = _EVICT
            for p in range(vp, cnt - 1):
                order[p] = order[p + 1]
            order[cnt - 1] = s
        else:
            s = cnt
            order[cnt] = s
            cnt += 1
            out[i] = _MISS
        sid[s] = x
        suse[s] = usage
        slot_of[x] = s
    fid = np.empty(cnt, np.int64)
    fuse = np.empty(cnt, np.int64)
    for p in range(cnt):
        fid[p] = sid[order[p]]
        fuse[p] = suse[order[p]]
    return fid, fuse
