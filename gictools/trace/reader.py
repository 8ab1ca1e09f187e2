"""Streaming reader of trace format v1 (docs/trace-format.md).

The one choke point for trace input: every problem in a file, whatever layer
notices it (gzip, msgpack, numpy, a type check), leaves as TraceFormatError
naming the record index, its byte offset and the field. Objects are numbered
in file order: the header is record 0, the first record proper is 1. Offsets
count bytes of the msgpack stream (after decompression when the file is gzip or
zstd, recognised by magic). Takes a path or a binary stream (stdin: no seeking);
a file that is not a trace is named by what it looks like. Records are validated
by gictools.trace.format's checks, the writer's too.

    rd = TraceReader("t.msgpack")
    rd.header["vm"]["vcpus"]
    for rec in rd:                    # tuples, see gictools.trace.format
        rd.record_index, rd.offset    # of rec
"""

import os
import zlib
from collections.abc import Iterator
from typing import Any, BinaryIO, Protocol

import msgpack

from gictools.errors import TraceFormatError
from gictools.trace import format as F
from gictools.trace.format import FieldError

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# What a file that is not a trace looks like, by its first bytes (for the error message).
_LOOKS_LIKE = (
    (b"\xfd7zXZ\x00", "an xz-compressed file"),
    (b"BZh", "a bzip2-compressed file"),
    (b"\x04\x22\x4d\x18", "an lz4-compressed file"),
    (b"PAR1", "a Parquet file"),
    (b"PK\x03\x04", "a zip archive"),
    (b"\x7fELF", "an ELF binary"),
    (b"GICTIMG", "a gictools image"),
    (b"\x89PNG", "a PNG image"),
    (b"%PDF", "a PDF document"),
    (b"SQLite format 3", "an SQLite database"),
    (b"ARROW1", "an Arrow IPC file"),
)
_SNIFF = 16


TraceInput = str | os.PathLike[str] | BinaryIO
"""A trace file's path, or a binary file object to read it from."""
Record = tuple[Any, ...]
"""A validated record tuple (layouts: gictools.trace.format)."""


class _Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


class _ObjectTooLarge(Exception):
    pass


class _Source:
    """file-like for the Unpacker: counts bytes handed over (truncation check), puts back
    the bytes peeked at for the magic, and bounds one object: once MAX_OBJECT bytes from
    the start of the object being decoded have been handed over and more are asked for,
    that object is too large (the bound holds on decompressed streams: a small .gz cannot
    make the reader allocate more)."""

    __slots__ = ("f", "n", "pre", "obj_start", "bounded")

    def __init__(self, f: _Readable, pre: bytes = b"", bounded: bool = True) -> None:
        self.f, self.n, self.pre, self.obj_start, self.bounded = f, 0, pre, 0, bounded

    def read(self, size: int | None = -1) -> bytes:
        if self.bounded and self.n - self.obj_start >= F.MAX_OBJECT:
            raise _ObjectTooLarge
        if size is None or size < 0:
            size = F.READ_SIZE
        if self.pre:
            data, self.pre = self.pre[:size], self.pre[size:]
            if size > len(data):
                data += self.f.read(size - len(data))
        else:
            data = self.f.read(size)
        self.n += len(data)
        return data


class _Zstd:
    """Streaming zstd decompression through pyarrow's codec (pyarrow is a dependency
    already; imported only for .zst input). Like _Gunzip, .error holds a damaged or cut
    stream's problem after handing over every byte that could be decompressed."""

    def __init__(self, f: _Readable) -> None:
        import pyarrow as pa

        class _Raw:  # what pyarrow's PythonFile needs of the compressed input
            closed = False
            read = f.read

            def close(self) -> None:
                pass

        self.error: str | None = None
        self.s = pa.CompressedInputStream(pa.PythonFile(_Raw(), mode="r"), "zstd")

    def read(self, size: int) -> bytes:
        # in small pieces: pyarrow reports a cut stream instead of returning the bytes it
        # could decompress, and those bytes must reach the reader first
        out, n = [], 0
        while n < size and self.error is None:
            try:
                piece = self.s.read(min(size - n, 1 << 16))
            except (OSError, ValueError) as e:
                self.error = f"zstd: {e}"
                break
            if not piece:
                break
            out.append(piece)
            n += len(piece)
        return b"".join(out)

    def close(self) -> None:
        pass


class _Gunzip:
    """Streaming gzip decompression (multi-member) that hands over every byte it could
    decompress before reporting a damaged or cut stream: the reader then fails at the
    record where the good data ends. .error holds the gzip problem, if any."""

    __slots__ = ("f", "d", "tail", "error", "done")

    def __init__(self, f: _Readable) -> None:
        self.error: str | None
        self.f, self.d, self.tail, self.error, self.done = (
            f,
            zlib.decompressobj(31),
            b"",
            None,
            False,
        )

    def read(self, size: int) -> bytes:
        out = []
        n = 0
        while n < size and not self.done:
            if not self.tail:
                self.tail = self.f.read(1 << 20)
                if not self.tail:
                    if not self.d.eof:
                        self.error = "gzip stream ends early (file cut?)"
                    self.done = True
                    break
            try:
                chunk = self.d.decompress(self.tail, size - n)
            except zlib.error as e:
                self.error, self.done = f"gzip: {e}", True
                break
            if self.d.eof:
                rest = self.d.unused_data + self.d.unconsumed_tail
                self.d = zlib.decompressobj(31)
                self.tail = rest
                if not rest.strip(b"\0"):  # trailing padding after the last member
                    self.tail = b""
                    rest = self.f.read(1 << 20)
                    if rest:
                        self.tail = rest
                    else:
                        self.done = True
            else:
                self.tail = self.d.unconsumed_tail
            out.append(chunk)
            n += len(chunk)
        return b"".join(out)

    def close(self) -> None:
        pass


def _looks_like(head: bytes) -> str | None:
    """What a file is, when its first bytes say it is not a trace (None: it may be one)."""
    if not head:
        return "an empty file"
    if head[0] in range(0x80, 0x90) or head[0] in (0xDE, 0xDF):
        return None  # a msgpack map: the header may follow
    for magic, what in _LOOKS_LIKE:
        if head.startswith(magic):
            return what
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\r\n\t" for c in text):
        return "a text file" + (" (JSON?)" if text.lstrip()[:1] == "{" else "")
    return "binary data that does not start with a msgpack map"


def _open(path_or_fileobj: TraceInput) -> tuple[_Source, str | None, BinaryIO, bool, str | None]:
    """(source, name or None, file, owned, compression): gzip and zstd unwrapped by magic."""
    f: BinaryIO
    name: str | None
    if isinstance(path_or_fileobj, (str, bytes, os.PathLike)):
        f = open(path_or_fileobj, "rb")
        name, owned = os.fsdecode(path_or_fileobj), True
    else:
        f, owned = path_or_fileobj, False
        name = getattr(f, "name", None)
        name = name if isinstance(name, str) else None
    try:
        head = f.read(_SNIFF)
        while len(head) < _SNIFF:  # pipes hand over short reads
            more = f.read(_SNIFF - len(head))
            if not more:
                break
            head += more
        if head.startswith(_GZIP_MAGIC):
            return _Source(_Gunzip(_Source(f, head, False))), name, f, owned, "gzip"
        if head.startswith(_ZSTD_MAGIC):
            return _Source(_Zstd(_Source(f, head, False))), name, f, owned, "zstd"
        return _Source(f, head), name, f, owned, None
    except BaseException:
        if owned:
            f.close()
        raise


class TraceReader:
    """Iterates a trace's records after validating its header (see module doc).

    events_total: the events the trace holds (MSIs plus other records, an MSI_BLOCK
    counting its MSIs), from the header's counts, or None when the trace does not say
    (written before format 1.1, or streamed); events_read: events yielded so far. Both
    are for progress bars."""

    def __init__(self, path_or_fileobj: TraceInput) -> None:
        self.record_index = 0  # index of the record last yielded (0: the header)
        self.offset = 0  # byte offset of the record last yielded
        self.events_read = 0
        self._iterated = False
        self._file: BinaryIO | None
        self._src, self.path, self._file, self._owned, self.compression = _open(path_or_fileobj)
        try:
            self._up = msgpack.Unpacker(
                self._src,
                use_list=False,
                raw=False,
                strict_map_key=True,
                read_size=F.READ_SIZE,
                max_buffer_size=F.MAX_BUFFER_SIZE,
                max_bin_len=F.MAX_BIN_LEN,
                max_str_len=F.MAX_STR_LEN,
                max_array_len=F.MAX_ARRAY_LEN,
                max_map_len=F.MAX_MAP_LEN,
                max_ext_len=0,
            )
            self.header = self._read_header()
        except BaseException:
            self.close()
            raise
        vm = self.header["vm"]
        self.vcpus = vm["vcpus"]
        self.n_itses = len(vm["itses"])
        self._end = self._up.tell()
        self._src.obj_start = self._end
        self.version = tuple(self.header["version"])
        self.counts = self.header.get("counts")
        c = self.counts
        self.events_total = None if c is None else c["records"] - c["msi_blocks"] + c["msis"]

    def _error(
        self,
        what: str,
        record: int | None = None,
        offset: int | None = None,
        field: str | None = None,
    ) -> TraceFormatError:
        return TraceFormatError(what, record=record, offset=offset, field=field, path=self.path)

    def _read_header(self) -> dict[str, Any]:
        if self.compression is None:
            what = _looks_like(self._src.pre)
            if what is not None:
                raise self._error(f"not a gictools trace (looks like {what})", 0, 0)
        try:
            obj = self._up.unpack()
        except msgpack.OutOfData:
            err = _stream_error(self._src)
            if self._src.n == 0:
                raise self._error(
                    err or "empty file: no header (not a gictools trace)", 0, 0
                ) from None
            raise self._error(
                "truncated in the header" + (f" ({err})" if err else ""), 0, 0
            ) from None
        except Exception as e:  # the one choke point for the header
            raise self._error(f"header: undecodable ({_describe(e)})", 0, 0) from None
        if type(obj) is not dict and self.compression is not None:
            raise self._error(
                f"not a gictools trace ({self.compression}-compressed, but not a msgpack map inside)",
                0,
                0,
            )
        try:
            return F.validate_header(obj)
        except FieldError as e:
            raise self._error(e.what, 0, 0, e.field) from None
        except Exception as e:
            raise self._error(f"header: {_describe(e)}", 0, 0) from None

    def close(self) -> None:
        """Closes the file if the reader opened it (iteration's end closes it too)."""
        f, self._file = getattr(self, "_file", None), None
        if f is None:
            return
        if self._owned:
            f.close()

    def __del__(self) -> None:
        self.close()

    def __enter__(self) -> "TraceReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Record]:
        if self._iterated:
            raise RuntimeError("a TraceReader iterates once; open another for a second pass")
        self._iterated = True
        return self._records()

    # --- the loop ----------------------------------------------------------------------
    def _records(self) -> Iterator[Record]:
        up, src = self._up, self._src
        tell = up.tell
        n_its, vcpus = self.n_itses, self.vcpus
        checks = F.CHECKS
        check_msi, check_block = F.check_msi, F.check_msi_block
        i = 0
        end = self._end
        start = end
        try:
            for obj in up:
                i += 1
                start, end = end, tell()
                src.obj_start = end
                self.record_index, self.offset = i, start
                if type(obj) is not tuple or not obj:
                    raise FieldError(
                        f"a record must be a non-empty array, got {type(obj).__name__}"
                    )
                tag = obj[0]
                if tag == 1 and type(tag) is int:
                    rec = check_block(obj, n_its, vcpus)
                    self.events_read += rec[1]
                elif tag == 0 and type(tag) is int:
                    rec = check_msi(obj, n_its, vcpus)
                    self.events_read += 1
                else:
                    fn = checks.get(tag) if type(tag) is int else None
                    if fn is None:
                        raise FieldError(f"unknown record tag {F.show(tag)}", "tag")
                    rec = fn(obj, n_its, vcpus)
                    self.events_read += 1
                yield rec
        except TraceFormatError:
            raise
        except FieldError as e:
            raise self._error(e.what, i, start, e.field) from None
        except msgpack.OutOfData:
            raise self._error(_truncated(src, end), i + 1, end) from None
        except MemoryError:  # this process ran out (its limit), not the file's fault
            raise
        except Exception as e:
            # an error while unpacking: the record being read starts at `end`
            raise self._error(_describe(e), i + 1, end) from None
        finally:
            self.close()
        if src.n != end:
            raise self._error(_truncated(src, end), i + 1, end)
        err = _stream_error(src)
        if err:
            raise self._error(f"{err}; the records before this one are intact", i + 1, end)


def _stream_error(src: _Source) -> str | None:
    """A damaged or cut gzip/zstd stream's problem, if any."""
    return getattr(src.f, "error", None)


def _truncated(src: _Source, end: int) -> str:
    err = _stream_error(src)
    return f"truncated: the file ends inside this record ({src.n - end} of its bytes present)" + (
        f" ({err})" if err else ""
    )


def _describe(e: BaseException) -> str:
    if isinstance(e, (msgpack.BufferFull, _ObjectTooLarge)):
        return f"an object larger than {F.MAX_BUFFER_SIZE >> 20} MiB"
    if isinstance(e, msgpack.ExtraData):
        return "malformed msgpack"
    msg = str(e)
    return (
        f"malformed msgpack ({type(e).__name__}: {msg})"
        if msg
        else f"malformed msgpack ({type(e).__name__})"
    )


def read_header(path_or_fileobj: TraceInput) -> dict[str, Any]:
    """The validated header of a trace."""
    with TraceReader(path_or_fileobj) as rd:
        return rd.header


def count_records(path_or_fileobj: TraceInput) -> dict[str, int]:
    """{tag name: records} and "events" (MSIs, block or single) over the whole trace."""
    counts = dict.fromkeys(F.TAG_NAMES.values(), 0)
    events = 0
    with TraceReader(path_or_fileobj) as rd:
        for rec in rd:
            tag = rec[0]
            counts[F.TAG_NAMES[tag]] += 1
            events += rec[1] if tag == F.MSI_BLOCK else tag == F.MSI
    counts["events"] = events
    return counts
