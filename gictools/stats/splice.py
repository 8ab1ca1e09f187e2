"""Join Parquet files of one schema into one file without decoding a page.

Several cache policies replay in parallel processes, each writing its own part; the parts'
row groups are copied byte for byte after one another and their footers merged: only the
absolute file offsets in the footer (Thrift compact protocol, parquet.thrift) change. The
footer is walked, not decoded: the offsets are rewritten in place and every other field,
known or not, is copied as bytes. check_offsets() then reads the joined file back: every
column chunk must lie inside it and start at a page header.
"""

import mmap
import os
import struct
from array import array

MAGIC = b"PAR1"
# compact protocol type ids
_TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(1, 13)
# parquet.thrift field ids of the absolute offsets (FileMetaData.row_groups = 4)
_ROW_GROUPS = 4
_RG_COLUMNS, _RG_FILE_OFFSET, _RG_ORDINAL = 1, 5, 7
_CC_FILE_OFFSET, _CC_META, _CC_OFFSET_INDEX, _CC_COLUMN_INDEX = 2, 3, 4, 6
_CM_OFFSETS = (9, 10, 11, 14)  # data_page, index_page, dictionary_page, bloom_filter
_FMD_NUM_ROWS = 3
_CM_TOTAL_COMPRESSED, _CM_DATA_PAGE, _CM_DICT_PAGE = 7, 9, 11
# PageHeader: type (PageType), uncompressed_page_size, compressed_page_size
_DATA_PAGE, _DICTIONARY_PAGE, _DATA_PAGE_V2 = 0, 2, 3
_PAGE_HEADER_I32 = 1 << 4 | 5  # a field header: id + 1, type i32 (compact protocol)


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

    def skip(self, t):
        """Step over one value of type t without building it (footers are walked often)."""
        if t in (_I16, _I32, _I64):
            self.varint()
        elif t == _BINARY:
            n = self.varint()
            self.i += n
        elif t == _STRUCT:
            self.skip_struct()
        elif t in (_LIST, _SET):
            h = self.b[self.i]
            self.i += 1
            n, et = h >> 4, h & 0x0F
            if n == 15:
                n = self.varint()
            if et in (_TRUE, _FALSE, _BYTE):
                self.i += n
            else:
                for _ in range(n):
                    self.skip(et)
        elif t == _BYTE:
            self.i += 1
        elif t == _DOUBLE:
            self.i += 8
        elif t == _MAP:
            n = self.varint()
            if n:
                kv = self.b[self.i]
                self.i += 1
                for _ in range(n):
                    self.skip(kv >> 4)
                    self.skip(kv & 0x0F)
        elif t not in (_TRUE, _FALSE):
            raise ValueError(f"Thrift compact type {t} at byte {self.i}")

    def skip_struct(self):
        b = self.b
        while True:
            h = b[self.i]
            self.i += 1
            if h == 0:
                return
            if not h >> 4:
                self.zigzag()
            t = h & 0x0F
            if t in (_I32, _I64, _I16):  # varints, most fields: stepped over inline
                i = self.i
                while b[i] & 0x80:
                    i += 1
                self.i = i + 1
            elif t not in (_TRUE, _FALSE):
                self.skip(t)


def _varint(v, out):
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def _zigzag(v, out):
    _varint((v << 1) ^ (v >> 63), out)


def _field_header(fid, t, last, out):
    """A compact-protocol field header: the id as a delta from the last one when it fits
    (t: the header's type nibble, which for a bool is its value)."""
    if 0 < fid - last <= 15:
        out.append((fid - last) << 4 | t)
    else:
        out.append(t)
        _zigzag(fid, out)


def _field(fields, fid):
    for f in fields:
        if f[0] == fid:
            return f
    return None


def _footer_length(tail: bytes, what) -> int:
    """The footer length from a Parquet file's last 8 bytes (length, PAR1)."""
    if len(tail) < 8 or tail[-4:] != MAGIC:
        raise ValueError(f"{what}: not a Parquet file (no footer)")
    return struct.unpack("<I", tail[-8:-4])[0]


def _footer_bytes(path):
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - 8))
        n = _footer_length(f.read(8), path)
        if n > size - 8 - len(MAGIC):
            raise ValueError(f"{path}: Parquet footer longer than the file")
        f.seek(size - 8 - n)
        return f.read(n), size - 8 - n


def _top_fields(buf, whole=True):
    """FileMetaData's top-level fields as [id, type nibble, value bytes]; num_rows decoded
    (an int), the row groups' value (start, count, end) left unparsed. whole=False stops at
    the row groups (end None): the fields before them (num_rows) are all a later part
    needs."""
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
            if not whole:
                fields.append([fid, t, (start, n, None)])
                return fields, None
            for _ in range(n):  # skip them; the Joiner walks them one at a time
                r.skip_struct()
            fields.append([fid, t, (start, n, r.i)])
        elif fid == _FMD_NUM_ROWS and t == _I64:
            fields.append([fid, t, r.zigzag()])
        else:
            start = r.i
            r.skip(t)
            fields.append([fid, t, r.b[start : r.i]])


_SHIFT, _ORDINAL, _FIXED, _READ = "shift", "ordinal", "fixed", "read"
# where a row group's absolute file offsets sit (parquet.thrift); anything else is copied.
# A ColumnMetaData's page offsets and size are also noted for check_offsets.
_CM_PLAN = {**dict.fromkeys(_CM_OFFSETS, _SHIFT), _CM_TOTAL_COMPRESSED: _READ}
_CC_PLAN = {
    _CC_FILE_OFFSET: _SHIFT,
    _CC_META: _CM_PLAN,
    # an OffsetIndex holds absolute page offsets of its own, inside the part's body: a part
    # with one can only stay where it was written (EventWriter writes no page index)
    _CC_OFFSET_INDEX: _FIXED,
    _CC_COLUMN_INDEX: _SHIFT,
}
_RG_PLAN = {_RG_COLUMNS: _CC_PLAN, _RG_FILE_OFFSET: _SHIFT, _RG_ORDINAL: _ORDINAL}


def _rewrite(r, out, plan, delta, ordinal, chunks):
    """Copy the struct at r into out byte for byte, except the offsets plan names (moved by
    delta) and a row group's ordinal (renumbered while it fits parquet.thrift's i16).
    Unchanged bytes are copied in runs, up to the next value that changes. Each column
    chunk's (data page, dictionary page or -1, compressed size), as written, is appended
    to chunks (an array)."""
    b = r.b
    last = 0
    run = r.i  # start of the bytes not yet copied
    seen = {} if plan is _CM_PLAN else None
    while True:
        h = b[r.i]
        r.i += 1
        if h == 0:
            out += b[run : r.i]
            if seen is not None:
                chunks.extend(
                    (
                        seen.get(_CM_DATA_PAGE, -1),
                        seen.get(_CM_DICT_PAGE, -1),
                        seen.get(_CM_TOTAL_COMPRESSED, -1),
                    )
                )
            return
        t, d = h & 0x0F, h >> 4
        fid = last + d if d else r.zigzag()
        last = fid
        how = plan.get(fid)
        if how is None:
            if t in (_I32, _I64, _I16):  # a varint: the common case, stepped over here
                i = r.i
                while b[i] & 0x80:
                    i += 1
                r.i = i + 1
            else:
                r.skip(t)
        elif how == _SHIFT and t in (_I32, _I64):
            out += b[run : r.i]
            v = r.zigzag() + delta
            _zigzag(v, out)
            run = r.i
            if seen is not None:
                seen[fid] = v
        elif how == _READ and t in (_I32, _I64):
            v = r.zigzag()  # left in the run: copied as it is
            if seen is not None:
                seen[fid] = v
        elif how == _FIXED and delta:
            raise ValueError("a Parquet part with page offset indexes cannot be moved")
        elif how == _ORDINAL and t == _I16 and ordinal < 1 << 15:
            out += b[run : r.i]
            r.zigzag()
            _zigzag(ordinal, out)
            run = r.i
        elif isinstance(how, dict) and t == _STRUCT:
            out += b[run : r.i]
            _rewrite(r, out, how, delta, ordinal, chunks)
            run = r.i
        elif isinstance(how, dict) and t == _LIST and b[r.i] & 0x0F == _STRUCT:
            n = b[r.i] >> 4
            r.i += 1
            if n == 15:
                n = r.varint()
            out += b[run : r.i]
            for _ in range(n):
                _rewrite(r, out, how, delta, ordinal, chunks)
            run = r.i
        else:  # not the type expected there: carried over as it is
            r.skip(t)


class Joiner:
    """Builds one Parquet file in dst from parts of one schema, as they come: each part's
    pages are appended and its row groups' footer entries (offsets shifted, 1-2 KB each,
    serialized) kept for the one footer finish() writes.

    Parts are files (add_file: pages copied) or written straight into dst by a Parquet
    writer given sink() (no copy). The latter bounds a long writer's memory: pyarrow keeps
    ~17 KB of metadata per row group until its close, so EventWriter closes its pyarrow
    writer every few hundred row groups and starts a new part.
    """

    def __init__(self, dst):
        self.dst = dst
        self.groups = bytearray()
        self.n_groups = self.rows = 0
        self.chunks = array("q")  # (data page, dictionary page or -1, size) per column chunk
        self.first = None
        self.pos = len(MAGIC)
        dst.write(MAGIC)

    def _add_footer(self, buf, delta):
        as_they_are = delta == 0 and self.n_groups == 0
        fields, _ = _top_fields(buf, whole=self.first is None or as_they_are)
        if self.first is None:
            self.first = fields
        self.rows += _field(fields, _FMD_NUM_ROWS)[2]
        rg = _field(fields, _ROW_GROUPS)
        if rg is not None and as_they_are:
            start, n, end = rg[2]
            self.groups += buf[start:end]
            self.n_groups = n
            self.chunks += _chunks(buf, start, n)
        elif rg is not None:
            start, n, _ = rg[2]
            r = _Reader(buf)
            r.i = start
            for _ in range(n):
                _rewrite(r, self.groups, _RG_PLAN, delta, self.n_groups, self.chunks)
                self.n_groups += 1

    def add_file(self, path):
        """Append a whole Parquet file's row groups (its pages copied)."""
        buf, end = _footer_bytes(path)
        delta = self.pos - len(MAGIC)
        with open(path, "rb") as src:
            src.seek(len(MAGIC))
            left = end - len(MAGIC)
            while left:
                chunk = src.read(min(left, 1 << 22))
                if not chunk:
                    raise ValueError(f"{path}: truncated Parquet file")
                self.dst.write(chunk)
                left -= len(chunk)
        self.pos += end - len(MAGIC)
        self._add_footer(buf, delta)

    def check(self, path) -> None:
        """check_offsets(path) with the chunks noted while joining (no footer walk)."""
        check_offsets(path, self.chunks)

    def sink(self) -> "PartSink":
        """A file-like for one Parquet writer: its pages go straight into dst."""
        return PartSink(self)

    def finish(self, footer_of: bytes | None = None):
        """Write the footer: the first part's file-level fields (schema, key-value metadata,
        created_by, ...), or those of the Parquet file footer_of."""
        first = self.first
        if footer_of is not None:
            n = _footer_length(footer_of, "footer_of")
            first, _ = _top_fields(footer_of[-8 - n : -8])
        if first is None:
            raise ValueError("no Parquet part to join")
        top = [f for f in first if f[0] not in (_FMD_NUM_ROWS, _ROW_GROUPS)]
        rows = bytearray()
        _zigzag(self.rows, rows)
        top.append([_FMD_NUM_ROWS, _I64, rows])
        top.append([_ROW_GROUPS, _LIST, None])
        head, tail = bytearray(), bytearray()  # the row groups go between, not copied
        out, last = head, 0
        for fid, t, v in sorted(top, key=lambda f: f[0]):
            _field_header(fid, t, last, out)
            last = fid
            if fid == _ROW_GROUPS:
                if self.n_groups < 15:
                    out.append(self.n_groups << 4 | _STRUCT)
                else:
                    out.append(0xF0 | _STRUCT)
                    _varint(self.n_groups, out)
                out = tail
            else:
                out += v  # the first part's bytes, as they were
        tail.append(0)
        for piece in (head, self.groups, tail):
            self.dst.write(piece)
        self.dst.write(struct.pack("<I", len(head) + len(self.groups) + len(tail)))
        self.dst.write(MAGIC)


class PartSink:
    """What a pyarrow ParquetWriter writes one part into (pyarrow counts offsets from its
    own first byte and calls only write()): the part's leading magic is dropped, its pages
    pass through to the Joiner's file, and from footer() on the bytes are held until end()
    takes the footer apart."""

    def __init__(self, joiner: Joiner):
        self.joiner = joiner
        self.base = joiner.pos  # where the part's byte 4 lands
        self.seen = 0
        self.held: bytearray | None = None
        self.closed = False

    def write(self, data) -> int:
        n = len(data)
        skip = max(0, len(MAGIC) - self.seen)
        self.seen += n
        if skip:
            data = memoryview(data)[skip:]
            if not len(data):
                return n
        if self.held is not None:
            self.held += data
        else:
            self.joiner.dst.write(data)
            self.joiner.pos += len(data)
        return n

    def flush(self):
        pass

    def footer(self):
        """Call before closing the writer: what it writes from now on is held."""
        self.held = bytearray()

    def end(self):
        """After the writer closed: its footer joins the Joiner's; any bytes before the
        footer (page indexes) go to the file."""
        held = self.held
        if held is None:
            raise ValueError("end() without footer()")
        n = _footer_length(held, "Parquet part")
        body = len(held) - 8 - n
        if body < 0:
            raise ValueError("Parquet part footer longer than the part")
        self.held = None
        if body:
            self.joiner.dst.write(held[:body])
            self.joiner.pos += body
        self.joiner._add_footer(bytes(held[body : body + n]), self.base - len(MAGIC))


def splice(parts, out, footer_of: bytes | None = None):
    """Write out = the row groups of parts (same schema, in order) with one footer (see
    Joiner.finish). Only offsets are rewritten; pages are copied as they are, and the
    footers are walked one row group at a time. The result is checked (check_offsets)."""
    with open(out, "wb") as dst:
        j = Joiner(dst)
        for p in parts:
            j.add_file(p)
        j.finish(footer_of)
    j.check(out)


def _chunks(buf, start: int, n: int) -> array:
    """(data page, dictionary page or -1, size) of every column chunk of the n row groups
    at buf[start:]."""
    r, chunks = _Reader(buf), array("q")
    r.i = start
    for k in range(n):
        _rewrite(r, bytearray(), _RG_PLAN, 0, k, chunks)
    return chunks


def _page_type(b: bytes) -> int | None:
    """The PageType of the page header b starts with (type, uncompressed and compressed
    sizes as its first three fields, sizes >= 0); None if it is not one."""
    r = _Reader(b)
    try:
        values = []
        for _ in range(3):
            if b[r.i] != _PAGE_HEADER_I32:
                return None
            r.i += 1
            values.append(r.zigzag())
    except IndexError:
        return None
    kind, raw, packed = values
    return kind if raw >= 0 and packed >= 0 else None


def check_offsets(path, chunks: array | None = None) -> None:
    """Every column chunk lies inside the file before its footer and starts at a page
    header: the dictionary page where the footer names one, a data page at
    data_page_offset. chunks: the footer's (data page, dictionary page or -1, size)
    triples, if known (Joiner.check); else the footer is walked. ValueError naming the
    first chunk that does not."""
    if chunks is None:
        buf, _ = _footer_bytes(path)
        fields, _ = _top_fields(buf, whole=False)
        rg = _field(fields, _ROW_GROUPS)
        chunks = array("q") if rg is None else _chunks(buf, rg[2][0], rg[2][1])
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        end = len(m) - 8 - _footer_length(m[-8:], path)  # where the pages end
        for k in range(0, len(chunks), 3):
            data, dic, size = chunks[k : k + 3]
            first = data if dic < 0 else dic
            if not (len(MAGIC) <= first <= data and size >= 0 and first + size <= end):
                what = f"bytes {first}..{first + size} outside the pages ({len(MAGIC)}..{end})"
            elif dic >= 0 and _page_type(m[dic : dic + 32]) != _DICTIONARY_PAGE:
                what = f"no dictionary page header at byte {dic}"
            elif _page_type(m[data : data + 32]) not in (_DATA_PAGE, _DATA_PAGE_V2):
                what = f"no data page header at byte {data}"
            else:
                continue
            raise ValueError(f"{path}: column chunk {k // 3}: {what}")
