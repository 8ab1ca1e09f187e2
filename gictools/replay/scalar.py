"""The per-event path: one MSI through vm.signal_msi, the reference the block path equals."""

from gictools.latency.fixed import FIXED_COST
from gictools.model.cache import Outcome
from gictools.stats.schema import CACHE_VALUES, OP_INDEX

_CACHE_COL = {name: i for i, name in enumerate(CACHE_VALUES)}
_OP_MSI = OP_INDEX["msi"]


def msi_scalar(run, its, its_i, t, dev, ev, inj, seq):
    """One MSI through vm.signal_msi (the per-event reference path)."""
    res = run.vm.signal_msi(its, dev, ev)
    rep = run.report
    rep.events += 1
    rep.msis += 1
    err = res.error
    if res.ret == 1:
        rep.delivered += 1
    outcome = Outcome.of_column(res.cache, err)
    rep.outcomes[outcome] += 1
    if err:
        rep.msi_errors[err] += 1
    run.last_msi = (res.ret, err, res.intid, res.vcpu)
    lat = FIXED_COST[outcome]
    rep.latency[lat] += 1
    sink = run.sink
    if sink is None:
        return
    vd, ve = res.victim if res.victim else (None, None)
    sink.row(
        {
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
            "injector": inj,
        }
    )
