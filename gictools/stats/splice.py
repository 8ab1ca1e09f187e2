"""Join Parquet files of one schema into one file without decoding a page.

Several cache policies replay in parallel processes, each writing its own part; the parts'
row groups are copied byte for byte after one another and their footers merged: only the
absolute file offsets in the footer (Thrift compact protocol, parquet.thrift) change. The
footer is decoded generically (field id, type, value), so fields this code does not know
are carried over unchanged.
"""

import os
import struct

MAGIC = b"PAR1"
# compact protocol type ids
_TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(1, 13)
# parquet.thrift field ids of the absolute offsets (FileMetaData.row_groups = 4)
_ROW_GROUPS = 4
_RG_COLUMNS, _RG_FILE_OFFSET = 1, 5
_CC_FILE_OFFSET, _CC_META, _CC_OFFSET_INDEX, _CC_COLUMN_INDEX = 2, 3, 4, 6
_CM_OFFSETS = (9, 10, 11, 14)  # data_page, index_page, dictionary_page, bloom_filter
_FMD_NUM_ROWS, _FMD_KV = 3, 5


class _Reader:
    def __init__(self, buf):
        self.b, self.i = buf, 0

    def varint(self):
        shift = out = 0
        while True:
            c = self.b[self.i]
            self.i += 1
            out |= (c & 0x7F) << shift
            if c < 0x80:
                return out
            shift += 7

    def zigzag(self):
        v = self.varint()
        return (v >> 1) ^ -(v & 1)

    def value(self, t):
        if t in (_TRUE, _FALSE):
            return t == _TRUE
        if t == _BYTE:
            self.i += 1
            return self.b[self.i - 1]
        if t in (_I16, _I32, _I64):
            return self.zigzag()
        if t == _DOUBLE:
            self.i += 8
            return self.b[self.i - 8 : self.i]
        if t == _BINARY:
            n = self.varint()
            self.i += n
            return self.b[self.i - n : self.i]
        if t in (_LIST, _SET):
            h = self.b[self.i]
            self.i += 1
            n, et = h >> 4, h & 0x0F
            if n == 15:
                n = self.varint()
            if et in (_TRUE, _FALSE):
                items = [self.b[self.i + k] == 1 for k in range(n)]
                self.i += n
                return (et, items)
            return (et, [self.value(et) for _ in range(n)])
        if t == _MAP:
            n = self.varint()
            if n == 0:
                return (0, 0, [])
            kv = self.b[self.i]
            self.i += 1
            kt, vt = kv >> 4, kv & 0x0F
            return (kt, vt, [(self.value(kt), self.value(vt)) for _ in range(n)])
        if t == _STRUCT:
            return self.struct()
        raise ValueError(f"Thrift compact type {t} at byte {self.i}")

    def struct(self):
        fields = []
        last = 0
        while True:
            h = self.b[self.i]
            self.i += 1
            if h == 0:
                return fields
            t, delta = h & 0x0F, h >> 4
            fid = last + delta if delta else self.zigzag()
            fields.append([fid, t, self.value(t)])
            last = fid


def _varint(v, out):
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def _zigzag(v, out):
    _varint((v << 1) ^ (v >> 63), out)


def _write_value(t, v, out):
    if t in (_TRUE, _FALSE):
        return
    if t == _BYTE:
        out.append(v)
    elif t in (_I16, _I32, _I64):
        _zigzag(v, out)
    elif t == _DOUBLE:
        out += v
    elif t == _BINARY:
        _varint(len(v), out)
        out += v
    elif t in (_LIST, _SET):
        et, items = v
        if len(items) < 15:
            out.append(len(items) << 4 | et)
        else:
            out.append(0xF0 | et)
            _varint(len(items), out)
        for x in items:
            if et in (_TRUE, _FALSE):
                out.append(1 if x else 2)
            else:
                _write_value(et, x, out)
    elif t == _MAP:
        kt, vt, items = v
        _varint(len(items), out)
        if items:
            out.append(kt << 4 | vt)
            for k, x in items:
                _write_value(kt, k, out)
                _write_value(vt, x, out)
    elif t == _STRUCT:
        _write_struct(v, out)


def _field_header(fid, t, v, last, out):
    """A compact-protocol field header: the id as a delta from the last one when it fits."""
    wt = (_TRUE if v else _FALSE) if t in (_TRUE, _FALSE) else t
    if 0 < fid - last <= 15:
        out.append((fid - last) << 4 | wt)
    else:
        out.append(wt)
        _zigzag(fid, out)


def _write_struct(fields, out):
    last = 0
    for fid, t, v in sorted(fields, key=lambda f: f[0]):
        _field_header(fid, t, v, last, out)
        _write_value(t, v, out)
        last = fid
    out.append(0)


def _field(fields, fid):
    for f in fields:
        if f[0] == fid:
            return f
    return None


def _shift(fields, fids, delta):
    for f in fields:
        if f[0] in fids:
            f[2] += delta


def _footer_bytes(path):
    with open(path, "rb") as f:
        f.seek(-8, os.SEEK_END)
        tail = f.read(8)
        if tail[4:] != MAGIC:
            raise ValueError(f"{path}: not a Parquet file")
        (n,) = struct.unpack("<I", tail[:4])
        size = f.seek(0, os.SEEK_END)
        f.seek(size - 8 - n)
        return f.read(n), size - 8 - n


def _footer(path):
    buf, end = _footer_bytes(path)
    return _Reader(buf).struct(), end


def _top_fields(buf):
    """FileMetaData's top-level fields, the row groups left unparsed: (fields, row group
    element type, count, the reader positioned at the first row group)."""
    r = _Reader(buf)
    fields, last = [], 0
    while True:
        h = r.b[r.i]
        r.i += 1
        if h == 0:
            return fields, None
        t, delta = h & 0x0F, h >> 4
        fid = last + delta if delta else r.zigzag()
        last = fid
        if fid == _ROW_GROUPS and t == _LIST:
            lh = r.b[r.i]
            r.i += 1
            n = lh >> 4
            if n == 15:
                n = r.varint()
            start = r.i
            for _ in range(n):  # skip them; splice() walks them one at a time
                r.struct()
            fields.append([fid, t, (start, n)])
        else:
            fields.append([fid, t, r.value(t)])


def _shift_group(group, delta):
    _shift(group, (_RG_FILE_OFFSET,), delta)
    for cc in _field(group, _RG_COLUMNS)[2][1]:
        _shift(cc, (_CC_FILE_OFFSET, _CC_OFFSET_INDEX, _CC_COLUMN_INDEX), delta)
        meta = _field(cc, _CC_META)
        if meta is not None:
            _shift(meta[2], _CM_OFFSETS, delta)


def splice(parts, out, key_value_metadata: dict | None = None):
    """Write out = the row groups of parts (same schema, in order) with one footer holding
    key_value_metadata (default: the first part's). Only offsets are rewritten; pages are
    copied as they are, and the footers are walked one row group at a time."""
    groups = bytearray()
    n_groups = rows = 0
    first = None
    with open(out, "wb") as dst:
        dst.write(MAGIC)
        for p in parts:
            buf, end = _footer_bytes(p)
            fields, _ = _top_fields(buf)
            if first is None:
                first = fields
            delta = dst.tell() - len(MAGIC)
            with open(p, "rb") as src:
                src.seek(len(MAGIC))
                left = end - len(MAGIC)
                while left:
                    chunk = src.read(min(left, 1 << 22))
                    dst.write(chunk)
                    left -= len(chunk)
            rows += _field(fields, _FMD_NUM_ROWS)[2]
            rg = _field(fields, _ROW_GROUPS)
            if rg is not None:
                start, n = rg[2]
                r = _Reader(buf)
                r.i = start
                for _ in range(n):
                    group = r.struct()
                    _shift_group(group, delta)
                    _write_struct(group, groups)
                n_groups += n
        fmd = bytearray()
        last = 0
        kv = None
        if key_value_metadata is not None:
            kv = [
                [[1, _BINARY, str(k).encode()], [2, _BINARY, str(v).encode()]]
                for k, v in key_value_metadata.items()
            ]
        top = [f for f in first if f[0] not in (_FMD_NUM_ROWS, _ROW_GROUPS)]
        top.append([_FMD_NUM_ROWS, _I64, rows])
        top.append([_ROW_GROUPS, _LIST, None])
        if kv is not None:
            top = [f for f in top if f[0] != _FMD_KV] + [[_FMD_KV, _LIST, (_STRUCT, kv)]]
        for fid, t, v in sorted(top, key=lambda f: f[0]):
            _field_header(fid, t, v, last, fmd)
            last = fid
            if fid == _ROW_GROUPS:
                if n_groups < 15:
                    fmd.append(n_groups << 4 | _STRUCT)
                else:
                    fmd.append(0xF0 | _STRUCT)
                    _varint(n_groups, fmd)
                fmd += groups
            else:
                _write_value(t, v, fmd)
        fmd.append(0)
        dst.write(fmd)
        dst.write(struct.pack("<I", len(fmd)))
        dst.write(MAGIC)
