"""Joining Parquet parts by rewriting footers (gictools.stats.splice): only offsets move,
every other footer byte is carried over, a moved part with page indexes is refused, parts
are written without page indexes, and a joined file is read back: every column chunk must
lie inside it at a page header. The reference decoder below is the test's own (plain
Thrift compact protocol), sharing no code with splice.py, which only walks footers."""

from array import array

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import gictools.stats.parquet as P
from gictools.stats import splice as S

_BOOL_TRUE, _BOOL_FALSE, _STRUCT, _LIST, _BINARY, _DOUBLE, _BYTE, _MAP = 1, 2, 12, 9, 8, 7, 3, 11


class Decoder:
    """Thrift compact protocol -> [[field id, type, value], ...] (values: ints, bytes,
    (element type, [items]) for lists, nested field lists for structs)."""

    def __init__(self, b, i=0):
        self.b, self.i = b, i

    def varint(self):
        out = shift = 0
        while True:
            c = self.b[self.i]
            self.i += 1
            out |= (c & 0x7F) << shift
            shift += 7
            if c < 0x80:
                return out

    def int(self):
        v = self.varint()
        return (v >> 1) ^ -(v & 1)

    def value(self, t):
        if t in (_BOOL_TRUE, _BOOL_FALSE):
            return t == _BOOL_TRUE
        if t == _BYTE:
            self.i += 1
            return self.b[self.i - 1]
        if t == _DOUBLE:
            self.i += 8
            return bytes(self.b[self.i - 8 : self.i])
        if t == _BINARY:
            n = self.varint()
            self.i += n
            return bytes(self.b[self.i - n : self.i])
        if t == _STRUCT:
            return self.struct()
        if t in (_LIST, 10):
            h = self.b[self.i]
            self.i += 1
            n, et = h >> 4, h & 0x0F
            if n == 15:
                n = self.varint()
            if et in (_BOOL_TRUE, _BOOL_FALSE):
                self.i += n
                return (et, list(self.b[self.i - n : self.i]))
            return (et, [self.value(et) for _ in range(n)])
        if t == _MAP:
            n = self.varint()
            if not n:
                return (0, [])
            kv = self.b[self.i]
            self.i += 1
            return (kv, [(self.value(kv >> 4), self.value(kv & 0x0F)) for _ in range(n)])
        return self.int()  # i16, i32, i64

    def struct(self):
        fields, last = [], 0
        while True:
            h = self.b[self.i]
            self.i += 1
            if h == 0:
                return fields
            t, d = h & 0x0F, h >> 4
            fid = last + d if d else self.int()
            fields.append([fid, t, self.value(t)])
            last = fid


def field(fields, fid):
    return next((f[2] for f in fields if f[0] == fid), None)


def footer(path):
    data = path.read_bytes()
    n = int.from_bytes(data[-8:-4], "little")
    return Decoder(data, len(data) - 8 - n).struct(), len(data) - 8 - n


def _table(n=3000):
    return pa.table(
        {
            "a": pa.array(np.arange(n, dtype=np.int64)),
            "s": pa.array(["x", None, "yy"] * (n // 3)).dictionary_encode(),
            "f": pa.array(np.linspace(0, 1, n)),
            "b": pa.array([True, False, None] * (n // 3)),
        }
    ).replace_schema_metadata({"k": "v" * 40})


def test_skip_struct_steps_over_exactly_one_footer(tmp_path):
    p = tmp_path / "f.parquet"
    pq.write_table(_table(), p, row_group_size=700, write_page_index=True)
    buf, end = S._footer_bytes(p)
    r = S._Reader(buf)
    r.skip_struct()
    assert r.i == len(buf)
    fields, _ = S._top_fields(buf)
    start, n, stop = next(f[2] for f in fields if f[0] == S._ROW_GROUPS)
    ref = Decoder(buf, start)
    groups = [ref.struct() for _ in range(n)]
    assert n == 5 and ref.i == stop and len(groups) == 5
    assert field(fields, S._FMD_NUM_ROWS) == 3000


def test_row_group_rewrite_moves_exactly_the_offsets(tmp_path):
    """_rewrite against the reference: decode, add delta to every absolute offset the spec
    has, renumber the ordinal; everything else equal."""
    p = tmp_path / "f.parquet"
    t = pa.table({"a": pa.array(np.arange(2000)), "s": pa.array(["q", None] * 1000)})
    pq.write_table(t, p, row_group_size=600)
    buf, _ = S._footer_bytes(p)
    fields, _ = S._top_fields(buf)
    start, n, _ = next(f[2] for f in fields if f[0] == S._ROW_GROUPS)
    r, ref = S._Reader(buf), Decoder(buf, start)
    r.i = start
    moved = 0
    for k in range(n):
        out = bytearray()
        S._rewrite(r, out, S._RG_PLAN, 10_000, 40 + k, array("q"))
        want = ref.struct()
        for f in want:
            if f[0] == 5:  # RowGroup.file_offset
                f[2] += 10_000
                moved += 1
            if f[0] == 7:  # RowGroup.ordinal
                f[2] = 40 + k
        for cc in field(want, 1)[1]:  # RowGroup.columns
            for f in cc:
                if f[0] in (2, 6):  # ColumnChunk.file_offset, column_index_offset
                    f[2] += 10_000
                    moved += 1
                if f[0] == 3:  # ColumnChunk.meta_data
                    for g in f[2]:
                        if g[0] in (9, 10, 11, 14):  # data/index/dictionary page, bloom filter
                            g[2] += 10_000
                            moved += 1
        assert Decoder(bytes(out)).struct() == want
    assert moved >= n * (1 + 2 * 2)  # group, and per column: chunk, data page


def _parts(tmp_path, k=3, **kw):
    t = _table(900)
    paths = []
    for i in range(k):
        p = tmp_path / f"part{i}.parquet"
        pq.write_table(t.slice(i * 300, 300), p, row_group_size=120, **kw)
        paths.append(p)
    return t, paths


def test_splice_joins_rows_and_keeps_the_first_footer_fields(tmp_path):
    t, parts = _parts(tmp_path)
    out = tmp_path / "j.parquet"
    S.splice(parts, out)
    got = pq.read_table(out)
    assert got.to_pydict() == t.to_pydict()
    joined, _ = footer(out)
    first, _ = footer(parts[0])
    for fid, _, v in first:  # every top-level field of the first part, but the row count
        if fid not in (3, 4):  # num_rows, row_groups
            assert field(joined, fid) == v
    assert field(joined, 3) == 900 and len(field(joined, 4)[1]) == 9
    ordinals = [field(g, 7) for g in field(joined, 4)[1]]
    assert ordinals in ([None] * 9, list(range(9)))  # renumbered where the writer set them
    md = pq.ParquetFile(out).metadata  # pyarrow agrees on every chunk's place
    assert md.metadata == pq.ParquetFile(parts[0]).metadata.metadata
    want = []
    for g in range(9):
        for c in range(4):
            m = md.row_group(g).column(c)
            d = m.dictionary_page_offset if m.has_dictionary_page else -1
            want += [m.data_page_offset, d, m.total_compressed_size]
    buf, _ = S._footer_bytes(out)
    start, n, _ = next(f[2] for f in S._top_fields(buf)[0] if f[0] == S._ROW_GROUPS)
    assert S._chunks(buf, start, n).tolist() == want  # what check_offsets follows


def test_joiner_keeps_page_indexes_where_they_stay_valid(tmp_path):
    """Page indexes are written at close, before the footer: a part that stays where it was
    written keeps them, and its offset indexes still find their pages."""
    p = tmp_path / "j.parquet"
    t = pa.table({"a": pa.array(np.arange(1000, dtype=np.int64))})
    with open(p, "wb") as f:
        j = S.Joiner(f)
        sink = j.sink()
        w = pq.ParquetWriter(sink, t.schema, write_page_index=True)
        w.write_table(t, row_group_size=400)
        sink.footer()
        w.close()
        sink.end()
        j.finish()
    assert pq.read_table(p)["a"].to_pylist() == list(range(1000))
    S.check_offsets(p)
    data = p.read_bytes()
    fmd, _ = footer(p)
    groups = field(fmd, 4)[1]
    for group in groups:  # OffsetIndex.page_locations[0].offset = the first data page
        (cc,) = field(group, 1)[1]
        index = Decoder(data, field(cc, 4)).struct()  # ColumnChunk.offset_index_offset
        first_page = field(field(index, 1)[1][0], 1)
        assert first_page == field(field(cc, 3), 9)  # ColumnMetaData.data_page_offset
    assert len(groups) == 3


def test_a_moved_part_with_page_indexes_is_refused(tmp_path):
    _, parts = _parts(tmp_path, 2, write_page_index=True)
    with pytest.raises(ValueError, match="offset indexes cannot be moved"):
        S.splice(parts, tmp_path / "j.parquet")


def test_eventwriter_parts_have_no_page_index(tmp_path):
    assert P.WRITER_OPTIONS["write_page_index"] is False
    out = tmp_path / "e.parquet"
    w = P.EventWriter(out, {}, ["none"], row_group=50)
    for _ in range(4):
        w.add({"seq": np.arange(50)}, {}, 50)
    w.close()
    md = pq.ParquetFile(out).metadata
    assert md.num_row_groups == 4 and md.num_rows == 200
    for g in range(4):
        for c in range(md.num_columns):
            chunk = md.row_group(g).column(c)
            assert not chunk.has_offset_index and not chunk.has_column_index


def _with_footer_shifted(src, dst, delta):
    """src with every row group's offsets moved by delta (the pages left where they are)."""
    buf, end = S._footer_bytes(src)
    fields, _ = S._top_fields(buf)
    start, n, stop = next(f[2] for f in fields if f[0] == S._ROW_GROUPS)
    r = S._Reader(buf)
    r.i = start
    groups = bytearray()
    for k in range(n):
        S._rewrite(r, groups, S._RG_PLAN, delta, k, array("q"))
    new = buf[:start] + bytes(groups) + buf[stop:]
    data = src.read_bytes()[:end]
    dst.write_bytes(data + new + len(new).to_bytes(4, "little") + S.MAGIC)


@pytest.mark.parametrize(
    "delta, message",
    [
        (1, "column chunk 0: no (dictionary|data) page header at byte 5"),
        (-3, r"column chunk 0: bytes 1\.\..* outside the pages"),
        (10**6, "column chunk 0: bytes .* outside the pages"),
    ],
)
def test_check_offsets_finds_a_chunk_off_its_page(tmp_path, delta, message):
    _, parts = _parts(tmp_path, 1)
    S.check_offsets(parts[0])  # pyarrow's own file passes
    bad = tmp_path / "bad.parquet"
    _with_footer_shifted(parts[0], bad, delta)
    with pytest.raises(ValueError, match=message):
        S.check_offsets(bad)


def test_splice_refuses_a_join_whose_chunks_miss_their_pages(tmp_path):
    _, parts = _parts(tmp_path, 2)
    bad = tmp_path / "bad.parquet"
    _with_footer_shifted(parts[1], bad, 1)
    with pytest.raises(ValueError, match=r"column chunk 12: no (dictionary|data) page header"):
        S.splice([parts[0], bad], tmp_path / "j.parquet")


def test_a_dictionary_offset_off_its_page_is_found(tmp_path):
    """Column s is dictionary-encoded: its dictionary page is checked as such."""
    _, parts = _parts(tmp_path, 1)
    md = pq.ParquetFile(parts[0]).metadata.row_group(0).column(1)
    assert md.has_dictionary_page
    data = bytearray(parts[0].read_bytes())
    data[md.dictionary_page_offset] ^= 0xFF  # the page header's first byte
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="column chunk 1: no dictionary page header"):
        S.check_offsets(bad)


def test_eventwriter_checks_before_it_replaces_the_output(tmp_path, monkeypatch):
    out = tmp_path / "e.parquet"
    out.write_bytes(b"keep me")

    def refuse(path, chunks=None):
        raise ValueError(f"{path}: checked")

    monkeypatch.setattr(S, "check_offsets", refuse)
    w = P.EventWriter(out, {}, ["none"])
    w.add({"seq": np.arange(10)}, {}, 10)
    with pytest.raises(ValueError, match="checked"):
        w.close()
    w.abort()
    assert out.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.parquet"]  # no temp left
