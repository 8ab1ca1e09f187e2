"""Streaming reader of trace format v1 (docs/trace-format.md).

The one choke point for trace input: every problem in a file, whatever layer
notices it (gzip, msgpack, numpy, a type check), leaves as TraceFormatError
naming the record index, its byte offset and the field. Objects are numbered
in file order: the header is record 0, the first record proper is 1. Offsets
count bytes of the msgpack stream (after gzip decompression when the file is
gzip-compressed).

    rd = TraceReader("t.msgpack")
    rd.header["vm"]["vcpus"]
    for rec in rd:                    # tuples, see gictools.trace.format
        rd.record_index, rd.offset    # of rec
"""

import os
import zlib

import msgpack
import numpy as np

from gictools.errors import TraceFormatError
from gictools.trace import format as F
from gictools.trace.format import FieldError

_GZIP_MAGIC = b"\x1f\x8b"
_U32, _T = F.U32_MAX, F.T_MAX
_FIELDS = F.FIELDS


class _Source:
    """file-like for the Unpacker: counts bytes handed over (truncation check), and
    puts back the bytes peeked at for the gzip magic."""

    __slots__ = ("f", "n", "pre")

    def __init__(self, f, pre=b""):
        self.f, self.n, self.pre = f, 0, pre

    def read(self, size=-1):
        if self.pre:
            data, self.pre = self.pre, b""
            if size is None or size < 0:
                data += self.f.read()
            elif size > len(data):
                data += self.f.read(size - len(data))
        else:
            data = self.f.read(size)
        self.n += len(data)
        return data


class _Gunzip:
    """Streaming gzip decompression (multi-member) that hands over every byte it could
    decompress before reporting a damaged or cut stream: the reader then fails at the
    record where the good data ends. .error holds the gzip problem, if any."""

    __slots__ = ("f", "d", "tail", "error", "done")

    def __init__(self, f):
        self.f, self.d, self.tail, self.error, self.done = (
            f,
            zlib.decompressobj(31),
            b"",
            None,
            False,
        )

    def read(self, size):
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

    def close(self):
        pass


def _open(path_or_fileobj):
    """(binary file, name or None, owned): gzip unwrapped by magic."""
    if isinstance(path_or_fileobj, (str, bytes, os.PathLike)):
        f = open(path_or_fileobj, "rb")
        name, owned = os.fsdecode(path_or_fileobj), True
    else:
        f, owned = path_or_fileobj, False
        name = getattr(f, "name", None)
        name = name if isinstance(name, str) else None
    try:
        magic = f.read(2)
        if magic == _GZIP_MAGIC:
            return _Source(_Gunzip(_Source(f, magic))), name, f, owned
        return _Source(f, magic), name, f, owned
    except BaseException:
        if owned:
            f.close()
        raise


class TraceReader:
    """Iterates a trace's records after validating its header (see module doc)."""

    def __init__(self, path_or_fileobj):
        self.record_index = 0  # index of the record last yielded (0: the header)
        self.offset = 0  # byte offset of the record last yielded
        self._iterated = False
        self._src, self.path, self._file, self._owned = _open(path_or_fileobj)
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
        self.version = tuple(self.header["version"])

    def _error(self, what, record=None, offset=None, field=None):
        return TraceFormatError(what, record=record, offset=offset, field=field, path=self.path)

    def _read_header(self):
        try:
            obj = self._up.unpack()
        except msgpack.OutOfData:
            gz = _gzip_error(self._src)
            if self._src.n == 0:
                raise self._error(
                    gz or "empty file: no header (not a gictools trace)", 0, 0
                ) from None
            raise self._error(
                "truncated in the header" + (f" ({gz})" if gz else ""), 0, 0
            ) from None
        except Exception as e:  # the one choke point for the header
            raise self._error(f"header: undecodable ({_describe(e)})", 0, 0) from None
        try:
            return F.validate_header(obj)
        except FieldError as e:
            raise self._error(e.what, 0, 0, e.field) from None
        except Exception as e:
            raise self._error(f"header: {_describe(e)}", 0, 0) from None

    def close(self):
        """Closes the file if the reader opened it (iteration's end closes it too)."""
        f, self._file = getattr(self, "_file", None), None
        if f is None:
            return
        if self._owned:
            f.close()

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __iter__(self):
        if self._iterated:
            raise RuntimeError("a TraceReader iterates once; open another for a second pass")
        self._iterated = True
        return self._records()

    # --- the loop ----------------------------------------------------------------------
    def _records(self):
        up, src = self._up, self._src
        tell = up.tell
        n_its, vcpus = self.n_itses, self.vcpus
        small = {
            F.COMMAND: self._command,
            F.REG: self._reg,
            F.MEM: self._mem,
            F.CTRL: self._ctrl,
            F.EXPECT: self._expect,
            F.ACK: self._ack,
        }
        frombuffer = np.frombuffer
        i = 0
        end = self._end
        start = end
        try:
            for obj in up:
                i += 1
                start, end = end, tell()
                self.record_index, self.offset = i, start
                if type(obj) is not tuple or not obj:
                    raise FieldError(
                        f"a record must be a non-empty array, got {type(obj).__name__}"
                    )
                tag = obj[0]
                if tag == 0 and type(tag) is int:  # MSI
                    if len(obj) != 6:
                        obj = _trim(obj, 6)
                    _, t, inj, its, dev, ev = obj
                    if not (type(t) is int and 0 <= t <= _T):
                        _bad_t(t)
                    if inj is not None and not (type(inj) is int and 0 <= inj <= _U32):
                        _bad_u32(inj, "injector")
                    if not (type(its) is int and 0 <= its < n_its):
                        _bad_its(its, n_its)
                    if not (type(dev) is int and 0 <= dev <= _U32):
                        _bad_u32(dev, "device_id")
                    if not (type(ev) is int and 0 <= ev <= _U32):
                        _bad_u32(ev, "event_id")
                    yield obj
                elif tag == 1 and type(tag) is int:  # MSI_BLOCK
                    if len(obj) != 7:
                        obj = _trim(obj, 7)
                    _, n, its, ts, dev, ev, inj = obj
                    if not (type(n) is int and 1 <= n <= F.MAX_BLOCK):
                        if type(n) is not int:
                            raise FieldError(f"expected int, got {type(n).__name__}", "n")
                        raise FieldError(f"MSI_BLOCK of {n} events (1..{F.MAX_BLOCK})", "n")
                    if not (type(its) is int and 0 <= its < n_its):
                        _bad_its(its, n_its)
                    _col(ts, 8 * n, n, "ts")
                    _col(dev, 4 * n, n, "dev")
                    _col(ev, 4 * n, n, "ev")
                    tsa = frombuffer(ts, "<u8")
                    if tsa.view("<i8").min() < 0:
                        raise FieldError("timestamp >= 2^63", "ts")
                    if inj is not None:
                        _col(inj, 4 * n, n, "inj")
                        inj = frombuffer(inj, "<u4")
                    yield (1, n, its, tsa, frombuffer(dev, "<u4"), frombuffer(ev, "<u4"), inj)
                else:
                    fn = small.get(tag) if type(tag) is int else None
                    if fn is None:
                        raise FieldError(f"unknown record tag {tag!r}", "tag")
                    yield fn(obj, n_its, vcpus)
        except TraceFormatError:
            raise
        except FieldError as e:
            raise self._error(e.what, i, start, e.field) from None
        except msgpack.OutOfData:
            raise self._error(_truncated(src, end), i + 1, end) from None
        except Exception as e:
            # an error while unpacking: the record being read starts at `end`
            raise self._error(_describe(e), i + 1, end) from None
        finally:
            self.close()
        if src.n != end:
            raise self._error(_truncated(src, end), i + 1, end)
        gz = _gzip_error(src)
        if gz:
            raise self._error(f"{gz}; the records before this one are intact", i + 1, end)

    # --- small records (tag, t_ns, injector, ...) -----------------------------------------
    @staticmethod
    def _command(obj, n_its, vcpus):
        t, inj, its, raw = _head(obj, 5)
        if not (type(its) is int and 0 <= its < n_its):
            _bad_its(its, n_its)
        if type(raw) is not bytes:
            raise FieldError(f"expected bin, got {type(raw).__name__}", "raw")
        if len(raw) != F.COMMAND_SIZE:
            raise FieldError(f"{len(raw)} bytes, an ITS command has {F.COMMAND_SIZE}", "raw")
        return (F.COMMAND, t, inj, its, raw)

    @staticmethod
    def _reg(obj, n_its, vcpus):
        t, inj, frame, index, offset, size, value, is_write = _head(obj, 9)
        if frame in ("its", "its-user"):
            if not (type(index) is int and 0 <= index < n_its):
                _bad_its(index, n_its, "index")
        elif frame == "redist":
            if not (type(index) is int and 0 <= index < vcpus):
                _bad_vcpu(index, vcpus, "index")
        else:
            raise FieldError(f"frame {frame!r} is not one of {', '.join(F.FRAMES)}", "frame")
        F._int(offset, "offset", 0, _U32)
        if size not in F.REG_SIZES or type(size) is not int:
            raise FieldError(f"size {size!r} is not 4 or 8", "size")
        if type(is_write) is not bool:
            raise FieldError(f"expected bool, got {type(is_write).__name__}", "is_write")
        if value is not None or is_write:
            F._int(value, "value", 0, (1 << (8 * size)) - 1)
        return (F.REG, t, inj, frame, index, offset, size, value, is_write)

    @staticmethod
    def _mem(obj, n_its, vcpus):
        t, inj, gpa, data = _head(obj, 5)
        F._int(gpa, "gpa")
        if type(data) is not bytes:
            raise FieldError(f"expected bin, got {type(data).__name__}", "data")
        if gpa + len(data) > F.U64_MAX + 1:
            raise FieldError("write ends beyond 2^64", "data")
        return (F.MEM, t, inj, gpa, data)

    @staticmethod
    def _ctrl(obj, n_its, vcpus):
        t, inj, op, its, ret = _head(obj, 6)
        if op not in F.CTRL_OPS or type(op) is not str:
            raise FieldError(f"unknown operation {op!r} (one of {', '.join(F.CTRL_OPS)})", "op")
        if its is None:
            if op not in F.CTRL_VM_OPS:
                raise FieldError(f"{op} needs an ITS index", "its")
        elif not (type(its) is int and 0 <= its < n_its):
            _bad_its(its, n_its)
        if ret is not None:
            F._int(ret, "ret", -(1 << 63), F.U64_MAX)
        return (F.CTRL, t, inj, op, its, ret)

    @staticmethod
    def _expect(obj, n_its, vcpus):
        t, inj, kind, args = _head(obj, 5)
        F._str(kind, "kind")
        F.expect_args(kind, args, vcpus)
        return (F.EXPECT, t, inj, kind, args)

    @staticmethod
    def _ack(obj, n_its, vcpus):
        t, inj, vcpu, intid = _head(obj, 5)
        if not (type(vcpu) is int and 0 <= vcpu < vcpus):
            _bad_vcpu(vcpu, vcpus, "vcpu")
        F._int(intid, "intid", 0, _U32)
        return (F.ACK, t, inj, vcpu, intid)


# --- helpers (cold paths raise FieldError) ---------------------------------------------------
def _trim(obj, n):
    """A record's first n elements; later elements (a newer minor version's) are ignored."""
    if len(obj) < n:
        tag = obj[0]
        names = _FIELDS[tag]
        raise FieldError(
            f"{F.TAG_NAMES[tag]} record has {len(obj)} elements, expected {n}", names[len(obj) - 1]
        )
    return obj[:n]


def _head(obj, n):
    """Checks t_ns and injector of a small record; returns elements 1..n-1."""
    if len(obj) != n:
        obj = _trim(obj, n)
    t, inj = obj[1], obj[2]
    if not (type(t) is int and 0 <= t <= _T):
        _bad_t(t)
    if inj is not None and not (type(inj) is int and 0 <= inj <= _U32):
        _bad_u32(inj, "injector")
    return obj[1:]


def _bad_t(t):
    F._int(t, "t_ns", 0, _T)


def _bad_u32(v, field):
    F._int(v, field, 0, _U32)


def _bad_its(v, n_its, field="its"):
    if type(v) is not int:
        raise FieldError(f"expected int, got {type(v).__name__}", field)
    raise FieldError(
        f"ITS index {v} out of range (the header declares {n_its} ITS{'es' if n_its != 1 else ''})",
        field,
    )


def _bad_vcpu(v, vcpus, field):
    if type(v) is not int:
        raise FieldError(f"expected int, got {type(v).__name__}", field)
    raise FieldError(f"vCPU index {v} out of range (the header declares {vcpus} vCPUs)", field)


def _col(b, nbytes, n, field):
    if type(b) is not bytes:
        raise FieldError(f"expected bin, got {type(b).__name__}", field)
    if len(b) != nbytes:
        raise FieldError(f"column of {len(b)} bytes, expected {nbytes} for n={n}", field)


def _gzip_error(src):
    return src.f.error if isinstance(src.f, _Gunzip) else None


def _truncated(src, end):
    gz = _gzip_error(src)
    return f"truncated: the file ends inside this record ({src.n - end} of its bytes present)" + (
        f" ({gz})" if gz else ""
    )


def _describe(e):
    if isinstance(e, msgpack.BufferFull):
        return f"an object larger than {F.MAX_BUFFER_SIZE >> 20} MiB"
    if isinstance(e, msgpack.ExtraData):
        return "malformed msgpack"
    msg = str(e)
    return (
        f"malformed msgpack ({type(e).__name__}: {msg})"
        if msg
        else f"malformed msgpack ({type(e).__name__})"
    )


def read_header(path_or_fileobj) -> dict:
    """The validated header of a trace."""
    with TraceReader(path_or_fileobj) as rd:
        return rd.header


def count_records(path_or_fileobj) -> dict:
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
