"""`-` as stdin/stdout on replay and save, progress hooks of save/restore, default --jobs."""

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gictools.cli import default_jobs
from gictools.image import image_chunks, save_image, stream_vm
from gictools.saverestore import save_trace
from gictools.trace.reader import TraceReader

TRACE = Path(__file__).resolve().parents[2] / "traces" / "lpi-stress-v4-d4-e8-fixed.msgpack"


def _run(args, stdin=None):
    return subprocess.run(
        [sys.executable, "-m", "gictools", *args],
        input=stdin,
        capture_output=True,
        timeout=120,  # guards a hang only
    )


def test_replay_reads_stdin_and_names_it(tmp_path):
    out = tmp_path / "s.parquet"
    r = _run(["replay", "-", "-o", str(out), "-c", "lru-v6.8"], TRACE.read_bytes())
    assert r.returncode == 0, r.stderr
    ref = tmp_path / "f.parquet"
    assert _run(["replay", str(TRACE), "-o", str(ref), "-c", "lru-v6.8"]).returncode == 0
    a, b = pq.read_table(out), pq.read_table(ref)
    meta = a.schema.metadata
    assert meta[b"trace_sha256"].decode() == hashlib.sha256(TRACE.read_bytes()).hexdigest()
    assert b'"name": "<stdin>"' in meta[b"traces"]
    assert a.column("trace").to_pylist()[0] == "<stdin>"
    cols = [c for c in a.column_names if c != "trace"]
    assert a.select(cols).equals(b.select(cols))


def test_replay_to_stdout_summary_on_stderr(tmp_path):
    r = _run(["replay", "-", "-o", "-", "-c", "none", "-c", "lru-v6.8"], TRACE.read_bytes())
    assert r.returncode == 0, r.stderr
    t = pq.read_table(io.BytesIO(r.stdout))
    assert set(t.column("cache_policy").to_pylist()) == {"none", "lru-v6.8"}
    assert b"wrote stdout" in r.stderr and b"hit rate" in r.stderr


def test_replay_failure_writes_nothing_to_stdout():
    r = _run(["replay", "-", "-o", "-"], b"not a trace at all")
    assert r.returncode == 2 and r.stdout == b""
    assert b"<stdin>" in r.stderr


def test_save_stdin_to_stdout_equals_files(tmp_path):
    r = _run(["save", "-", "-o", "-"], TRACE.read_bytes())
    assert r.returncode == 0, r.stderr
    img = tmp_path / "f.img"
    f = _run(["save", str(TRACE), "-o", str(img)])
    assert f.returncode == 0 and f.stderr == b""  # piped: no progress bar
    assert r.stdout == img.read_bytes()
    assert b"wrote stdout" in r.stderr
    assert _run(["save", "-", "-o", "-", "--at-saves"], TRACE.read_bytes()).returncode == 2


def test_restore_prints_nothing_on_stderr_when_piped(tmp_path):
    img = tmp_path / "f.img"
    assert _run(["save", str(TRACE), "-o", str(img)]).returncode == 0
    r = _run(["restore", str(img)])
    assert r.returncode == 0 and r.stderr == b"" and b"ITS 0" in r.stdout


def test_save_and_restore_hooks_report_every_byte(tmp_path):
    calls = []
    out = tmp_path / "a.img"
    save_trace(TRACE, out, progress=lambda *a: calls.append(a))
    stages = [c[0] for c in calls]
    assert stages[0] == "replay" and stages[-1] == "write"
    assert stages == sorted(stages, key=["replay", "write"].index)  # one stage after another
    replay = [c for c in calls if c[0] == "replay"]
    with TraceReader(TRACE) as rd:
        for _ in rd:
            pass
    assert replay[-1][1] == rd.events_read > 0  # every event counted
    write = [c[1:] for c in calls if c[0] == "write"]
    assert [d for d, _ in write] == sorted(d for d, _ in write)
    assert write[-1] == (out.stat().st_size, out.stat().st_size)

    seen = []
    vm, _ = stream_vm(out, out, progress=lambda d, t: seen.append((d, t)))
    assert seen and seen[-1] == (out.stat().st_size,) * 2
    assert all(0 <= d <= t for d, t in seen)
    steps = []
    again = tmp_path / "b.img"
    n = save_image(vm, again, progress=lambda d, t: steps.append((d, t)))
    assert steps[-1] == (n, n)
    assert b"".join(image_chunks(vm)) == again.read_bytes()


@pytest.mark.parametrize(
    "policies, with_out, want",
    [(0, True, 1), (1, True, 1), (4, False, 1), (2, True, 2), (64, True, None)],
)
def test_default_jobs(policies, with_out, want):
    cpus = len(os.sched_getaffinity(0))
    assert default_jobs(policies, with_out) == (want or min(policies, cpus))


def test_import_qemu_hook_counts_the_compressed_log_to_its_end():
    from gictools.trace.qemu import convert

    fix = Path(__file__).resolve().parents[2] / "fixtures" / "qemu"
    log = fix / "smp2-traffic-affinity.trace.log.gz"
    seen = []
    _, _, recs = convert(log, progress=lambda d, t: seen.append((d, t)))
    size = log.stat().st_size
    assert seen[-1] == (size, size)  # on-disk bytes: the bar ends where the file does
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert recs == convert(log)[2]  # the hook changes nothing


def test_import_qemu_prints_nothing_on_stderr_when_piped(tmp_path):
    fix = Path(__file__).resolve().parents[2] / "fixtures" / "qemu"
    out = tmp_path / "q.msgpack"
    r = _run(["import", "qemu", str(fix / "smp2-rebind.trace.log.gz"), "-o", str(out)])
    assert r.returncode == 0 and r.stderr == b"" and out.exists()
