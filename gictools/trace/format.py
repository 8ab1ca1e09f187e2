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

FORMAT_NAME = "gictools-trace"
VERSION = (1, 0)  # (major, minor); minor bumps only append

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
READ_SIZE = 1 << 20


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
            raise FieldError(f"map key {k!r} is not a str", field)
    return v


def _seq(v, field):
    if type(v) not in (list, tuple):
        raise FieldError(f"expected array, got {type(v).__name__}", field)
    return v


def _plain(v):
    """Tuples (msgpack use_list=False) to lists, recursively, for a JSON-like header.
    Iterative: a deeply nested metadata value must not hit Python's recursion limit."""
    if type(v) not in (tuple, list, dict):
        return v
    top = [None]
    todo = [(top, 0, v)]  # (container to fill, key, value to convert)
    while todo:
        dst, key, x = todo.pop()
        if type(x) is dict:
            d = dst[key] = {}
            for k, y in x.items():
                d[k] = None
                todo.append((d, k, y))
        elif type(x) is tuple or type(x) is list:
            lst = dst[key] = [None] * len(x)
            for i, y in enumerate(x):
                todo.append((lst, i, y))
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
    out = {k: _plain(v) for k, v in vm.items()}
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
        d = {k: _plain(v) for k, v in its.items()}
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
    out = {k: _plain(v) for k, v in obj.items()}
    out["version"] = [major, minor]
    out["vm"] = validate_vm(obj["vm"])
    out["source"] = _str(obj.get("source", ""), "source")
    out["metadata"] = _plain(_map(obj.get("metadata", {}), "metadata"))
    return out


def expect_args(kind, args, vcpus, field="args"):
    """Checks a known EXPECT kind's args (types, required keys); unknown kinds pass."""
    _map(args, field)
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
