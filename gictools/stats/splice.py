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


def _write_struct(fields, out):
    last = 0
    for fid, t, v in sorted(fields, key=lambda f: f[0]):
        wt = (_TRUE if v else _FALSE) if t in (_TRUE, _FALSE) else t
        if 0 < fid - last <= 15:
            out.append((fid - last) << 4 | wt)
        else:
            out.append(wt)
            _zigzag(fid, out)
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


def _footer(path):
    with open(path, "rb") as f:
        f.seek(-8, os.SEEK_END)
        tail = f.read(8)
        if tail[4:] != MAGIC:
            raise ValueError(f"{path}: not a Parquet file")
        (n,) = struct.unpack("<I", tail[:4])
        size = f.seek(0, os.SEEK_END)
        f.seek(size - 8 - n)
        return _Reader(f.read(n)).struct(), size - 8 - n


def splice(parts, out, key_value_metadata: dict | None = None):
    """Write out = the row groups of parts (same schema, in order) with one footer holding
    key_value_metadata (default: the first part's). Only offsets are rewritten; pages are
    copied as they are."""
    footers = [_footer(p) for p in parts]
    first = footers[0][0]
    groups, rows = [], 0
    with open(out, "wb") as dst:
        dst.write(MAGIC)
        for p, (fmd, end) in zip(parts, footers):
            delta = dst.tell() - len(MAGIC)
            with open(p, "rb") as src:
                src.seek(len(MAGIC))
                left = end - len(MAGIC)
                while left:
                    chunk = src.read(min(left, 1 << 22))
                    dst.write(chunk)
                    left -= len(chunk)
            rows += _field(fmd, _FMD_NUM_ROWS)[2]
            rg = _field(fmd, _ROW_GROUPS)
            for group in rg[2][1] if rg else []:
                _shift(group, (_RG_FILE_OFFSET,), delta)
                for cc in _field(group, _RG_COLUMNS)[2][1]:
                    _shift(cc, (_CC_FILE_OFFSET, _CC_OFFSET_INDEX, _CC_COLUMN_INDEX), delta)
                    meta = _field(cc, _CC_META)
                    if meta is not None:
                        _shift(meta[2], _CM_OFFSETS, delta)
                groups.append(group)
        drop = (_FMD_NUM_ROWS, _ROW_GROUPS) + (() if key_value_metadata is None else (_FMD_KV,))
        fmd = [f for f in first if f[0] not in drop]
        fmd.append([_FMD_NUM_ROWS, _I64, rows])
        fmd.append([_ROW_GROUPS, _LIST, (_STRUCT, groups)])
        if key_value_metadata is not None:
            kv = [
                [[1, _BINARY, str(k).encode()], [2, _BINARY, str(v).encode()]]
                for k, v in key_value_metadata.items()
            ]
            fmd.append([_FMD_KV, _LIST, (_STRUCT, kv)])
        buf = bytearray()
        _write_struct(fmd, buf)
        dst.write(buf)
        dst.write(struct.pack("<I", len(buf)))
        dst.write(MAGIC)
