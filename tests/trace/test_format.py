"""Trace format v1: round trips through TraceWriter/TraceReader, blocks, atomicity, gzip."""

import gzip
import io
import os

import msgpack
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gictools.errors import TraceFormatError
from gictools.trace import format as F
from gictools.trace.reader import TraceReader, count_records, read_header
from gictools.trace.writer import TraceWriter

VM = {
    "vcpus": 4,
    "kernel": "6.8",
    "memory": [[0x4000_0000, 0x1000_0000]],
    "itses": [{"base": 0x0808_0000}, {"base": 0x0809_0000}],
}
RAW = bytes(range(32))


def read_all(path):
    rd = TraceReader(path)
    return rd.header, list(rd)


def events(recs):
    """The MSI stream as (t, its, dev, ev, inj) tuples, blocks flattened, plus other records."""
    out = []
    for r in recs:
        if r[0] == F.MSI_BLOCK:
            _, n, its, ts, dev, ev, inj = r
            injl = inj.tolist() if inj is not None else [None] * n
            out += [
                ("msi", t, its, d, e, i)
                for t, d, e, i in zip(ts.tolist(), dev.tolist(), ev.tolist(), injl)
            ]
        elif r[0] == F.MSI:
            _, t, inj, its, d, e = r
            out.append(("msi", t, its, d, e, inj))
        else:
            out.append(r)
    return out


def test_round_trip_every_kind(tmp_path):
    p = tmp_path / "t.msgpack"
    with TraceWriter(p, vm=VM, source="unit", metadata={"k": [1, 2], "s": "x"}) as w:
        w.msi(1, 7, 9, t_ns=10, injector=3)
        w.command(0, RAW, t_ns=20, injector=1)
        w.reg("its", 1, 0x80, 8, 0xFFFF_FFFF_FFFF_FFFF, True, t_ns=30)
        w.reg("redist", 3, 0x70, 4, None, False)
        w.mem(0x4000_1000, b"\x00\xa3" * 100, t_ns=40)
        w.ctrl("save_tables", 1, ret=0)
        w.ctrl("restore_tables", 0, ret=-22)
        w.ctrl("reset", 0)
        w.ctrl("save_pending_tables", None, 0)
        w.expect("pending", {"intid": 8192, "vcpu": 2, "pending": False}, t_ns=50)
        w.expect("cmd_error", {"error": 0x010A04})
        w.expect("msi", {"ret": 1, "intid": 8193, "vcpu": 0})
        w.expect("ctrl", {"ret": 0})
        w.expect("lpi", {"intid": 8192, "priority": 0xA0, "enabled": True, "exists": True})
        w.expect("future-kind", {"anything": [1, {"x": "y"}]})
        w.ack(3, 8192, t_ns=60, injector=0)
    assert not [f for f in os.listdir(tmp_path) if ".tmp-" in f]
    h, recs = read_all(p)
    assert h["format"] == F.FORMAT_NAME and h["version"] == list(F.VERSION)
    assert h["source"] == "unit" and h["metadata"] == {"k": [1, 2], "s": "x"}
    vm = h["vm"]
    assert vm["vcpus"] == 4 and vm["vcpu_ids"] == [0, 1, 2, 3] and vm["kernel"] == "6.8"
    assert vm["memory"] == [[0x4000_0000, 0x1000_0000]]
    assert [i["base"] for i in vm["itses"]] == [0x0808_0000, 0x0809_0000]
    assert events(recs) == [
        ("msi", 10, 1, 7, 9, 3),
        (F.COMMAND, 20, 1, 0, RAW),
        (F.REG, 30, None, "its", 1, 0x80, 8, 0xFFFF_FFFF_FFFF_FFFF, True),
        (F.REG, 30, None, "redist", 3, 0x70, 4, None, False),
        (F.MEM, 40, None, 0x4000_1000, b"\x00\xa3" * 100),
        (F.CTRL, 40, None, "save_tables", 1, 0),
        (F.CTRL, 40, None, "restore_tables", 0, -22),
        (F.CTRL, 40, None, "reset", 0, None),
        (F.CTRL, 40, None, "save_pending_tables", None, 0),
        (F.EXPECT, 50, None, "pending", {"intid": 8192, "vcpu": 2, "pending": False}),
        (F.EXPECT, 50, None, "cmd_error", {"error": 0x010A04}),
        (F.EXPECT, 50, None, "msi", {"ret": 1, "intid": 8193, "vcpu": 0}),
        (F.EXPECT, 50, None, "ctrl", {"ret": 0}),
        (
            F.EXPECT,
            50,
            None,
            "lpi",
            {"intid": 8192, "priority": 0xA0, "enabled": True, "exists": True},
        ),
        (F.EXPECT, 50, None, "future-kind", {"anything": (1, {"x": "y"})}),
        (F.ACK, 60, 0, 3, 8192),
    ]
    assert type(recs[1][4]) is bytes
    assert read_header(p) == h
    c = count_records(p)
    assert c["MSI_BLOCK"] == 1 and c["events"] == 1 and c["EXPECT"] == 6


def test_record_index_and_offset(tmp_path):
    p = tmp_path / "t.msgpack"
    with TraceWriter(p, vm=VM) as w:
        for i in range(5):
            w.command(0, RAW, t_ns=i)
    data = p.read_bytes()
    rd = TraceReader(p)
    seen = []
    for rec in rd:
        seen.append((rd.record_index, rd.offset))
        assert msgpack.unpackb(data[rd.offset : rd.offset + 39], use_list=False)[1] == rec[1]
    assert [i for i, _ in seen] == list(range(1, 6))  # the header is record 0
    up = msgpack.Unpacker()
    up.feed(data)
    up.unpack()
    assert seen[0][1] == up.tell()  # record 1 follows the header


def test_single_msi_records_read(tmp_path):
    """Tag 0 (one MSI per record) is read even though TraceWriter batches into blocks."""
    p = tmp_path / "t.msgpack"
    hdr = {
        "format": F.FORMAT_NAME,
        "version": [1, 0],
        "vm": {"vcpus": 1, "itses": [{"base": 0}]},
        "source": "",
        "metadata": {},
    }
    p.write_bytes(
        msgpack.packb(hdr)
        + msgpack.packb([0, 5, None, 0, 0xFFFF_FFFF, 3])
        + msgpack.packb([0, 6, 2, 0, 1, 2, "a later minor's extra field"])
    )
    _, recs = read_all(p)
    assert recs == [(0, 5, None, 0, 0xFFFF_FFFF, 3), (0, 6, 2, 0, 1, 2)]


def test_minor_version_and_extra_keys_accepted(tmp_path):
    p = tmp_path / "t.msgpack"
    hdr = {
        "format": F.FORMAT_NAME,
        "version": [1, 7, "x"],
        "new": 1,
        "vm": {
            "vcpus": 2,
            "vcpu_ids": [5, 9],
            "itses": [{"base": 0, "gits_typer": 1}],
            "future": {"a": 1},
        },
        "source": "s",
        "metadata": {},
    }
    p.write_bytes(
        msgpack.packb(hdr)
        + msgpack.packb([7, 1, None, 1, 8192, "extra"])
        + msgpack.packb([2, 1, None, 0, RAW, 1, 2, 3])
    )
    h, recs = read_all(p)
    assert h["version"] == [1, 7] and h["vm"]["vcpu_ids"] == [5, 9]
    assert recs == [(F.ACK, 1, None, 1, 8192), (F.COMMAND, 1, None, 0, RAW)]


def test_msi_order_preserved_across_blocks(tmp_path):
    """msi() calls interleaved with other records, ITS and injector changes and >64k runs:
    the reconstructed stream is exactly the call stream."""
    rng = np.random.default_rng(1)
    p = tmp_path / "t.msgpack"
    expected = []
    t = 0
    with TraceWriter(p, vm=VM) as w:
        for _step in range(200):
            kind = rng.integers(0, 10)
            if kind == 0:
                t += 1
                w.command(int(rng.integers(0, 2)), RAW, t_ns=t)
                expected.append(("cmd", t))
            elif kind == 1:
                w.ack(0, 8192)
                expected.append(("ack", t))
            else:
                its = int(rng.integers(0, 2))
                inj = None if rng.integers(0, 3) == 0 else int(rng.integers(0, 4))
                for _ in range(int(rng.integers(1, 50))):
                    t += 1
                    d, e = int(rng.integers(0, 2**32)), int(rng.integers(0, 100))
                    w.msi(its, d, e, t_ns=t, injector=inj)
                    expected.append(("msi", t, its, d, e, inj))
        for i in range(F.MAX_BLOCK + 10):  # one long run: split at MAX_BLOCK
            w.msi(0, i, i & 7, injector=1)
            expected.append(("msi", t, 0, i, i & 7, 1))
    _, recs = read_all(p)
    got = []
    for r in events(recs):
        if r[0] == "msi":
            got.append(r)
        else:
            got.append(("cmd" if r[0] == F.COMMAND else "ack", r[1]))
    assert got == expected
    blocks = [r for r in recs if r[0] == F.MSI_BLOCK]
    assert max(r[1] for r in blocks) == F.MAX_BLOCK
    for r in blocks:  # injector presence is uniform per block
        assert r[6] is None or len(r[6]) == r[1]


def test_msi_block_splits_and_accepts_sequences(tmp_path):
    n = 2 * F.MAX_BLOCK + 5
    ts = np.arange(n, dtype=np.uint64) * 3
    dev = (np.arange(n) % 1000).astype(np.int64)  # converted to u32
    ev = np.arange(n, dtype=np.uint32)
    p = tmp_path / "t.msgpack"
    with TraceWriter(p, vm=VM) as w:
        w.msi_block(1, ts, dev, ev)
        w.msi_block(0, [1, 2], [3, 4], [5, 6], inj=[7, 8])
        w.msi_block(0, [], [], [])  # nothing written
        w.command(0, RAW)  # t_ns defaults to last ts
    _, recs = read_all(p)
    assert [r[1] for r in recs[:3]] == [F.MAX_BLOCK, F.MAX_BLOCK, 5]
    assert np.array_equal(np.concatenate([r[3] for r in recs[:3]]), ts)
    assert np.array_equal(np.concatenate([r[4] for r in recs[:3]]), dev)
    assert np.array_equal(np.concatenate([r[5] for r in recs[:3]]), ev)
    assert all(r[6] is None for r in recs[:3])
    r = recs[3]
    assert r[1] == 2 and r[3].dtype == np.dtype("<u8") and r[4].dtype == np.dtype("<u4")
    assert r[3].tolist() == [1, 2] and r[6].tolist() == [7, 8]
    assert recs[4] == (F.COMMAND, 2, None, 0, RAW)
    assert len(recs) == 5


@given(
    st.lists(
        st.tuples(
            st.integers(0, 1),
            st.integers(0, 2**32 - 1),
            st.integers(0, 2**32 - 1),
            st.integers(0, 2**63 - 1),
            st.none() | st.integers(0, 2**32 - 1),
        ),
        max_size=60,
    )
)
def test_msi_property(tmp_path_factory, msis):
    p = tmp_path_factory.mktemp("h") / "t.msgpack"
    with TraceWriter(p, vm=VM) as w:
        for its, d, e, t, inj in msis:
            w.msi(its, d, e, t_ns=t, injector=inj)
    _, recs = read_all(p)
    assert events(recs) == [("msi", t, its, d, e, inj) for its, d, e, t, inj in msis]


def test_atomic_write(tmp_path):
    p = tmp_path / "t.msgpack"
    with pytest.raises(RuntimeError, match="boom"), TraceWriter(p, vm=VM) as w:
        w.msi(0, 1, 2)
        w.command(0, RAW)
        raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
    p.write_bytes(b"old")  # an existing file survives a failed write
    with pytest.raises(ValueError), TraceWriter(p, vm=VM) as w:
        w.command(0, RAW[:31])
    assert p.read_bytes() == b"old" and os.listdir(tmp_path) == ["t.msgpack"]
    w = TraceWriter(p, vm=VM)
    w.ack(0, 8192)
    assert p.read_bytes() == b"old"  # nothing at path before close()
    w.close()
    w.close()
    assert read_all(p)[1] == [(F.ACK, 0, None, 0, 8192)]


def test_gzip(tmp_path):
    p = tmp_path / "t.msgpack"
    with TraceWriter(p, vm=VM) as w:
        w.msi_block(0, np.arange(1000), np.arange(1000), np.arange(1000))
        w.command(1, RAW, t_ns=5)
    raw = p.read_bytes()
    gz = tmp_path / "t.msgpack.gz"
    gz.write_bytes(gzip.compress(raw))
    h1, r1 = read_all(p)
    h2, r2 = read_all(gz)
    assert h1 == h2 and events(r1) == events(r2)
    rd = TraceReader(io.BytesIO(gzip.compress(raw)))  # file objects too
    assert events(list(rd)) == events(r1)
    bad = tmp_path / "cut.gz"
    bad.write_bytes(gzip.compress(raw)[:-20])
    with pytest.raises(TraceFormatError, match="record"):
        read_all(bad)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda w: w.command(0, RAW[:31]), "31 bytes"),
        (lambda w: w.command(2, RAW), "ITS index 2"),
        (lambda w: w.msi(5, 1, 1), "ITS index 5"),
        (lambda w: w.msi(0, -1, 1), "device_id"),
        (lambda w: w.msi(0, 1, 2**32), "event_id"),
        (lambda w: w.msi(0, 1, 1, t_ns=-1), "t_ns"),
        (lambda w: w.msi_block(0, [1], [1, 2], [1]), "lengths"),
        (lambda w: w.msi_block(0, [2**63], [1], [1]), "ts"),
        (lambda w: w.msi_block(0, [1], [-1], [1]), "dev"),
        (lambda w: w.reg("gicd", 0, 0, 4, 0, True), "frame"),
        (lambda w: w.reg("redist", 4, 0, 4, 0, True), "vCPU index 4"),
        (lambda w: w.reg("its", 0, 0, 2, 0, True), "size"),
        (lambda w: w.reg("its", 0, 0, 4, 2**32, True), "value"),
        (lambda w: w.reg("its", 0, 0, 4, None, True), "value"),
        (lambda w: w.mem(-1, b""), "gpa"),
        (lambda w: w.mem(0, "str"), "data"),
        (lambda w: w.ctrl("explode", 0), "unknown operation"),
        (lambda w: w.ctrl("reset"), "needs an ITS"),
        (lambda w: w.expect("pending", {"intid": 8192, "vcpu": 0}), "pending"),
        (lambda w: w.expect("pending", {"intid": 8192, "vcpu": 9, "pending": True}), "vcpu"),
        (lambda w: w.ack(4, 8192), "vCPU index 4"),
    ],
)
def test_writer_rejects_bad_arguments(tmp_path, call, match):
    with TraceWriter(tmp_path / "t", vm=VM) as w, pytest.raises(ValueError, match=match):
        call(w)


@pytest.mark.parametrize(
    "vm, match",
    [
        ({"itses": []}, "vm.vcpus"),
        ({"vcpus": 0}, "vm.vcpus"),
        ({"vcpus": 5000}, "vm.vcpus"),
        ({"vcpus": 2, "vcpu_ids": [1]}, "vcpu_ids"),
        ({"vcpus": 2, "vcpu_ids": [1, 1]}, "duplicate"),
        ({"vcpus": 1, "itses": [{}]}, "base"),
        ({"vcpus": 1, "memory": [[0]]}, "memory"),
        ("nope", "vm"),
    ],
)
def test_writer_rejects_bad_vm(tmp_path, vm, match):
    with pytest.raises(ValueError, match=match):
        TraceWriter(tmp_path / "t", vm=vm)
    assert os.listdir(tmp_path) == []
