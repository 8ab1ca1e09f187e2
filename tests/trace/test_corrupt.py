"""Hostile trace files: every problem is a TraceFormatError naming the record, offset, field."""

import gzip
import io
import struct

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import examples

from gictools.errors import TraceFormatError
from gictools.trace import format as F
from gictools.trace.reader import TraceReader
from gictools.trace.writer import TraceWriter

HDR = {
    "format": F.FORMAT_NAME,
    "version": [1, 0],
    "source": "test",
    "metadata": {},
    "vm": {"vcpus": 2, "itses": [{"base": 0x0808_0000}]},
}
RAW = bytes(32)
GOOD = [0, 1, None, 0, 5, 6]  # an MSI record


def pk(*objs):
    return b"".join(msgpack.packb(o, use_bin_type=True) for o in objs)


def read(data):
    """Reads a whole trace from bytes; returns the records (numpy columns as lists)."""
    out = []
    for r in TraceReader(io.BytesIO(data)):
        out.append(tuple(x.tolist() if isinstance(x, np.ndarray) else x for x in r))
    return out


def fails(data, *needles, record="any", field="any"):
    with pytest.raises(TraceFormatError) as ei:
        read(data)
    e = ei.value
    for n in needles:
        assert n in str(e), str(e)
    if record != "any":
        assert e.record == record, str(e)
    if field != "any":
        assert e.field == field, str(e)
    assert e.offset is not None, str(e)
    return e


def block(n, its=0, ts=None, dev=None, ev=None, inj=None):
    ts = np.arange(n, dtype="<u8").tobytes() if ts is None else ts
    dev = np.arange(n, dtype="<u4").tobytes() if dev is None else dev
    ev = np.zeros(n, dtype="<u4").tobytes() if ev is None else ev
    return [1, n, its, ts, dev, ev, inj]


def valid_trace(tmp_path):
    p = tmp_path / "v.msgpack"
    with TraceWriter(
        p, vm={"vcpus": 2, "itses": [{"base": 0}, {"base": 0x10000}]}, metadata={"m": [1, 2, 3]}
    ) as w:
        w.command(0, bytes(range(32)), t_ns=1)
        w.msi(0, 1, 2, injector=1)
        w.msi(0, 1, 3, injector=1)
        w.msi(1, 9, 9)
        w.reg("redist", 1, 0x70, 8, 0x1234, True)
        w.mem(0x1000, b"\xa3" * 40)
        w.ctrl("save_tables", 1, 0)
        w.expect("pending", {"intid": 8192, "vcpu": 1, "pending": True})
        w.ack(1, 8192)
        w.msi_block(1, np.arange(5), np.arange(5), np.arange(5), np.arange(5))
    return p.read_bytes()


# --- hand-built adversarial files ------------------------------------------------------------
def test_good_baseline():
    assert read(pk(HDR, GOOD, block(3))) == [
        tuple(GOOD[:1] + [1, None, 0, 5, 6]),
        (1, 3, 0, [0, 1, 2], [0, 1, 2], [0, 0, 0], None),
    ]


def test_truncated_mid_record_names_record_and_offset():
    head = pk(HDR, GOOD, GOOD)
    rec = pk([2, 7, None, 0, RAW])
    e = fails(head + rec[:-5], "truncated", "record 3", f"byte offset {len(head)}", record=3)
    assert e.offset == len(head)
    fails(head + rec[:1], "truncated", record=3)  # cut right after the array marker


def test_truncated_header_and_empty_file():
    fails(b"", "empty file")
    fails(pk(HDR)[:-3], "truncated in the header")


def test_unknown_tag():
    fails(pk(HDR, GOOD, [99, 0, None]), "unknown record tag 99", record=2, field="tag")
    fails(pk(HDR, ["x", 0, None]), "unknown record tag", record=1)
    fails(pk(HDR, [True, 0, None, 0, 1, 2]), "unknown record tag", record=1)


def test_record_not_an_array():
    fails(pk(HDR, {"k": 1}), "non-empty array", record=1)
    fails(pk(HDR, 5), "non-empty array", record=1)
    fails(pk(HDR, []), "non-empty array", record=1)


@pytest.mark.parametrize(
    "rec, field",
    [
        ([0, "1", None, 0, 5, 6], "t_ns"),
        ([0, -1, None, 0, 5, 6], "t_ns"),
        ([0, 1, "me", 0, 5, 6], "injector"),
        ([0, 1, None, 0, 1.5, 6], "device_id"),
        ([0, 1, None, 0, -5, 6], "device_id"),
        ([0, 1, None, 0, 5, 2**32], "event_id"),
        ([0, 1, None, None, 5, 6], "its"),
        ([0, 1, None, 0, 5], "event_id"),  # too short: names the missing one
        ([2, 1, None, 0, RAW[:31]], "raw"),
        ([2, 1, None, 0, "x" * 32], "raw"),
        ([3, 1, None, "gicd", 0, 0, 4, 0, True], "frame"),
        ([3, 1, None, "its", 0, 0, 3, 0, True], "size"),
        ([3, 1, None, "its", 0, 0, 4, 2**32, True], "value"),
        ([3, 1, None, "its", 0, 0, 4, None, True], "value"),
        ([3, 1, None, "its", 0, 0, 4, 0, 1], "is_write"),
        ([3, 1, None, "its", 0, -4, 4, 0, True], "offset"),
        ([4, 1, None, -1, b""], "gpa"),
        ([4, 1, None, 0, "text"], "data"),
        ([4, 1, None, 2**64 - 1, b"ab"], "data"),
        ([5, 1, None, "explode", 0, 0], "op"),
        ([5, 1, None, "reset", None, 0], "its"),
        ([5, 1, None, "reset", 0, "ok"], "ret"),
        ([6, 1, None, 5, {}], "kind"),
        ([6, 1, None, "pending", [1, 2]], "args"),
        ([6, 1, None, "pending", {"intid": 8192, "vcpu": 0}], "args.pending"),
        ([6, 1, None, "pending", {"intid": 8192, "vcpu": 0, "pending": 1}], "args.pending"),
        ([6, 1, None, "lpi", {"intid": 8192, "priority": 256}], "args.priority"),
        ([6, 1, None, "msi", {"ret": "0"}], "args.ret"),
        ([7, 1, None, 0, "8192"], "intid"),
        ([1, "3", 0, b"", b"", b"", None], "n"),
        ([1, 1, 0, [1], b"\0" * 4, b"\0" * 4, None], "ts"),
        ([1, 1, 0, b"\0" * 8, b"\0" * 4, b"\0" * 4, 7], "inj"),
    ],
)
def test_wrong_field_named(rec, field):
    e = fails(pk(HDR, GOOD, rec), record=2, field=field)
    assert f"field {field!r}" in str(e)


def test_unknown_expect_kind_parses():
    assert read(pk(HDR, [6, 1, None, "novel", {"x": 1}])) == [(6, 1, None, "novel", {"x": 1})]


def test_version_2_refused():
    fails(
        pk({**HDR, "version": [2, 0]}),
        "trace format version 2.x is not supported by this gictools (reads 1.x)",
        field="version",
    )
    fails(pk({**HDR, "version": "1.0"}), field="version")


@pytest.mark.parametrize(
    "hdr, needle",
    [
        ([1, 2, 3], "not a gictools trace (looks like binary data"),
        ("gictools-trace", "not a gictools trace (looks like binary data"),
        ({**HDR, "format": "other"}, "not a gictools trace"),
        ({k: v for k, v in HDR.items() if k != "format"}, "not a gictools trace"),
        ({k: v for k, v in HDR.items() if k != "vm"}, "missing"),
        ({**HDR, "vm": {"vcpus": 0, "itses": []}}, "vm.vcpus"),
        ({**HDR, "vm": {"vcpus": 2, "itses": {"base": 0}}}, "vm.itses"),
        ({**HDR, "metadata": [1]}, "metadata"),
        ({**HDR, "source": 5}, "source"),
    ],
)
def test_bad_header(hdr, needle):
    e = fails(pk(hdr, GOOD), needle, record=0)  # the header is record 0
    assert e.offset == 0


def test_msi_block_too_big():
    fails(pk(HDR, block(70000)), "MSI_BLOCK of 70000 events", record=1, field="n")
    fails(pk(HDR, block(0)), "MSI_BLOCK of 0 events", record=1, field="n")


def test_msi_block_column_length_mismatch():
    fails(
        pk(HDR, block(4, dev=b"\0" * 12)),
        "column of 12 bytes, expected 16 for n=4",
        record=1,
        field="dev",
    )
    fails(pk(HDR, block(4, inj=b"\0" * 20)), record=1, field="inj")
    fails(pk(HDR, block(4, ts=b"\0" * 31)), record=1, field="ts")


def test_msi_block_timestamp_too_big():
    ts = np.array([1, 2**63], dtype="<u8").tobytes()
    fails(pk(HDR, block(2, ts=ts)), "2^63", record=1, field="ts")


def test_its_index_out_of_range():
    fails(pk(HDR, [0, 1, None, 1, 5, 6]), "ITS index 1 out of range", record=1, field="its")
    fails(pk(HDR, block(2, its=3)), "ITS index 3", record=1, field="its")
    fails(pk(HDR, [2, 1, None, -1, RAW]), "ITS index -1", record=1, field="its")
    fails(pk(HDR, [3, 1, None, "its", 1, 0, 4, 0, True]), "ITS index 1", field="index")
    fails(pk(HDR, [5, 1, None, "save_tables", 2, 0]), "ITS index 2", field="its")


def test_vcpu_index_out_of_range():
    fails(pk(HDR, [3, 1, None, "redist", 2, 0, 4, 0, True]), "vCPU index 2", field="index")
    fails(pk(HDR, [7, 1, None, 2, 8192]), "vCPU index 2", field="vcpu")
    fails(
        pk(HDR, [6, 1, None, "pending", {"intid": 8192, "vcpu": 5, "pending": True}]),
        field="args.vcpu",
    )


def test_huge_declared_lengths():
    """Lengths beyond the reader's limits fail without allocating them."""
    head = pk(HDR, GOOD)
    for marker in (
        b"\xc6" + struct.pack(">I", 0xFFFF_FFF0),  # bin32
        b"\xdb" + struct.pack(">I", 0xFFFF_FFF0),  # str32
        b"\xdd" + struct.pack(">I", 0xFFFF_FFF0),  # array32
        b"\xdf" + struct.pack(">I", 0xFFFF_FFF0),
    ):  # map32
        e = fails(head + b"\x95\x02\x01\xc0\x00" + marker + b"abc", record=2)
        assert e.offset == len(head)
    fails(pk(HDR) + b"\xc6" + struct.pack(">I", (16 << 20) + 1) + b"x" * 100, record=1)


def test_deep_nesting():
    fails(pk(HDR) + b"\x91" * 100_000 + b"\x00", record=1)
    fails(b"\x81\xa1a" * 50_000 + b"\x00", record=0)  # nested maps in the header
    nested = 0
    for _ in range(F.MAX_DEPTH - 1):  # as deep as allowed: the metadata map, then the lists
        nested = [nested]
    x = TraceReader(io.BytesIO(pk({**HDR, "metadata": {"x": nested}}))).header["metadata"]["x"]
    depth = 0
    while isinstance(x, list):
        x, depth = x[0], depth + 1
    assert depth == F.MAX_DEPTH - 1 and x == 0
    e = fails(pk({**HDR, "metadata": {"x": [nested]}}), "nested deeper than", record=0)
    assert e.field == "metadata"


def test_garbage_and_reserved_bytes():
    fails(b"\xc1" * 10, record=0)  # 0xc1 is never used
    fails(pk(HDR, GOOD) + b"\xc1", record=2)
    fails(pk(HDR) + b"\xd4\x01\x00", record=1)  # ext types are refused
    fails(b"hello world, not msgpack", record=0)


def test_gzip_garbage():
    fails(b"\x1f\x8b" + b"\x00" * 30, "gzip", record=0)
    good = gzip.compress(pk(HDR, GOOD, GOOD, [2, 7, None, 0, RAW]))
    fails(good[:-12], "gzip", "truncated", record=3)  # the cut is inside the COMMAND
    flipped = bytearray(good)
    flipped[-6] ^= 0xFF  # the CRC/size trailer
    fails(bytes(flipped), "gzip")


def test_gzip_truncation_names_record():
    recs = [[2, i, None, 0, bytes([i % 256]) * 32] for i in range(2000)]
    data = pk(HDR, *recs)
    gz = gzip.compress(data, compresslevel=1)
    e = fails(gz[: len(gz) // 2], "truncated")
    assert 1 < e.record <= 2000 and e.offset == len(pk(HDR, *recs[: e.record - 1]))


# --- fuzz ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    return valid_trace(tmp_path_factory.mktemp("fuzz"))


def test_valid_trace_reads(valid):
    assert len(read(valid)) == 9  # the two MSIs on ITS 0 share a block


mutation = st.one_of(
    st.tuples(st.just("cut"), st.integers(0, 10_000), st.just(b"")),
    st.tuples(st.just("flip"), st.integers(0, 10_000), st.binary(min_size=1, max_size=1)),
    st.tuples(
        st.just("set"),
        st.integers(0, 10_000),
        st.sampled_from(
            [
                b"\x00",
                b"\xff",
                b"\xc1",
                b"\xc6",
                b"\xdd",
                b"\xdf",
                b"\x7f",
                b"\x80",
                b"\x90",
                b"\xc0",
                b"\xc2",
                b"\xcf",
                b"\xd3",
            ]
        ),
    ),
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, 10_000), st.binary(min_size=1, max_size=8)),
)


def mutate(data, muts):
    b = bytearray(data)
    for kind, pos, arg in muts:
        if not b:
            break
        pos %= len(b)
        if kind == "cut":
            del b[pos:]
        elif kind == "flip":
            b[pos] ^= arg[0] or 1
        elif kind == "set":
            b[pos] = arg[0]
        elif kind == "insert":
            b[pos:pos] = arg
        else:
            del b[pos : pos + len(arg)]
    return bytes(b)


@pytest.mark.slow
# a mutation costs ~1/3 of a typical property test's example and the mutation space is wide
@settings(max_examples=examples(10), suppress_health_check=[HealthCheck.too_slow])
@given(muts=st.lists(mutation, min_size=1, max_size=4), compress=st.booleans())
def test_fuzz_only_trace_format_errors(valid, muts, compress):
    data = mutate(gzip.compress(valid) if compress else valid, muts)
    try:
        read(data)
    except TraceFormatError as e:
        assert e.offset is not None
