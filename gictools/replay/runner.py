"""Replaying several traces into one output: open every trace first, then run them."""

import json
import os
from collections.abc import Sequence

from gictools.errors import ConfigError
from gictools.latency.model import LatencyModel
from gictools.latency.presets import DEFAULT_PRESET, load_preset
from gictools.outputs import check_output
from gictools.replay.replayer import Replayer, TraceSource
from gictools.replay.report import PolicyReport


def _as_list(traces) -> list:
    if isinstance(traces, (str, bytes, os.PathLike)):
        return [traces]
    return list(traces)


def open_replayers(
    traces,
    policies=("default",),
    kernel=None,
    preset=None,
    host_cpus=None,
    names=None,
    sha256s=None,
    *,
    seed=None,
) -> list[Replayer]:
    """One Replayer per trace, every header read and checked before any replay starts.
    names: what to call each trace in reports and metadata (default: its path).
    preset: a Preset (None: the default, fixed-v0) with host_cpus and seed, or the whole
    LatencyModel (then host_cpus and seed are its own)."""
    paths = _as_list(traces)
    if not paths:
        raise ConfigError("no trace given")
    names = list(names) if names else [None] * len(paths)
    shas = list(sha256s) if sha256s else [None] * len(paths)
    if isinstance(preset, LatencyModel):
        latency = preset
    else:
        latency = LatencyModel(preset or load_preset(DEFAULT_PRESET), host_cpus, seed)
    return [
        Replayer(t, policies, kernel, None, latency, source=TraceSource(n, h, i))
        for i, (t, n, h) in enumerate(zip(paths, names, shas, strict=True))
    ]


def _policy_names(replayers):
    names = []
    for rp in replayers:
        for r in rp.runs:
            if r.policy not in names:
                names.append(r.policy)
    return names


def _metadata(replayers, names):
    """The file's metadata: one trace's, or with several, its per-trace keys (vm, kernel,
    trace_sha256) as lists in trace order, each element what that trace's own file has
    (docs/replay-output.md)."""
    meta = dict(replayers[0].meta)
    meta["cache_policy"] = json.dumps(names)
    entries = [rp.trace_entry() for rp in replayers]
    meta["traces"] = json.dumps(entries)
    if len(replayers) > 1:
        meta["trace_sha256"] = json.dumps([e["sha256"] for e in entries])
        meta["vm"] = json.dumps([e["vm"] for e in entries])
        meta["kernel"] = json.dumps([e["kernel"] for e in entries])
    return meta


def run_replayers(
    replayers: Sequence[Replayer],
    out=None,
    progress=None,
    events=None,
    *,
    jobs: int = 1,
    policy_names: Sequence[str] | None = None,
    metadata: dict | None = None,
    columns: Sequence[str] | None = None,
) -> list[PolicyReport]:
    """Replay each trace in turn into one Parquet file (if out); reports trace-major.
    With jobs > 1, out and several policies: one process per policy (see _run_parallel).
    columns: the event columns to write (default all; a sweep leaves out its partition
    keys)."""
    if jobs > 1 and out is not None and len(replayers[0].policy_args) > 1:
        from gictools.replay.jobs import _run_parallel

        return _run_parallel(replayers, out, jobs, events)
    writer = None
    if out is not None:
        from gictools.stats.parquet import EventWriter

        names = list(policy_names) if policy_names else _policy_names(replayers)
        for rp in replayers:
            for r in rp.runs:
                r.index = names.index(r.policy)
        meta = metadata if metadata is not None else _metadata(replayers, names)
        writer = EventWriter(out, meta, names, [rp.trace for rp in replayers], columns=columns)
    reports = []
    done = 0
    try:
        for rp in replayers:
            rp.writer, rp._own_writer = writer, False
            cb = None if events is None else (lambda n, base=done: events(base + n))
            reports += rp.run(progress, cb)
            done += rp.seq
        if writer is not None:
            writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return reports


def replay(
    traces,
    policies=("default",),
    kernel=None,
    out=None,
    preset=None,
    host_cpus=None,
    progress=None,
    events=None,
    jobs: int = 1,
    *,
    seed: int | None = None,
    columns: Sequence[str] | None = None,
) -> list[PolicyReport]:
    """Replay each trace (a path or a list of paths) once per policy; returns the
    PolicyReports (failures inside), trace by trace. With out, one Parquet file for all;
    jobs > 1 replays the policies in that many processes. preset None: fixed-v0; seed
    None: lock-step, else a stochastic interleaving with that seed."""
    if out is not None:  # before any work: never overwrite a trace
        check_output(out, [traces] if isinstance(traces, (str, os.PathLike)) else list(traces))
    rps = open_replayers(traces, policies, kernel, preset, host_cpus, seed=seed)
    if columns is not None:
        return run_replayers(rps, out, progress, events, columns=columns)
    return run_replayers(rps, out, progress, events, jobs=jobs)
