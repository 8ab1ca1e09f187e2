"""The block path: a run of MSIs between two commands through the model as columns."""

import numpy as np

from gictools.model.block import OUTCOME_TO_COLUMN, inject_block
from gictools.model.cache import N_OUTCOMES
from gictools.model.cache.keys import translation_keys
from gictools.replay.scalar import msi_scalar
from gictools.stats.schema import OP_INDEX

SCALAR_MAX = 32  # MSI blocks shorter than this go event by event (vm.signal_msi)
_OP_MSI = OP_INDEX["msi"]


def _ret_of(error):
    return 1 if error == 0 else (0 if error > 0 else error)


def msi_record(rp, rec, ri):
    _, t, inj, its_i, dev, ev = rec
    seq = rp.seq
    for run in rp.runs:
        msi_scalar(run, rp.its(run, its_i, ri), its_i, t, dev, ev, inj, seq)
    rp.seq += 1


def msi_block_record(rp, rec, ri):
    _, n, its_i, ts, dev, ev, inj = rec
    if n < SCALAR_MAX:
        tl, dl, el = ts.tolist(), dev.tolist(), ev.tolist()
        il = [None] * n if inj is None else inj.tolist()
        for run in rp.runs:
            its = rp.its(run, its_i, ri)
            for i in range(n):
                msi_scalar(run, its, its_i, tl[i], dl[i], el[i], il[i], rp.seq + i)
        rp.seq += n
        return
    seq = np.arange(rp.seq, rp.seq + n, dtype=np.int64)
    t_ns = ts.astype(np.int64)
    for run in rp.runs:
        msi_block_run(run, rp.its(run, its_i, ri), its_i, seq, t_ns, dev, ev, inj)
    rp.seq += n


def msi_block_run(run, its, its_i, seq, t_ns, dev, ev, inj):
    n = len(seq)
    r = inject_block(run.vm, its, dev, ev)
    if r is None:
        for i in range(n):  # a cache entry the slow path disagrees with: per event
            msi_scalar(
                run,
                its,
                its_i,
                int(t_ns[i]),
                int(dev[i]),
                int(ev[i]),
                None if inj is None else int(inj[i]),
                int(seq[i]),
            )
        return
    counts = _count(run, r, n)
    sink = run.sink
    sim = lat = wait = None
    if sink.deferred:  # the window's simulation gives the latencies
        injectors = inj if inj is not None else np.zeros(n, dtype=np.uint32)
        keys = translation_keys(dev, ev)
        sim = (injectors, r.outcome, np.maximum(r.vcpu, 0), np.full(n, its_i, np.int64), keys)
    else:
        lat = run.costs_ns[r.outcome]
        wait = np.zeros(n, dtype=np.int64)
        run.report.add_priced(r.outcome, counts[:N_OUTCOMES], run.costs_ns, inj, lat)
        if not sink.keep:
            return
    cols, masks = _columns(r, n, (seq, t_ns, its_i, dev, ev, inj))
    cols["latency_ns"], cols["wait_ns"] = lat, wait
    sink.block(cols, masks, n, sim)


def _count(run, r, n):
    """The block's outcomes, deliveries and errors into the report; the last MSI kept for
    expectations. Returns the count per outcome code."""
    rep = run.report
    counts = np.bincount(r.outcome, minlength=N_OUTCOMES)
    rep.outcomes += counts[:N_OUTCOMES]
    rep.events += n
    rep.msis += n
    ok = r.error == 0
    rep.delivered += int(ok.sum())
    if not ok.all():
        codes, cnt = np.unique(r.error[~ok], return_counts=True)
        for c, k in zip(codes.tolist(), cnt.tolist()):
            rep.msi_errors[c] += k
    last = n - 1
    e = int(r.error[last])
    run.last_msi = (
        _ret_of(e),
        e,
        None if r.intid[last] < 0 else int(r.intid[last]),
        None if r.vcpu[last] < 0 else int(r.vcpu[last]),
    )
    return counts


def _columns(r, n, given):
    """The block's output columns (latency_ns left to the caller) and their null masks."""
    seq, t_ns, its_i, dev, ev, inj = given
    nv = len(r.victim_index)
    if nv:
        vmask = np.ones(n, dtype=bool)
        vmask[r.victim_index] = False
        vdev = np.zeros(n, dtype=np.uint32)
        vev = np.zeros(n, dtype=np.uint32)
        vdev[r.victim_index] = r.victim_device
        vev[r.victim_index] = r.victim_event
    else:  # constant within the block: null
        vmask = vdev = vev = None
    no_intid = r.intid < 0
    no_vcpu = r.vcpu < 0
    cols = {
        "seq": seq,
        "t_ns": t_ns,
        "op": _OP_MSI,
        "its": its_i,
        "device_id": dev,
        "event_id": ev,
        "intid": r.intid,
        "vcpu": r.vcpu,
        "error": r.error,
        "cache": OUTCOME_TO_COLUMN[r.outcome],
        "victim_device_id": vdev,
        "victim_event_id": vev,
        "cache_entries": r.entries,
        "latency_ns": None,
        "wait_ns": None,
        "injector": inj,
    }
    masks = {
        "intid": no_intid if no_intid.any() else None,
        "vcpu": no_vcpu if no_vcpu.any() else None,
        "victim_device_id": vmask,
        "victim_event_id": vmask,
    }
    if masks["intid"] is not None:
        cols["intid"] = np.maximum(r.intid, 0)
    if masks["vcpu"] is not None:
        cols["vcpu"] = np.maximum(r.vcpu, 0)
    return cols, masks
