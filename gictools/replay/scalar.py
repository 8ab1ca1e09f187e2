"""The per-event path: one MSI through vm.signal_msi, the reference the block path equals."""

from gictools.model.cache.keys import translation_key
from gictools.stats.schema import CACHE_VALUES, OP_INDEX

_CACHE_COL = {name: i for i, name in enumerate(CACHE_VALUES)}
_OP_MSI = OP_INDEX["msi"]


def msi_scalar(run, its, its_i, t, dev, ev, inj, seq):
    """One MSI through vm.signal_msi (the per-event reference path); its latency from the
    replay's latency model and the lookup's real outcome (res.outcome)."""
    res = run.vm.signal_msi(its, dev, ev)
    rep = run.report
    rep.events += 1
    rep.msis += 1
    err = res.error
    if res.ret == 1:
        rep.delivered += 1
    outcome = int(res.outcome)
    rep.outcomes[outcome] += 1
    if err:
        rep.msi_errors[err] += 1
    run.last_msi = (res.ret, err, res.intid, res.vcpu)
    sink = run.sink
    if sink.deferred:
        lat = wait = None  # the window's simulation gives them
    else:
        lat, wait = run.costs[outcome], 0
        rep.add_one(lat, 0 if inj is None else inj, outcome)
        if not sink.keep:
            return
    vd, ve = res.victim if res.victim else (None, None)
    row = {
        "seq": seq,
        "t_ns": t,
        "op": _OP_MSI,
        "its": its_i,
        "device_id": dev,
        "event_id": ev,
        "intid": res.intid,
        "vcpu": res.vcpu,
        "error": err,
        "cache": _CACHE_COL[res.cache],
        "victim_device_id": vd,
        "victim_event_id": ve,
        "cache_entries": len(its.cache),
        "latency_ns": lat,
        "wait_ns": wait,
        "injector": inj,
    }
    if lat is not None:
        sink.row(row)
    else:
        vcpu = 0 if res.vcpu is None else res.vcpu
        sink.msi_row(row, (inj or 0, outcome, vcpu, its_i, translation_key(dev, ev)))
