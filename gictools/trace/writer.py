"""Streaming writer of trace format v1 (docs/trace-format.md).

    with TraceWriter("t.msgpack", vm={"vcpus": 2, "itses": [{"base": 0x8080000}]}) as w:
        w.command(0, raw32)
        w.msi(0, device_id, event_id, t_ns=1000)

Writes through gictools.outputs.AtomicOutput: path appears on a successful close();
an exception inside the with block removes the temporary file and leaves path
untouched. Single msi() calls are buffered into columnar MSI_BLOCK records
(array.array columns), flushed before any other record so the record order is
the call order. t_ns defaults to the last timestamp written. Bad arguments
raise ValueError (they are the caller's bugs, not the file's).
"""

import os
import sys
from array import array

import msgpack
import numpy as np

from gictools.outputs import AtomicOutput
from gictools.trace import format as F
from gictools.trace.format import FieldError

_U32, _T = F.U32_MAX, F.T_MAX
_BIG_ENDIAN = sys.byteorder == "big"
assert array("I").itemsize == 4 and array("Q").itemsize == 8


class TraceWriter:
    """Context manager writing one trace file (see module doc)."""

    def __init__(self, path, vm, source="", metadata=None):
        self.path = os.fspath(path)
        header = {
            "format": F.FORMAT_NAME,
            "version": list(F.VERSION),
            "vm": vm,
            "source": source,
            "metadata": {} if metadata is None else metadata,
        }
        h = F.validate_header(header)  # FieldError is a ValueError
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
        self.events = 0  # MSIs written
        self._b_its = None  # the pending block's ITS, None when no block pending
        self._b_inj = False
        self._new_columns()
        self._out = AtomicOutput(self.path)
        self._f = self._out.file
        self._closed = False
        try:
            self._f.write(self._packer.pack(h))
        except BaseException:
            self.abort()
            raise

    # --- context manager ---------------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def close(self):
        """Flush, then rename the temporary file onto path."""
        if self._closed:
            return
        try:
            self._flush_msis()
            self._out.commit()
        except BaseException:
            self.abort()
            raise
        self._closed = True

    def abort(self):
        """Drop everything written: remove the temporary file; path is untouched."""
        if self._closed:
            return
        self._closed = True
        self._out.abort()

    # --- MSIs --------------------------------------------------------------------------
    def _new_columns(self):
        self._ts, self._dev, self._ev, self._inj = array("Q"), array("I"), array("I"), array("I")
        self._a_ts, self._a_dev = self._ts.append, self._dev.append
        self._a_ev, self._a_inj = self._ev.append, self._inj.append

    def msi(self, its, device_id, event_id, t_ns=None, injector=None):
        """One MSI, buffered into the current MSI_BLOCK."""
        if t_ns is None:
            t_ns = self._t
        elif type(t_ns) is not int or not 0 <= t_ns <= _T:
            t_ns = _int(t_ns, "t_ns", 0, _T)
        if type(device_id) is not int or not 0 <= device_id <= _U32:
            device_id = _int(device_id, "device_id", 0, _U32)
        if type(event_id) is not int or not 0 <= event_id <= _U32:
            event_id = _int(event_id, "event_id", 0, _U32)
        if injector is None:
            if its is not self._b_its or self._b_inj:
                self._start_block(its, False)
        else:
            if type(injector) is not int or not 0 <= injector <= _U32:
                injector = _int(injector, "injector", 0, _U32)
            if its is not self._b_its or not self._b_inj:
                self._start_block(its, True)
            self._a_inj(injector)
        self._a_ts(t_ns)
        self._a_dev(device_id)
        self._a_ev(event_id)
        self._t = t_ns
        if len(self._ts) >= F.MAX_BLOCK:
            self._flush_msis()

    def _start_block(self, its, has_inj):
        if its == self._b_its and has_inj == self._b_inj and type(its) is int:
            self._b_its = its  # same ITS as an equal int object: same block
            return
        self._flush_msis()
        self._check_its(its)
        self._b_its, self._b_inj = its, has_inj

    def _flush_msis(self):
        if self._b_its is None:
            return
        cols = [self._ts, self._dev, self._ev] + ([self._inj] if self._b_inj else [])
        if _BIG_ENDIAN:
            for c in cols:
                c.byteswap()
        n = len(self._ts)
        if n:
            self._f.write(
                self._packer.pack(
                    [
                        F.MSI_BLOCK,
                        n,
                        self._b_its,
                        self._ts.tobytes(),
                        self._dev.tobytes(),
                        self._ev.tobytes(),
                        self._inj.tobytes() if self._b_inj else None,
                    ]
                )
            )
            self.records += 1
            self.events += n
        self._b_its = None
        self._new_columns()

    def msi_block(self, its, ts, dev, ev, inj=None):
        """A run of MSIs on one ITS from columns (numpy arrays or int sequences of equal
        length); written as MSI_BLOCK records of at most MAX_BLOCK events."""
        self._flush_msis()
        self._check_its(its)
        ts = _column(ts, "<u8", _T, "ts")
        dev = _column(dev, "<u4", _U32, "dev")
        ev = _column(ev, "<u4", _U32, "ev")
        inj = None if inj is None else _column(inj, "<u4", _U32, "inj")
        n = len(ts)
        if len(dev) != n or len(ev) != n or (inj is not None and len(inj) != n):
            raise ValueError(
                f"column lengths differ: ts {n}, dev {len(dev)}, ev {len(ev)}"
                + ("" if inj is None else f", inj {len(inj)}")
            )
        pack, write = self._packer.pack, self._f.write
        for s in range(0, n, F.MAX_BLOCK):
            e = min(s + F.MAX_BLOCK, n)
            write(
                pack(
                    [
                        F.MSI_BLOCK,
                        e - s,
                        its,
                        ts[s:e].tobytes(),
                        dev[s:e].tobytes(),
                        ev[s:e].tobytes(),
                        None if inj is None else inj[s:e].tobytes(),
                    ]
                )
            )
            self.records += 1
        self.events += n
        if n:
            self._t = int(ts[-1])

    # --- other records -------------------------------------------------------------------
    def _head(self, t_ns, injector):
        """Flushes pending MSIs; the checked (t_ns, injector) of the next record."""
        self._flush_msis()
        if t_ns is None:
            t_ns = self._t
        else:
            t_ns = self._t = _int(t_ns, "t_ns", 0, _T)
        if injector is not None:
            injector = _int(injector, "injector", 0, _U32)
        self.records += 1
        return t_ns, injector

    def _check_its(self, its):
        if not (type(its) is int and 0 <= its < self.n_itses):
            raise ValueError(
                f"ITS index {its!r} out of range (the header declares {self.n_itses} ITSes)"
            )

    def _check_vcpu(self, vcpu, what="vcpu"):
        if not (type(vcpu) is int and 0 <= vcpu < self.vcpus):
            raise ValueError(
                f"{what}: vCPU index {vcpu!r} out of range (the header declares {self.vcpus} vCPUs)"
            )

    def _write(self, rec):
        self._f.write(self._packer.pack(rec))

    def command(self, its, raw32, t_ns=None, injector=None):
        """An ITS command, the 32 bytes the guest wrote into the queue."""
        self._check_its(its)
        if not isinstance(raw32, (bytes, bytearray, memoryview)):
            raise ValueError(f"raw32: expected bytes, got {type(raw32).__name__}")
        raw = bytes(raw32)
        if len(raw) != F.COMMAND_SIZE:
            raise ValueError(f"raw32: {len(raw)} bytes, an ITS command has {F.COMMAND_SIZE}")
        t, inj = self._head(t_ns, injector)
        self._write((F.COMMAND, t, inj, its, raw))

    def reg(self, frame, index, offset, size, value, is_write, t_ns=None, injector=None):
        """A register access: frame "its" (index = ITS) or "redist" (index = vCPU)."""
        if frame in ("its", "its-user"):
            self._check_its(index)
        elif frame == "redist":
            self._check_vcpu(index, "index")
        else:
            raise ValueError(f"frame {frame!r} is not one of {', '.join(F.FRAMES)}")
        offset = _int(offset, "offset", 0, _U32)
        if type(size) is not int or size not in F.REG_SIZES:
            raise ValueError(f"size {size!r} is not 4 or 8")
        if type(is_write) is not bool:
            raise ValueError(f"is_write: expected bool, got {type(is_write).__name__}")
        if value is not None or is_write:
            value = _int(value, "value", 0, (1 << (8 * size)) - 1)
        t, inj = self._head(t_ns, injector)
        self._write((F.REG, t, inj, frame, index, offset, size, value, is_write))

    def mem(self, gpa, data, t_ns=None, injector=None):
        """A guest memory write of data at guest-physical address gpa."""
        gpa = _int(gpa, "gpa", 0, F.U64_MAX)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ValueError(f"data: expected bytes, got {type(data).__name__}")
        data = bytes(data)
        if len(data) > F.MAX_MEM:
            raise ValueError(f"data: {len(data)} bytes, a MEM record holds at most {F.MAX_MEM}")
        if gpa + len(data) > F.U64_MAX + 1:
            raise ValueError("data: write ends beyond 2^64")
        t, inj = self._head(t_ns, injector)
        self._write((F.MEM, t, inj, gpa, data))

    def ctrl(self, op, its=None, ret=None, t_ns=None, injector=None):
        """A device control operation (F.CTRL_OPS) and the result observed, if any."""
        if op not in F.CTRL_OPS:
            raise ValueError(f"unknown operation {op!r} (one of {', '.join(F.CTRL_OPS)})")
        if its is None:
            if op not in F.CTRL_VM_OPS:
                raise ValueError(f"{op} needs an ITS index")
        else:
            self._check_its(its)
        if ret is not None:
            ret = _int(ret, "ret", -(1 << 63), F.U64_MAX)
        t, inj = self._head(t_ns, injector)
        self._write((F.CTRL, t, inj, op, its, ret))

    def expect(self, kind, args, t_ns=None, injector=None):
        """An expectation on model state (F.EXPECT_KINDS; other kinds are written as given)."""
        if type(kind) is not str:
            raise ValueError(f"kind: expected str, got {type(kind).__name__}")
        F.expect_args(kind, args, self.vcpus)
        t, inj = self._head(t_ns, injector)
        self._write((F.EXPECT, t, inj, kind, dict(args)))

    def ack(self, vcpu, intid, t_ns=None, injector=None):
        """The vCPU took the LPI: its pending state clears."""
        self._check_vcpu(vcpu)
        intid = _int(intid, "intid", 0, _U32)
        t, inj = self._head(t_ns, injector)
        self._write((F.ACK, t, inj, vcpu, intid))


def _int(v, field, lo, hi):
    """v as an int in lo..hi (numpy integers accepted), else ValueError."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise FieldError(f"expected int, got {type(v).__name__}", field)
    v = int(v)
    if not lo <= v <= hi:
        raise FieldError(f"{v} out of range {lo}..{hi}", field)
    return v


def _column(x, dtype, hi, field):
    """x as a contiguous numpy array of dtype; ValueError if any value is out of 0..hi."""
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{field}: expected a 1-d column, got shape {a.shape}")
    if a.size == 0:
        return np.zeros(0, dtype)
    if a.dtype.kind not in "iu":
        raise ValueError(f"{field}: expected integers, got dtype {a.dtype}")
    dt = np.dtype(dtype)
    if a.dtype == dt:
        if hi < np.iinfo(dt).max and int(a.max()) > hi:
            raise ValueError(f"{field}: values outside 0..{hi}")
        return np.ascontiguousarray(a)
    if int(a.min()) < 0 or int(a.max()) > hi:
        raise ValueError(f"{field}: values outside 0..{hi}")
    return a.astype(dt)
