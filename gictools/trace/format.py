"""Trace format v1: record tags, limits and the header, declared once.

The encoding is specified in docs/trace-format.md. The reader and the writer
both take their constants from here; validate_header() is the single
validator/normaliser of the header (reader: untrusted file; writer: caller's
vm dict).

Record layouts (element 0 is the tag; "t, inj" = t_ns, injector):
    MSI        [0, t, inj, its, device_id, event_id]
    MSI_BLOCK  [1, n, its, ts:bin u64le*n, dev:bin u32le*n, ev:bin u32le*n, inj:bin u32le*n|nil]
    COMMAND    [2, t, inj, its, raw:bin 32]
    REG        [3, t, inj, frame, index, offset, size, value|nil, is_write]
    MEM        [4, t, inj, gpa, data:bin]
    CTRL       [5, t, inj, op, its|nil, ret|nil]
    EXPECT     [6, t, inj, kind, args:map]
    ACK        [7, t, inj, vcpu, intid]
"""

import reprlib

import numpy as np

FORMAT_NAME = "gictools-trace"
VERSION = (1, 1)  # (major, minor); minor bumps only append. 1.1: the header's "counts"

MSI, MSI_BLOCK, COMMAND, REG, MEM, CTRL, EXPECT, ACK = range(8)
TAG_NAMES = {
    MSI: "MSI",
    MSI_BLOCK: "MSI_BLOCK",
    COMMAND: "COMMAND",
    REG: "REG",
    MEM: "MEM",
    CTRL: "CTRL",
    EXPECT: "EXPECT",
    ACK: "ACK",
}

# Field names per tag, in element order (element 0, the tag, excluded); error
# messages name fields with these.
FIELDS = {
    MSI: ("t_ns", "injector", "its", "device_id", "event_id"),
    MSI_BLOCK: ("n", "its", "ts", "dev", "ev", "inj"),
    COMMAND: ("t_ns", "injector", "its", "raw"),
    REG: ("t_ns", "injector", "frame", "index", "offset", "size", "value", "is_write"),
    MEM: ("t_ns", "injector", "gpa", "data"),
    CTRL: ("t_ns", "injector", "op", "its", "ret"),
    EXPECT: ("t_ns", "injector", "kind", "args"),
    ACK: ("t_ns", "injector", "vcpu", "intid"),
}

MAX_BLOCK = 65536  # events per MSI_BLOCK
COMMAND_SIZE = 32  # bytes of one ITS command
MAX_MEM = 16 << 20  # bytes of one MEM record's data
MAX_VCPUS = 4096
U32_MAX = 0xFFFF_FFFF
U64_MAX = 0xFFFF_FFFF_FFFF_FFFF
T_MAX = (1 << 63) - 1  # timestamps are u64 below 2^63 (fit int64 columns)

FRAMES = ("its", "its-user", "redist")  # REG frame: ITS index (guest MMIO or userspace) or vCPU
REG_SIZES = (4, 8)

CTRL_SAVE_TABLES = "save_tables"
CTRL_RESTORE_TABLES = "restore_tables"
CTRL_RESET = "reset"
CTRL_SAVE_PENDING_TABLES = "save_pending_tables"  # a VGIC (not ITS) attribute: its = nil
CTRL_MIGRATE = "migrate"  # a fresh VM carrying the guest memory (added after 1.0): its = nil
CTRL_OPS = (
    CTRL_SAVE_TABLES,
    CTRL_RESTORE_TABLES,
    CTRL_RESET,
    CTRL_SAVE_PENDING_TABLES,
    CTRL_MIGRATE,
)
CTRL_VM_OPS = (CTRL_SAVE_PENDING_TABLES, CTRL_MIGRATE)  # VM-wide: its may be nil

# EXPECT kinds -> (required args, optional args); unknown kinds parse and pass through.
EXPECT_KINDS = {
    "pending": (("intid", "vcpu", "pending"), ()),
    "cmd_error": (("error",), ()),
    "msi": (("ret",), ("intid", "vcpu", "error")),
    "ctrl": (("ret",), ()),
    "lpi": (("intid",), ("vcpu", "priority", "enabled", "pending", "exists")),
    "its_reg": (("its", "offset", "size", "value"), ("mask",)),
}
# arg name -> kind of value: "int" (any int), "u32", "vcpu" (vCPU index), "bool", "u8"
EXPECT_ARG_TYPES = {
    "intid": "u32",
    "vcpu": "vcpu",
    "pending": "bool",
    "error": "int",
    "ret": "int",
    "priority": "u8",
    "enabled": "bool",
    "exists": "bool",
    "its": "u32",
    "offset": "u32",
    "size": "u8",
    "value": "u64",
    "mask": "u64",
}

# Reader limits: nothing in a file makes the reader allocate beyond these.
MAX_BIN_LEN = MAX_MEM
MAX_STR_LEN = 1 << 20
MAX_ARRAY_LEN = 1 << 20
MAX_MAP_LEN = 1 << 16
MAX_BUFFER_SIZE = 64 << 20
MAX_OBJECT = MAX_BUFFER_SIZE  # bytes of one object (header or record), after decompression
MAX_DEPTH = 32  # nesting of free-form values (header maps, EXPECT args)
READ_SIZE = 1 << 20

# The header's "counts" (1.1): what the file holds, written by the writer when it closes the
# file; progress bars take their total from it and the reader checks it at the end.
COUNTS_KEYS = ("records", "msi_blocks", "msis")

_show = reprlib.Repr()
_show.maxlevel, _show.maxstring, _show.maxother = 3, 40, 40


def show(v) -> str:
    """A short, bounded repr of a hostile value for messages (never recursion-deep)."""
    return _show.repr(v)


class FieldError(ValueError):
    """A value is wrong; .field names it (dotted path). The reader turns it into a
    TraceFormatError with the record index and offset; the writer lets it out as a
    ValueError (a programming error in the caller)."""

    def __init__(self, what, field=None):
        self.what, self.field = what, field
        super().__init__(f"{field}: {what}" if field else what)


def _int(v, field, lo=0, hi=U64_MAX):
    if type(v) is not int:
        raise FieldError(f"expected int, got {type(v).__name__}", field)
    if not lo <= v <= hi:
        raise FieldError(f"{v} out of range {lo}..{hi}", field)
    return v


def _str(v, field):
    if type(v) is not str:
        raise FieldError(f"expected str, got {type(v).__name__}", field)
    return v


def _map(v, field):
    if type(v) is not dict:
        raise FieldError(f"expected map, got {type(v).__name__}", field)
    for k in v:
        if type(k) is not str:
            raise FieldError(f"map key {show(k)} is not a str", field)
    return v


def _seq(v, field):
    if type(v) not in (list, tuple):
        raise FieldError(f"expected array, got {type(v).__name__}", field)
    return v


def _plain(v, field="value"):
    """Tuples (msgpack use_list=False) to lists, recursively, for a JSON-like header.
    Iterative, and bounded to MAX_DEPTH levels: a value nested deeper is refused here, at
    read time, before anything (repr, JSON) recurses over it."""
    if type(v) not in (tuple, list, dict):
        return v
    top = [None]
    todo = [(top, 0, v, 1)]  # (container to fill, key, value to convert, depth)
    while todo:
        dst, key, x, depth = todo.pop()
        if type(x) is dict or type(x) is tuple or type(x) is list:
            if depth > MAX_DEPTH:
                raise FieldError(f"nested deeper than {MAX_DEPTH} levels", field)
            if type(x) is dict:
                d = dst[key] = {}
                for k, y in x.items():
                    d[k] = None
                    todo.append((d, k, y, depth + 1))
            else:
                lst = dst[key] = [None] * len(x)
                for i, y in enumerate(x):
                    todo.append((lst, i, y, depth + 1))
        else:
            dst[key] = x
    return top[0]


def check_version(version):
    """(major, minor) from the header's version field; refuses another major."""
    _seq(version, "version")
    if len(version) < 2:
        raise FieldError("expected [major, minor]", "version")
    major = _int(version[0], "version[0]", 0, U32_MAX)
    minor = _int(version[1], "version[1]", 0, U32_MAX)
    if major != VERSION[0]:
        raise FieldError(
            f"trace format version {major}.x is not supported by this gictools "
            f"(reads {VERSION[0]}.x)",
            "version",
        )
    return major, minor


def validate_vm(vm, field="vm"):
    """Normalised copy of a header's vm map: vcpu_ids filled in, kernel/memory None if absent."""
    _map(vm, field)
    if "vcpus" not in vm:
        raise FieldError("missing", f"{field}.vcpus")
    out = {k: _plain(v, f"{field}.{k}") for k, v in vm.items()}
    vcpus = _int(vm["vcpus"], f"{field}.vcpus", 1, MAX_VCPUS)
    ids = vm.get("vcpu_ids")
    if ids is None:
        out["vcpu_ids"] = list(range(vcpus))
    else:
        _seq(ids, f"{field}.vcpu_ids")
        if len(ids) != vcpus:
            raise FieldError(f"{len(ids)} ids for {vcpus} vCPUs", f"{field}.vcpu_ids")
        out["vcpu_ids"] = [_int(x, f"{field}.vcpu_ids[{i}]", 0, U32_MAX) for i, x in enumerate(ids)]
        if len(set(out["vcpu_ids"])) != vcpus:
            raise FieldError("duplicate ids", f"{field}.vcpu_ids")
    kernel = vm.get("kernel")
    out["kernel"] = None if kernel is None else _str(kernel, f"{field}.kernel")
    mem = vm.get("memory")
    if mem is None:
        out["memory"] = None
    else:
        _seq(mem, f"{field}.memory")
        slots = []
        for i, slot in enumerate(mem):
            f = f"{field}.memory[{i}]"
            _seq(slot, f)
            if len(slot) < 2:
                raise FieldError("expected [base, size]", f)
            base = _int(slot[0], f + "[0]")
            size = _int(slot[1], f + "[1]", 1)
            if base + size > U64_MAX + 1:
                raise FieldError("slot ends beyond 2^64", f)
            slots.append([base, size])
        out["memory"] = slots
    itses = vm.get("itses", ())
    _seq(itses, f"{field}.itses")
    out["itses"] = []
    for i, its in enumerate(itses):
        f = f"{field}.itses[{i}]"
        _map(its, f)
        if "base" not in its:
            raise FieldError("missing", f + ".base")
        d = {k: _plain(v, f"{f}.{k}") for k, v in its.items()}
        d["base"] = _int(its["base"], f + ".base")
        out["itses"].append(d)
    return out


def validate_header(obj) -> dict:
    """Validated, normalised header dict; raises FieldError naming the field.

    Extra keys (a later minor version's) are kept but not interpreted. version
    comes back as a [major, minor] list of the file's version.
    """
    if type(obj) is not dict:
        raise FieldError(f"the header must be a map, got {type(obj).__name__}", "header")
    _map(obj, "header")
    if obj.get("format") != FORMAT_NAME:
        raise FieldError(
            f"not a gictools trace (format {obj.get('format')!r}, expected {FORMAT_NAME!r})",
            "format",
        )
    if "version" not in obj:
        raise FieldError("missing", "version")
    major, minor = check_version(obj["version"])
    if "vm" not in obj:
        raise FieldError("missing", "vm")
    out = {k: _plain(v, k) for k, v in obj.items()}
    out["version"] = [major, minor]
    out["vm"] = validate_vm(obj["vm"])
    out["source"] = _str(obj.get("source", ""), "source")
    out["metadata"] = _plain(_map(obj.get("metadata", {}), "metadata"), "metadata")
    out["counts"] = _counts(obj.get("counts"))
    return out


def _counts(c):
    """The header's counts map (None when absent or nil: older or streamed traces)."""
    if c is None:
        return None
    _map(c, "counts")
    out = {}
    for k in COUNTS_KEYS:
        v = c.get(k)
        out[k] = None if v is None else _int(v, f"counts.{k}")
    if None in out.values():
        return None
    if (
        out["msi_blocks"] > out["records"]
        or out["msis"] > out["msi_blocks"] * MAX_BLOCK + out["records"]
    ):
        raise FieldError("inconsistent counts", "counts")
    return out


def expect_args(kind, args, vcpus, field="args"):
    """Checks a known EXPECT kind's args (types, required keys); unknown kinds pass, with
    their values bounded to MAX_DEPTH levels."""
    _map(args, field)
    _plain(args, field)
    spec = EXPECT_KINDS.get(kind)
    if spec is None:
        return args
    req, opt = spec
    for name in req:
        if name not in args:
            raise FieldError("missing", f"{field}.{name}")
    for name in req + opt:
        v = args.get(name)
        if v is None:
            if name in req:
                raise FieldError("must not be nil", f"{field}.{name}")
            continue
        t = EXPECT_ARG_TYPES[name]
        f = f"{field}.{name}"
        if t == "bool":
            if type(v) is not bool:
                raise FieldError(f"expected bool, got {type(v).__name__}", f)
        elif t == "int":
            _int(v, f, -(1 << 63), U64_MAX)
        elif t == "u32":
            _int(v, f, 0, U32_MAX)
        elif t == "u8":
            _int(v, f, 0, 0xFF)
        elif t == "u64":
            _int(v, f, 0, U64_MAX)
        else:  # vcpu
            _int(v, f, 0, vcpus - 1)
    return args


# --- records: the one validation, used by the reader (file) and the writer (caller) ------------
# Each check takes the record as an array (tag first), the header's ITS count and vCPU count,
# and returns the record as the reader yields it (a tuple; MSI_BLOCK columns as numpy arrays),
# or raises FieldError naming the field. Later elements (a newer minor version's) are dropped.
_U32, _T = U32_MAX, T_MAX


def _trim(rec, n):
    if len(rec) < n:
        tag = rec[0]
        raise FieldError(
            f"{TAG_NAMES[tag]} record has {len(rec)} elements, expected {n}",
            FIELDS[tag][len(rec) - 1],
        )
    return tuple(rec[:n])


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


def _head(rec, n):
    """t_ns and injector of a small record checked; the record trimmed to n elements."""
    if len(rec) != n or type(rec) is not tuple:
        rec = _trim(rec, n)
    t, inj = rec[1], rec[2]
    if not (type(t) is int and 0 <= t <= _T):
        _int(t, "t_ns", 0, _T)
    if inj is not None and not (type(inj) is int and 0 <= inj <= _U32):
        _int(inj, "injector", 0, _U32)
    return rec


def check_msi(rec, n_its, vcpus):
    # the per-event hot path of row traces: one call, checks inlined
    if len(rec) != 6 or type(rec) is not tuple:
        rec = _trim(rec, 6)
    _, t, inj, its, dev, ev = rec
    if not (
        type(t) is int
        and 0 <= t <= _T
        and (inj is None or (type(inj) is int and 0 <= inj <= _U32))
        and type(its) is int
        and 0 <= its < n_its
        and type(dev) is int
        and 0 <= dev <= _U32
        and type(ev) is int
        and 0 <= ev <= _U32
    ):
        _head(rec, 6)
        if not (type(its) is int and 0 <= its < n_its):
            _bad_its(its, n_its)
        _int(dev, "device_id", 0, _U32)
        _int(ev, "event_id", 0, _U32)
    return rec


def _col(b, nbytes, n, field):
    if type(b) is not bytes:
        raise FieldError(f"expected bin, got {type(b).__name__}", field)
    if len(b) != nbytes:
        raise FieldError(f"column of {len(b)} bytes, expected {nbytes} for n={n}", field)


def check_msi_block(rec, n_its, vcpus):
    if len(rec) != 7:
        rec = _trim(rec, 7)
    _, n, its, ts, dev, ev, inj = rec
    if not (type(n) is int and 1 <= n <= MAX_BLOCK):
        if type(n) is not int:
            raise FieldError(f"expected int, got {type(n).__name__}", "n")
        raise FieldError(f"MSI_BLOCK of {n} events (1..{MAX_BLOCK})", "n")
    if not (type(its) is int and 0 <= its < n_its):
        _bad_its(its, n_its)
    _col(ts, 8 * n, n, "ts")
    _col(dev, 4 * n, n, "dev")
    _col(ev, 4 * n, n, "ev")
    tsa = np.frombuffer(ts, "<u8")
    if tsa.view("<i8").min() < 0:
        raise FieldError("timestamp >= 2^63", "ts")
    if inj is not None:
        _col(inj, 4 * n, n, "inj")
        inj = np.frombuffer(inj, "<u4")
    return (MSI_BLOCK, n, its, tsa, np.frombuffer(dev, "<u4"), np.frombuffer(ev, "<u4"), inj)


def check_command(rec, n_its, vcpus):
    _, t, inj, its, raw = _head(rec, 5)
    if not (type(its) is int and 0 <= its < n_its):
        _bad_its(its, n_its)
    if type(raw) is not bytes:
        raise FieldError(f"expected bin, got {type(raw).__name__}", "raw")
    if len(raw) != COMMAND_SIZE:
        raise FieldError(f"{len(raw)} bytes, an ITS command has {COMMAND_SIZE}", "raw")
    return (COMMAND, t, inj, its, raw)


def check_reg(rec, n_its, vcpus):
    _, t, inj, frame, index, offset, size, value, is_write = _head(rec, 9)
    if frame in ("its", "its-user") and type(frame) is str:
        if not (type(index) is int and 0 <= index < n_its):
            _bad_its(index, n_its, "index")
    elif frame == "redist" and type(frame) is str:
        if not (type(index) is int and 0 <= index < vcpus):
            _bad_vcpu(index, vcpus, "index")
    else:
        raise FieldError(f"frame {show(frame)} is not one of {', '.join(FRAMES)}", "frame")
    _int(offset, "offset", 0, _U32)
    if type(size) is not int or size not in REG_SIZES:
        raise FieldError(f"size {show(size)} is not 4 or 8", "size")
    if type(is_write) is not bool:
        raise FieldError(f"expected bool, got {type(is_write).__name__}", "is_write")
    if value is not None or is_write:
        _int(value, "value", 0, (1 << (8 * size)) - 1)
    return (REG, t, inj, frame, index, offset, size, value, is_write)


def check_mem(rec, n_its, vcpus):
    _, t, inj, gpa, data = _head(rec, 5)
    _int(gpa, "gpa")
    if type(data) is not bytes:
        raise FieldError(f"expected bin, got {type(data).__name__}", "data")
    if len(data) > MAX_MEM:
        raise FieldError(f"{len(data)} bytes, a MEM record holds at most {MAX_MEM}", "data")
    if gpa + len(data) > U64_MAX + 1:
        raise FieldError("write ends beyond 2^64", "data")
    return (MEM, t, inj, gpa, data)


def check_ctrl(rec, n_its, vcpus):
    _, t, inj, op, its, ret = _head(rec, 6)
    if type(op) is not str or op not in CTRL_OPS:
        raise FieldError(f"unknown operation {show(op)} (one of {', '.join(CTRL_OPS)})", "op")
    if its is None:
        if op not in CTRL_VM_OPS:
            raise FieldError(f"{op} needs an ITS index", "its")
    elif not (type(its) is int and 0 <= its < n_its):
        _bad_its(its, n_its)
    if ret is not None:
        _int(ret, "ret", -(1 << 63), U64_MAX)
    return (CTRL, t, inj, op, its, ret)


def check_expect(rec, n_its, vcpus):
    _, t, inj, kind, args = _head(rec, 5)
    _str(kind, "kind")
    expect_args(kind, args, vcpus)
    return (EXPECT, t, inj, kind, args)


def check_ack(rec, n_its, vcpus):
    _, t, inj, vcpu, intid = _head(rec, 5)
    if not (type(vcpu) is int and 0 <= vcpu < vcpus):
        _bad_vcpu(vcpu, vcpus, "vcpu")
    _int(intid, "intid", 0, _U32)
    return (ACK, t, inj, vcpu, intid)


CHECKS = {
    MSI: check_msi,
    MSI_BLOCK: check_msi_block,
    COMMAND: check_command,
    REG: check_reg,
    MEM: check_mem,
    CTRL: check_ctrl,
    EXPECT: check_expect,
    ACK: check_ack,
}
