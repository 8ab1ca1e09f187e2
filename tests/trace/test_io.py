"""Trace files as users pass them: compressed by name (.gz, .zst), stdin/stdout (`-`), other
formats named by their magic, the header's counts (format 1.1), one validation for writer
and reader."""

import gzip
import io
import lzma
import subprocess
import sys
from pathlib import Path

import msgpack
import numpy as np
import pytest
from typer.testing import CliRunner

from gictools.cli import app
from gictools.errors import TraceFormatError
from gictools.trace import format as F
from gictools.trace.reader import TraceReader
from gictools.trace.writer import TraceWriter

runner = CliRunner()
T4 = Path("fixtures/trace-1.0/lpi-stress-v4-d4-e8-fixed.msgpack")  # written by format 1.0
VM = {"vcpus": 2, "itses": [{"base": 0x0800_0000}]}


def records(src):
    out = []
    for r in TraceReader(src):
        out.append(tuple(x.tolist() if isinstance(x, np.ndarray) else x for x in r))
    return out


@pytest.mark.parametrize("suffix, magic", [(".gz", b"\x1f\x8b"), (".zst", b"\x28\xb5\x2f\xfd")])
def test_gen_compresses_by_name(tmp_path, suffix, magic):
    plain, packed = tmp_path / "g.msgpack", tmp_path / f"g.msgpack{suffix}"
    for p in (plain, packed):
        r = runner.invoke(app, ["gen", "lpi-stress", "-e", "3", "-i", "70", "-o", str(p)])
        assert r.exit_code == 0, r.output
    assert packed.read_bytes()[:4].startswith(magic)
    assert packed.stat().st_size < plain.stat().st_size / 2
    assert records(packed) == records(plain)
    if suffix == ".gz":
        assert gzip.decompress(packed.read_bytes()) == plain.read_bytes()
    assert not [f for f in tmp_path.iterdir() if ".tmp-" in f.name]


def test_stdin_and_stdout(tmp_path):
    gen = [sys.executable, "-m", "gictools", "gen", "lpi-stress", "-e", "3", "-i", "5", "-o", "-"]
    p = subprocess.run(gen, capture_output=True, timeout=120)
    assert p.returncode == 0 and b"15 MSIs" in p.stderr
    plain = tmp_path / "g.msgpack"
    plain.write_bytes(p.stdout)
    assert records(plain)[-1][1] == 15
    info = [sys.executable, "-m", "gictools", "info", "--json", "-"]
    for data in (p.stdout, gzip.compress(p.stdout)):
        q = subprocess.run(info, input=data, capture_output=True, timeout=120)
        assert q.returncode == 0, q.stderr
        assert b'"trace": "<stdin>"' in q.stdout and b'"msis": 15' in q.stdout
    r = runner.invoke(app, ["info", "-", "-"])
    assert r.exit_code == 2 and "only once" in r.output


def test_other_formats_named_by_magic(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    cases = {
        "x.xz": (lzma.compress(T4.read_bytes()), "an xz-compressed file"),
        "t.txt": (b"MAPD 0 15\nMAPTI 0 0 8192\n", "a text file"),
        "e.msgpack": (b"", "an empty file"),
        "j.json": (b'{"format": "gictools-trace"}', "a text file (JSON?)"),
    }
    pq.write_table(pa.table({"a": [1]}), tmp_path / "p.parquet")
    for name, (data, _) in cases.items():
        (tmp_path / name).write_bytes(data)
    cases["p.parquet"] = (None, "a Parquet file")
    for name, (_, what) in cases.items():
        r = runner.invoke(app, ["info", str(tmp_path / name)])
        assert r.exit_code == 2
        assert f"not a gictools trace (looks like {what}" in r.output, r.output
    bad = gzip.compress(b"plain text inside gzip")
    with pytest.raises(TraceFormatError, match="not a gictools trace"):
        TraceReader(io.BytesIO(bad))


def test_counts_in_header_and_progress_totals(tmp_path):
    p = tmp_path / "t.msgpack.gz"
    with TraceWriter(p, vm=VM) as w:
        w.command(0, bytes(32))
        for i in range(5):
            w.msi(0, 1, i, t_ns=i)
        w.msi_block(0, np.arange(70_000), np.zeros(70_000, int), np.ones(70_000, int))
        w.ack(1, 8192)
    rd = TraceReader(p)
    assert rd.counts == {"records": 5, "msi_blocks": 3, "msis": 70_005}
    assert rd.events_total == 1 + 70_005 + 1
    n = sum(1 for _ in rd)
    assert n == 5 and rd.events_read == rd.events_total
    old = TraceReader(T4)  # format 1.0: no counts, progress counts without a total
    assert old.version == (1, 0) and old.counts is None and old.events_total is None
    for _ in old:
        pass
    assert old.events_read == 1 + 16 + 44 + 1600
    # the fixed-width counts are patched in place: a plain file is what msgpack sees
    q = tmp_path / "t.msgpack"
    with TraceWriter(q, vm=VM) as w:
        w.msi(0, 1, 2)
    hdr = next(iter(msgpack.Unpacker(io.BytesIO(q.read_bytes()), raw=False)))
    assert hdr["counts"] == {"records": 1, "msi_blocks": 1, "msis": 1}
    assert hdr["version"] == list(F.VERSION)


BAD = [  # (writer call, the same record as the file would hold, the field both name)
    (lambda w: w.msi(0, 1 << 32, 0), [0, 0, None, 0, 1 << 32, 0], "device_id"),
    (lambda w: w.msi(5, 0, 0), [0, 0, None, 5, 0, 0], "its"),
    (lambda w: w.msi(0, 0, 0, t_ns=1 << 63), [0, 1 << 63, None, 0, 0, 0], "t_ns"),
    (lambda w: w.command(0, b"short"), [2, 0, None, 0, b"short"], "raw"),
    (lambda w: w.reg("gicd", 0, 0, 4, 0, True), [3, 0, None, "gicd", 0, 0, 4, 0, True], "frame"),
    (
        lambda w: w.reg("redist", 2, 0, 4, 0, True),
        [3, 0, None, "redist", 2, 0, 4, 0, True],
        "index",
    ),
    (
        lambda w: w.reg("its", 0, 0, 4, 1 << 32, True),
        [3, 0, None, "its", 0, 0, 4, 1 << 32, True],
        "value",
    ),
    (lambda w: w.ctrl("explode", 0), [5, 0, None, "explode", 0, None], "op"),
    (lambda w: w.ctrl("reset", None), [5, 0, None, "reset", None, None], "its"),
    (
        lambda w: w.expect("pending", {"intid": 1, "vcpu": 9, "pending": True}),
        [6, 0, None, "pending", {"intid": 1, "vcpu": 9, "pending": True}],
        "args.vcpu",
    ),
    (lambda w: w.ack(2, 8192), [7, 0, None, 2, 8192], "vcpu"),
    (lambda w: w.mem(F.U64_MAX, b"ab"), [4, 0, None, F.U64_MAX, b"ab"], "data"),
]


@pytest.mark.parametrize("call, raw, field", BAD)
def test_writer_and_reader_share_one_validation(tmp_path, call, raw, field):
    """The writer refuses what the reader refuses, naming the same field: one validation."""
    p = tmp_path / "t.msgpack"
    with pytest.raises(F.FieldError) as ei, TraceWriter(p, vm=VM) as w:
        call(w)
    assert ei.value.field == field
    assert not p.exists()
    with TraceWriter(p, vm=VM) as w:
        pass
    p.write_bytes(p.read_bytes() + msgpack.packb(raw, use_bin_type=True))
    with pytest.raises(TraceFormatError) as ei:
        list(TraceReader(p))
    assert ei.value.field == field and ei.value.record == 1, str(ei.value)


# --- property: whatever the writer accepts the reader accepts, and both refuse the same field --
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_any = st.one_of(
    st.integers(-3, 3),
    st.integers(-(1 << 63), F.U64_MAX),  # what msgpack can encode
    st.sampled_from([1 << 63, (1 << 32) - 1, 1 << 32, F.U64_MAX]),
    st.none(),
    st.booleans(),
    st.sampled_from(["its", "redist", "its-user", "reset", "save_tables", "save_pending_tables"]),
    st.binary(max_size=40),
    st.just(bytes(32)),
)
_small = st.one_of(st.integers(0, 3), _any)
_args = st.dictionaries(
    st.sampled_from(["intid", "vcpu", "pending", "ret", "error", "priority", "enabled"]), _small
)
_RECORDS = {  # tag -> (writer call from the record's fields, field strategies)
    F.MSI: (lambda w, t, i, its, d, e: w.msi(its, d, e, t_ns=t, injector=i), [_small] * 3),
    F.COMMAND: (lambda w, t, i, its, raw: w.command(its, raw, t, i), [_small, _any]),
    F.REG: (
        lambda w, t, i, fr, ix, o, sz, v, wr: w.reg(fr, ix, o, sz, v, wr, t, i),
        [_any, _small, _small, st.sampled_from([4, 8, 2, True]), _any, _any],
    ),
    F.MEM: (lambda w, t, i, gpa, data: w.mem(gpa, data, t, i), [_any, _any]),
    F.CTRL: (lambda w, t, i, op, its, ret: w.ctrl(op, its, ret, t, i), [_any, _small, _any]),
    F.EXPECT: (
        lambda w, t, i, kind, args: w.expect(kind, args, t, i),
        [st.sampled_from(["pending", "msi", "lpi", "future", 5]), st.one_of(_args, _any)],
    ),
    F.ACK: (lambda w, t, i, v, intid: w.ack(v, intid, t, i), [_small, _any]),
}


@st.composite
def _record(draw):
    tag = draw(st.sampled_from(sorted(_RECORDS)))
    call, fields = _RECORDS[tag]
    t = draw(st.one_of(st.integers(0, 10), _any).filter(lambda v: v is not None))  # None: default
    inj = draw(st.one_of(st.none(), _small))
    return tag, call, [t, inj, *(draw(f) for f in fields)]


@pytest.fixture(scope="module")
def empty_trace(tmp_path_factory) -> bytes:
    """A trace with no records, as the writer makes it (written once for all examples)."""
    q = tmp_path_factory.mktemp("agree") / "r.msgpack"
    with TraceWriter(q, vm=VM):
        pass
    return q.read_bytes()


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rec=_record())
def test_writer_and_reader_agree_on_every_record(tmp_path, empty_trace, rec):
    tag, call, fields = rec
    p = tmp_path / "w.msgpack"
    try:
        with TraceWriter(p, vm=VM) as w:
            call(w, *fields)
        w_err = None
    except F.FieldError as e:
        w_err = e.field
    else:  # the counts the writer put in the header are the file's
        rd = TraceReader(p)
        recs = list(rd)
        assert rd.counts["records"] == len(recs) == 1
        assert rd.events_read == rd.events_total == 1
    q = io.BytesIO(empty_trace + msgpack.packb([tag, *fields], use_bin_type=True))
    try:
        list(TraceReader(q))
        r_err = None
    except TraceFormatError as e:
        r_err = e.field
    assert w_err == r_err, (fields, w_err, r_err)


@pytest.mark.parametrize("name", ["t.msgpack", "t.msgpack.gz", "t.msgpack.zst"])
def test_writer_errors_name_the_users_path_and_mode_follows_umask(tmp_path, name):
    import os

    from gictools.errors import OutputError

    with pytest.raises(OutputError) as ei:  # refused before anything is written
        TraceWriter(tmp_path / "missing" / name, vm=VM)
    assert ei.value.path == str(tmp_path / "missing" / name)
    old = os.umask(0o027)
    try:
        with TraceWriter(tmp_path / name, vm=VM) as w:
            w.ack(0, 8192)
    finally:
        os.umask(old)
    assert (tmp_path / name).stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == [name]
