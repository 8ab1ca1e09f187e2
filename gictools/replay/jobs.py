"""replay --jobs: the policies of one replay in parallel processes, joined into one file.

One fresh process per group of policies, each writing a part file, run by
gictools.supervise (forked: the workers inherit the compiled kernels): a worker that dies
is one line naming its policies and the cause, the others are stopped and every temporary
file removed; SIGTERM/SIGINT/SIGHUP stop them all within a second.
"""

import os
import threading

from gictools.replay.runner import _metadata, _policy_names, open_replayers, run_replayers

_UNHASHED = "0" * 64  # a --jobs worker's stand-in: its parent hashes the trace meanwhile


def _replay_part(traces, policies, kernel, preset, host_cpus, part, names, trace_names):
    from gictools.supervise import report_progress

    shas = [_UNHASHED] * len(traces)
    rps = open_replayers(traces, policies, kernel, preset, host_cpus, trace_names, shas)
    # events replayed so far over all the traces, as the serial path counts them
    return run_replayers(rps, part, events=report_progress, policy_names=names)


def _hash_quietly(replayers):
    try:
        for rp in replayers:
            _ = rp.sha256  # computed once, kept on rp
    except Exception:
        pass  # not this thread's to report (a thread's exception prints a traceback)


def _events_of(groups, policies, events):
    """on_progress for the workers' counts: events(n) as the serial path calls it. Every
    group replays every event, so n weighs each group's count by its share of the
    policies: the traces' events when all are done, as one process reports them."""

    def told(counts):
        events(sum(c * len(g) for c, g in zip(counts, groups)) // policies)

    return told


def _run_parallel(replayers, out, jobs, events=None):
    """Policies are independent replays of the same stream: they are dealt round-robin into
    `jobs` groups, each replayed in one pass (one decode) by a fresh process that writes a
    part file; the parts' row groups are then joined into out without re-encoding
    (gictools.stats.splice). Same rows per policy as one process; events(n) as the serial
    path calls it (the workers report their counts through gictools.supervise)."""
    import tempfile
    from contextlib import ExitStack

    from gictools.outputs import atomic_path, check_output, scratch_path, user_error
    from gictools.stats.parquet import empty_file
    from gictools.stats.splice import splice
    from gictools.supervise import FORK, run_all

    for rp in replayers:  # the workers open the traces again
        rp.close()
    rp0 = replayers[0]
    names = _policy_names(replayers)
    traces = [rp.path for rp in replayers]
    trace_names = [rp.trace for rp in replayers]
    out = os.fspath(out)
    kind = check_output(out, traces)
    # parts beside the output (same filesystem, swept like every temporary file), or in the
    # temporary directory when the output is a stream
    d = os.path.dirname(os.path.abspath(out)) if kind == "file" else tempfile.gettempdir()
    pols = list(rp0.policy_args)
    k = min(jobs, len(pols))
    groups = [list(range(g, len(pols), k)) for g in range(k)]  # policy indices per process
    with ExitStack() as stack:
        name = os.path.basename(out)
        parts = [stack.enter_context(scratch_path(d, f"{name}.part{i}")) for i in range(k)]
        tasks = [
            (traces, [pols[i] for i in g], rp0.kernel, rp0.latency, None, part)
            + (names, trace_names)
            for g, part in zip(groups, parts)
        ]
        # the workers write stand-in hashes; the file gets the metadata a one-process run
        # writes (pyarrow's own encoding of it, ARROW:schema included)
        hashing = threading.Thread(target=_hash_quietly, args=(replayers,))
        try:
            per_group = run_all(
                _replay_part,
                tasks,
                names=[f"replay of policy {', '.join(map(str, t[1]))}" for t in tasks],
                jobs=k,
                start=FORK,  # from this thread alone: no lock is inherited held
                temp_dirs=[d],  # the temporary files of a worker that died
                meanwhile=hashing.start,  # no fork after it starts
                on_progress=None if events is None else _events_of(groups, len(pols), events),
            )
        except OSError as e:  # a full disk names the output, not a part
            raise user_error(e, dict.fromkeys(parts, out)) from None
        hashing.join()  # a failure is raised below, here, as rp.sha256 hashes again
        with atomic_path(out, inputs=traces) as tmp:
            splice(parts, tmp, footer_of=empty_file(_metadata(replayers, names)))
    where = {i: (g, j) for g, idx in enumerate(groups) for j, i in enumerate(idx)}
    reports = []
    for t, rp in enumerate(replayers):  # trace-major, policies in the order asked
        mine = []
        for i in range(len(pols)):
            g, j = where[i]
            mine.append(per_group[g][t * len(groups[g]) + j])
            mine[-1].trace_sha256 = rp.sha256
        rp.seq = mine[0].events
        reports += mine
    return reports
