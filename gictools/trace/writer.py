"""Streaming writer of trace format v1 (docs/trace-format.md).

    with TraceWriter("t.msgpack", vm={"vcpus": 2, "itses": [{"base": 0x8080000}]}) as w:
        w.command(0, raw32)
        w.msi(0, device_id, event_id, t_ns=1000)

Every record goes through the format's one validation (gictools.trace.format.CHECKS, the
reader's too); a bad argument raises ValueError (FieldError naming the field): the caller's
bug, not the file's. The records go to a temporary file next to path; close() writes the
header's counts into it (format 1.1) and then, in one step, renames it onto path, or
compresses it into path when the name ends in .gz or .zst (or compression= says so). An
exception inside the with block removes the temporary file and leaves path untouched.
path may also be a binary stream (stdout): the finished trace is copied into it at close().
Single msi() calls are buffered into columnar MSI_BLOCK records, flushed before any other
record so the record order is the call order. t_ns defaults to the last timestamp written.
"""

import os
import struct
import sys
import tempfile
import zlib
from array import array
from collections.abc import Callable, Sequence
from typing import IO, Any, BinaryIO

import msgpack
import numpy as np

from gictools.errors import StrPath
from gictools.outputs import AtomicOutput, WholeOrNothing
from gictools.trace import format as F

_U32, _T = F.U32_MAX, F.T_MAX
_BIG_ENDIAN = sys.byteorder == "big"
assert array("I").itemsize == 4 and array("Q").itemsize == 8
COMPRESSIONS = ("none", "gzip", "zstd")
_SUFFIXES = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}
_CHUNK = 1 << 20


def compression_for(name: StrPath) -> str:
    """The compression a file name asks for: gzip (.gz), zstd (.zst, .zstd) or none."""
    return _SUFFIXES.get(os.path.splitext(os.fspath(name))[1].lower(), "none")


def _counts_bytes(records: int, msi_blocks: int, msis: int) -> bytes:
    """The header's counts map in a fixed-width encoding (uint 64 each), so close() can
    write the final numbers over the placeholder without moving a byte."""
    out = [b"\x83"]
    for k, v in zip(F.COUNTS_KEYS, (records, msi_blocks, msis)):
        out.append(msgpack.packb(k) + b"\xcf" + struct.pack(">Q", v))
    return b"".join(out)


def _num(v: Any) -> Any:
    """numpy integers as int (the format's checks take exact types); anything else as is."""
    return int(v) if isinstance(v, np.integer) else v


_Column = np.ndarray | Sequence[int]
"""An MSI_BLOCK column: a numpy integer array or a sequence of ints."""


def _file(out: AtomicOutput | None) -> IO[bytes]:
    assert out is not None  # a TraceWriter not on a stream has its AtomicOutput
    return out.file


class TraceWriter(WholeOrNothing):
    """Context manager writing one trace file (see module doc)."""

    def __init__(
        self,
        path: str | os.PathLike[str] | BinaryIO,
        vm: dict[str, Any],
        source: str = "",
        metadata: dict[str, Any] | None = None,
        *,
        compression: str | None = None,
    ) -> None:
        self._stream: BinaryIO | None
        self.path: str | None
        if isinstance(path, (str, bytes, os.PathLike)):
            self._stream, self.path = None, os.fsdecode(path)
            if compression is None:
                compression = compression_for(self.path)
        else:
            self._stream, self.path = path, getattr(path, "name", None)
            if compression is None:
                compression = "none"
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression {compression!r} is not one of {', '.join(COMPRESSIONS)}")
        self.compression = compression
        header = {
            "format": F.FORMAT_NAME,
            "version": list(F.VERSION),
            "vm": vm,
            "source": source,
            "metadata": {} if metadata is None else metadata,
        }
        h = F.validate_header(header)  # FieldError is a ValueError
        h.pop("counts")
        vmh = {k: v for k, v in h["vm"].items() if v is not None}
        if vm.get("vcpu_ids") is None:
            vmh.pop("vcpu_ids")  # the default, implied
        h["vm"] = vmh
        self.header = h
        self.vcpus = vmh["vcpus"]
        self.n_itses = len(vmh["itses"])
        self._packer = msgpack.Packer(use_bin_type=True, autoreset=True)
        self._t = 0
        self.records = 0  # records written, MSI_BLOCKs counted once each
        self.msi_blocks = 0
        self.events = 0  # MSIs written
        self._b_its: int | None = None  # the pending block's ITS, None when no block pending
        self._b_inj = False
        self._new_columns()
        pk = self._packer
        head = pk.pack_map_header(len(h) + 1) + b"".join(
            pk.pack(k) + pk.pack(v) for k, v in h.items()
        )
        head += pk.pack("counts")
        self._counts_at = len(head)
        head += _counts_bytes(0, 0, 0)
        self._closed = False
        # the AtomicOutput behind path (None when writing to a stream)
        self._out: AtomicOutput | None = None
        self._direct = False  # records go straight into the output's temporary file
        self._f: IO[bytes]
        if self.path is not None and self._stream is None:
            self._out = AtomicOutput(self.path)
            self._direct = compression == "none" and self._out.kind == "file"
        if self._direct and self._out is not None:
            self._f = self._out.file
        else:  # finished at close(): compressed or copied into the output
            d = (
                None
                if self._stream is not None or self.path is None
                else os.path.dirname(os.path.abspath(self.path))
            )
            try:
                self._f = tempfile.TemporaryFile(dir=d, buffering=_CHUNK)
            except OSError as e:
                if self._out is not None:
                    self._out.abort()
                raise OSError(e.errno, e.strerror, self.path) from None
        try:
            self._f.write(head)
        except BaseException:
            self.abort()
            raise

    def commit(self) -> None:
        """Leaving a ``with`` block normally closes the writer (WholeOrNothing)."""
        self.close()

    @property
    def msis(self) -> int:
        return self.events

    def close(self) -> None:
        """Flush, write the counts into the header, then put the trace at its place."""
        if self._closed:
            return
        try:
            self._flush_msis()
            f = self._f
            f.seek(self._counts_at)
            f.write(_counts_bytes(self.records, self.msi_blocks, self.events))
            f.flush()
            if self._direct and self._out is not None:
                self._out.commit()
            else:
                f.seek(0)
                dst = self._stream if self._stream is not None else _file(self._out)
                _copy(f, dst, self.compression)
                dst.flush()
                f.close()
                if self._out is not None:
                    self._out.commit()
        except BaseException:
            self.abort()
            raise
        self._closed = True

    def abort(self) -> None:
        """Drop everything written: remove the temporary file; path is untouched."""
        if self._closed:
            return
        self._closed = True
        try:
            if not self._direct:
                self._f.close()
        finally:
            if self._out is not None:
                self._out.abort()

    # --- MSIs --------------------------------------------------------------------------
    def _new_columns(self) -> None:
        self._ts, self._dev, self._ev, self._inj = array("Q"), array("I"), array("I"), array("I")
        self._a_ts, self._a_dev = self._ts.append, self._dev.append
        self._a_ev, self._a_inj = self._ev.append, self._inj.append

    def msi(
        self,
        its: int,
        device_id: int,
        event_id: int,
        t_ns: int | None = None,
        injector: int | None = None,
    ) -> None:
        """One MSI, buffered into the current MSI_BLOCK."""
        if t_ns is None:
            t_ns = self._t
        _, t_ns, injector, its, device_id, event_id = F.check_msi(
            (F.MSI, _num(t_ns), _num(injector), _num(its), _num(device_id), _num(event_id)),
            self.n_itses,
            self.vcpus,
        )
        has_inj = injector is not None
        if its != self._b_its or has_inj != self._b_inj:
            self._flush_msis()
            self._b_its, self._b_inj = its, has_inj
        if has_inj:
            self._a_inj(injector)
        self._a_ts(t_ns)
        self._a_dev(device_id)
        self._a_ev(event_id)
        self._t = t_ns
        if len(self._ts) >= F.MAX_BLOCK:
            self._flush_msis()

    def _flush_msis(self) -> None:
        if self._b_its is None:
            return
        cols = [self._ts, self._dev, self._ev] + ([self._inj] if self._b_inj else [])
        if _BIG_ENDIAN:
            for c in cols:
                c.byteswap()
        n = len(self._ts)
        its, has_inj = self._b_its, self._b_inj
        self._b_its = None
        if n:
            self._block(
                its,
                n,
                self._ts.tobytes(),
                self._dev.tobytes(),
                self._ev.tobytes(),
                self._inj.tobytes() if has_inj else None,
            )
        self._new_columns()

    def _block(self, its: int, n: int, ts: bytes, dev: bytes, ev: bytes, inj: bytes | None) -> None:
        rec = (F.MSI_BLOCK, n, its, ts, dev, ev, inj)
        F.check_msi_block(rec, self.n_itses, self.vcpus)
        self._f.write(self._packer.pack(rec))
        self.records += 1
        self.msi_blocks += 1
        self.events += n

    def msi_block(
        self,
        its: int,
        ts: _Column,
        dev: _Column,
        ev: _Column,
        inj: _Column | None = None,
    ) -> None:
        """A run of MSIs on one ITS from columns (numpy arrays or int sequences of equal
        length); written as MSI_BLOCK records of at most MAX_BLOCK events."""
        self._flush_msis()
        ts = _column(ts, "<u8", "ts")
        dev = _column(dev, "<u4", "dev")
        ev = _column(ev, "<u4", "ev")
        inj = None if inj is None else _column(inj, "<u4", "inj")
        n = len(ts)
        if len(dev) != n or len(ev) != n or (inj is not None and len(inj) != n):
            raise ValueError(
                f"column lengths differ: ts {n}, dev {len(dev)}, ev {len(ev)}"
                + ("" if inj is None else f", inj {len(inj)}")
            )
        its = _num(its)
        for s in range(0, n, F.MAX_BLOCK):
            e = min(s + F.MAX_BLOCK, n)
            self._block(
                its,
                e - s,
                ts[s:e].tobytes(),
                dev[s:e].tobytes(),
                ev[s:e].tobytes(),
                None if inj is None else inj[s:e].tobytes(),
            )
        if n:
            self._t = int(ts[-1])

    # --- other records -------------------------------------------------------------------
    def _record(
        self,
        check: Callable[[tuple[Any, ...], int, int], tuple[Any, ...]],
        tag: int,
        t_ns: int | None,
        injector: int | None,
        *fields: Any,
    ) -> None:
        """Checks the record with the format's validation, then writes it."""
        self._flush_msis()
        if t_ns is None:
            t_ns = self._t
        rec = check((tag, _num(t_ns), _num(injector), *fields), self.n_itses, self.vcpus)
        self._f.write(self._packer.pack(rec))
        self._t = rec[1]
        self.records += 1

    def command(
        self, its: int, raw32: bytes, t_ns: int | None = None, injector: int | None = None
    ) -> None:
        """An ITS command, the 32 bytes the guest wrote into the queue."""
        raw = bytes(raw32) if isinstance(raw32, (bytearray, memoryview)) else raw32
        self._record(F.check_command, F.COMMAND, t_ns, injector, _num(its), raw)

    def reg(
        self,
        frame: str,
        index: int,
        offset: int,
        size: int,
        value: int | None,
        is_write: bool,
        t_ns: int | None = None,
        injector: int | None = None,
    ) -> None:
        """A register access: frame "its" (index = ITS) or "redist" (index = vCPU)."""
        self._record(
            F.check_reg,
            F.REG,
            t_ns,
            injector,
            frame,
            _num(index),
            _num(offset),
            _num(size),
            _num(value),
            is_write,
        )

    def mem(
        self, gpa: int, data: bytes, t_ns: int | None = None, injector: int | None = None
    ) -> None:
        """A guest memory write of data at guest-physical address gpa."""
        data = bytes(data) if isinstance(data, (bytearray, memoryview)) else data
        self._record(F.check_mem, F.MEM, t_ns, injector, _num(gpa), data)

    def ctrl(
        self,
        op: str,
        its: int | None = None,
        ret: int | None = None,
        t_ns: int | None = None,
        injector: int | None = None,
    ) -> None:
        """A device control operation (F.CTRL_OPS) and the result observed, if any."""
        self._record(F.check_ctrl, F.CTRL, t_ns, injector, op, _num(its), _num(ret))

    def expect(
        self, kind: str, args: dict[str, Any], t_ns: int | None = None, injector: int | None = None
    ) -> None:
        """An expectation on model state (F.EXPECT_KINDS; other kinds are written as given)."""
        args = dict(args) if isinstance(args, dict) else args
        self._record(F.check_expect, F.EXPECT, t_ns, injector, kind, args)

    def ack(
        self, vcpu: int, intid: int, t_ns: int | None = None, injector: int | None = None
    ) -> None:
        """The vCPU took the LPI: its pending state clears."""
        self._record(F.check_ack, F.ACK, t_ns, injector, _num(vcpu), _num(intid))


def _copy(src: IO[bytes], dst: IO[bytes], compression: str) -> None:
    """src's bytes into dst, compressed as asked."""
    if compression == "zstd":
        import pyarrow as pa  # a dependency already: its zstd codec, imported only here

        class _W:  # what pyarrow's PythonFile needs of dst
            closed = False
            write, flush = dst.write, dst.flush

            def close(self) -> None:
                pass

        z = pa.CompressedOutputStream(pa.PythonFile(_W(), mode="w"), "zstd")
        for chunk in iter(lambda: src.read(_CHUNK), b""):
            z.write(chunk)
        z.close()
        return
    if compression == "gzip":
        z = zlib.compressobj(6, zlib.DEFLATED, 31)
        for chunk in iter(lambda: src.read(_CHUNK), b""):
            dst.write(z.compress(chunk))
        dst.write(z.flush())
        return
    for chunk in iter(lambda: src.read(_CHUNK), b""):
        dst.write(chunk)


def _column(x: _Column, dtype: str, field: str) -> np.ndarray:
    """x as a contiguous numpy array of dtype; ValueError if a value does not fit it (the
    format's range checks come after, in check_msi_block)."""
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{field}: expected a 1-d column, got shape {a.shape}")
    if a.size == 0:
        return np.zeros(0, dtype)
    if a.dtype.kind not in "iu":
        raise ValueError(f"{field}: expected integers, got dtype {a.dtype}")
    dt = np.dtype(dtype)
    if a.dtype == dt:
        return np.ascontiguousarray(a)
    if int(a.min()) < 0 or int(a.max()) > np.iinfo(dt).max:
        raise ValueError(f"{field}: values outside 0..{np.iinfo(dt).max}")
    return a.astype(dt)
