"""Compiled block rules of the order-dependent policies (imported by jit.py only).

The loops are LLVM IR, called through ctypes on numpy buffers. Loading LLVM into a
process costs ~75 MB of RSS (numba, which would compile the same loops from Python, ~105
MB); a replay with Parquet is ~115 MB without it. So on x86-64 Linux the IR is compiled
the way a C compiler would be run: llvmlite in a short-lived child process (~0.2 s) emits
an object file, and this process maps its position-independent, relocation-free .text
(checked) into executable memory, never loading LLVM. Elsewhere, or if that fails,
llvmlite's MCJIT compiles in-process.

Entries are small ints (ids) chosen by the caller: the block's distinct keys, then the
resident entries the block does not name. Outcome codes are Outcome's values. The Python
wrappers check every id before the native loops index with it.
"""

import ctypes
import mmap
import platform
import struct
import subprocess
import sys

import numpy as np

from gictools.model.cache.outcome import Outcome

_CODES = {
    "HIT": int(Outcome.HIT),
    "MISS": int(Outcome.MISS),
    "EVICT": int(Outcome.EVICT),
    "NOFILL": int(Outcome.MISS_NOFILL),
    "RECYCLE": int(Outcome.RECYCLE),
}

# IR both loops share: the event loop over inv[0..n) (x = inv[i], outp = &out[i]); a
# failed slow path caches nothing (vgic_its_cache_translation runs only after a successful
# translation); a cache of capacity 0 caches nothing; the next event


def _loop_head(exit_label: str) -> str:
    return """
head:
  %i = load i64, ptr %i.a
  %more = icmp slt i64 %i, %n
  br i1 %more, label %body, label %EXIT

body:
  %xp = getelementptr i64, ptr %inv, i64 %i
  %x = load i64, ptr %xp
  %outp = getelementptr i8, ptr %out, i64 %i
""".replace("EXIT", exit_label)


_MISS = """
miss:
  %fillp = getelementptr i8, ptr %fill, i64 %x
  %f = load i8, ptr %fillp
  %fillable = icmp ne i8 %f, 0
  br i1 %fillable, label %fillit, label %nofill

nofill:
  store i8 {NOFILL}, ptr %outp
  br label %next
"""


def _full(evict_label: str) -> str:
    return """
full.b:
  %nocap = icmp eq i64 %cap, 0
  br i1 %nocap, label %bare, label %EVICT_AT

bare:
  store i8 {MISS}, ptr %outp
  br label %next
""".replace("EVICT_AT", evict_label)


_NEXT = """
next:
  %i1 = add i64 %i, 1
  store i64 %i1, ptr %i.a
  br label %head
"""

# i64 lru_loop(inv, n, fill, prv, nxt, inc, st, cap, out, victim, final, nid)
# lru-v6.8 (vgic_its_check_cache + vgic_its_cache_translation): an intrusive doubly linked
# list over ids, LRU at st[0], MRU at st[1], st[2] entries. Writes out/victim per event and
# final = the ids LRU first; returns their count.
_LRU = (
    """
define i64 @lru_loop(ptr %inv, i64 %n, ptr %fill, ptr %prv, ptr %nxt, ptr %inc, ptr %st,
                     i64 %cap, ptr %out, ptr %victim, ptr %final, i64 %nid) {
entry:
  %lru.a = alloca i64
  %mru.a = alloca i64
  %size.a = alloca i64
  %i.a = alloca i64
  %k.a = alloca i64
  %x.a = alloca i64
  %st1 = getelementptr i64, ptr %st, i64 1
  %st2 = getelementptr i64, ptr %st, i64 2
  %lru0 = load i64, ptr %st
  %mru0 = load i64, ptr %st1
  %size0 = load i64, ptr %st2
  store i64 %lru0, ptr %lru.a
  store i64 %mru0, ptr %mru.a
  store i64 %size0, ptr %size.a
  store i64 0, ptr %i.a
  br label %head

"""
    + _loop_head("walk")
    + """  %incp = getelementptr i8, ptr %inc, i64 %x
  %in = load i8, ptr %incp
  %cached = icmp ne i8 %in, 0
  br i1 %cached, label %hit, label %miss

hit:
  store i8 {HIT}, ptr %outp
  %mru.h = load i64, ptr %mru.a
  %ismru = icmp eq i64 %x, %mru.h
  br i1 %ismru, label %next, label %unlink

unlink:
  %prvx = getelementptr i64, ptr %prv, i64 %x
  %nxtx = getelementptr i64, ptr %nxt, i64 %x
  %p = load i64, ptr %prvx
  %q = load i64, ptr %nxtx
  %hasp = icmp sge i64 %p, 0
  br i1 %hasp, label %setnp, label %setlru

setnp:
  %nxtp = getelementptr i64, ptr %nxt, i64 %p
  store i64 %q, ptr %nxtp
  br label %relink

setlru:
  store i64 %q, ptr %lru.a
  br label %relink

relink:
  %prvq = getelementptr i64, ptr %prv, i64 %q
  store i64 %p, ptr %prvq
  store i64 %mru.h, ptr %prvx
  store i64 -1, ptr %nxtx
  %nxtm = getelementptr i64, ptr %nxt, i64 %mru.h
  store i64 %x, ptr %nxtm
  store i64 %x, ptr %mru.a
  br label %next

"""
    + _MISS
    + """
fillit:
  %size = load i64, ptr %size.a
  %full = icmp sge i64 %size, %cap
  br i1 %full, label %full.b, label %grow

"""
    + _full("evict")
    + """
evict:
  %v = load i64, ptr %lru.a
  %nxtv = getelementptr i64, ptr %nxt, i64 %v
  %l2 = load i64, ptr %nxtv
  store i64 %l2, ptr %lru.a
  %hasl = icmp sge i64 %l2, 0
  br i1 %hasl, label %clrprv, label %clrmru

clrprv:
  %prvl = getelementptr i64, ptr %prv, i64 %l2
  store i64 -1, ptr %prvl
  br label %evicted

clrmru:
  store i64 -1, ptr %mru.a
  br label %evicted

evicted:
  store i64 -1, ptr %nxtv
  %incv = getelementptr i8, ptr %inc, i64 %v
  store i8 0, ptr %incv
  %vicp = getelementptr i64, ptr %victim, i64 %i
  store i64 %v, ptr %vicp
  store i8 {EVICT}, ptr %outp
  br label %link

grow:
  %size1 = add i64 %size, 1
  store i64 %size1, ptr %size.a
  store i8 {MISS}, ptr %outp
  br label %link

link:
  %mru.l = load i64, ptr %mru.a
  %prvx2 = getelementptr i64, ptr %prv, i64 %x
  store i64 %mru.l, ptr %prvx2
  %nxtx2 = getelementptr i64, ptr %nxt, i64 %x
  store i64 -1, ptr %nxtx2
  %hasm = icmp sge i64 %mru.l, 0
  br i1 %hasm, label %linkm, label %linkl

linkm:
  %nxtm2 = getelementptr i64, ptr %nxt, i64 %mru.l
  store i64 %x, ptr %nxtm2
  br label %linked

linkl:
  store i64 %x, ptr %lru.a
  br label %linked

linked:
  store i64 %x, ptr %mru.a
  store i8 1, ptr %incp
  br label %next

"""
    + _NEXT
    + """
walk:
  %lruw = load i64, ptr %lru.a
  store i64 %lruw, ptr %x.a
  store i64 0, ptr %k.a
  br label %whead

whead:
  %wx = load i64, ptr %x.a
  %wk = load i64, ptr %k.a
  %live = icmp sge i64 %wx, 0
  %room = icmp slt i64 %wk, %nid
  %go = and i1 %live, %room
  br i1 %go, label %wbody, label %done

wbody:
  %fp = getelementptr i64, ptr %final, i64 %wk
  store i64 %wx, ptr %fp
  %wk1 = add i64 %wk, 1
  store i64 %wk1, ptr %k.a
  %wnp = getelementptr i64, ptr %nxt, i64 %wx
  %wn = load i64, ptr %wnp
  store i64 %wn, ptr %x.a
  br label %whead

done:
  %kk = load i64, ptr %k.a
  ret i64 %kk
}
"""
)

# i64 usage_loop(inv, n, fill, slot_of, sid, suse, order, cnt, cap, out, victim)
# usage-v2 (series v2 patch 13/23 victim scan): slots hold (id, usage), order lists the
# slots tail first (id -1 = an invalidated entry still linked); returns the final count.
_USAGE = (
    """
define i64 @usage_loop(ptr %inv, i64 %n, ptr %fill, ptr %slot_of, ptr %sid, ptr %suse,
                       ptr %order, i64 %cnt0, i64 %cap, ptr %out, ptr %victim) {
entry:
  %cnt.a = alloca i64
  %i.a = alloca i64
  %p.a = alloca i64
  %vp.a = alloca i64
  %best.a = alloca i64
  %usage.a = alloca i64
  %s.a = alloca i64
  store i64 %cnt0, ptr %cnt.a
  store i64 0, ptr %i.a
  br label %head

"""
    + _loop_head("done")
    + """  %slotp = getelementptr i64, ptr %slot_of, i64 %x
  %s0 = load i64, ptr %slotp
  %cached = icmp sge i64 %s0, 0
  br i1 %cached, label %hit, label %miss

hit:
  %usep = getelementptr i64, ptr %suse, i64 %s0
  %u0 = load i64, ptr %usep
  %u1 = add i64 %u0, 1
  store i64 %u1, ptr %usep
  store i8 {HIT}, ptr %outp
  br label %next

"""
    + _MISS
    + """
fillit:
  store i64 0, ptr %usage.a
  %cnt = load i64, ptr %cnt.a
  %full = icmp sge i64 %cnt, %cap
  br i1 %full, label %full.b, label %grow

"""
    + _full("scan0")
    + """
scan0:
  store i64 -1, ptr %vp.a
  store i64 0, ptr %best.a
  %top = sub i64 %cnt, 1
  store i64 %top, ptr %p.a
  br label %shead

shead:
  %p = load i64, ptr %p.a
  %inrange = icmp sge i64 %p, 0
  br i1 %inrange, label %sbody, label %chosen

sbody:
  %op = getelementptr i64, ptr %order, i64 %p
  %s2 = load i64, ptr %op
  %sidp = getelementptr i64, ptr %sid, i64 %s2
  %id2 = load i64, ptr %sidp
  %empty = icmp slt i64 %id2, 0
  br i1 %empty, label %takeempty, label %weigh

takeempty:
  store i64 %p, ptr %vp.a
  br label %chosen

weigh:
  %sup = getelementptr i64, ptr %suse, i64 %s2
  %u = load i64, ptr %sup
  %usage = load i64, ptr %usage.a
  %gt = icmp sgt i64 %u, %usage
  %usage2 = select i1 %gt, i64 %u, i64 %usage
  store i64 %usage2, ptr %usage.a
  %vp = load i64, ptr %vp.a
  %best = load i64, ptr %best.a
  %novp = icmp slt i64 %vp, 0
  %le = icmp sle i64 %u, %best
  %take = or i1 %novp, %le
  br i1 %take, label %takeit, label %snext

takeit:
  store i64 %u, ptr %best.a
  store i64 %p, ptr %vp.a
  br label %snext

snext:
  %pm = sub i64 %p, 1
  store i64 %pm, ptr %p.a
  br label %shead

chosen:
  %vpc = load i64, ptr %vp.a
  %ovp = getelementptr i64, ptr %order, i64 %vpc
  %sv = load i64, ptr %ovp
  store i64 %sv, ptr %s.a
  %sidv = getelementptr i64, ptr %sid, i64 %sv
  %idv = load i64, ptr %sidv
  %wasempty = icmp slt i64 %idv, 0
  br i1 %wasempty, label %recycle, label %evict

recycle:
  store i8 {RECYCLE}, ptr %outp
  br label %shift0

evict:
  %slotv = getelementptr i64, ptr %slot_of, i64 %idv
  store i64 -1, ptr %slotv
  %vicp = getelementptr i64, ptr %victim, i64 %i
  store i64 %idv, ptr %vicp
  store i8 {EVICT}, ptr %outp
  br label %shift0

shift0:
  store i64 %vpc, ptr %p.a
  %last = sub i64 %cnt, 1
  br label %shhead

shhead:
  %sp = load i64, ptr %p.a
  %sh = icmp slt i64 %sp, %last
  br i1 %sh, label %shbody, label %shdone

shbody:
  %sp1 = add i64 %sp, 1
  %src = getelementptr i64, ptr %order, i64 %sp1
  %sval = load i64, ptr %src
  %dst = getelementptr i64, ptr %order, i64 %sp
  store i64 %sval, ptr %dst
  store i64 %sp1, ptr %p.a
  br label %shhead

shdone:
  %olast = getelementptr i64, ptr %order, i64 %last
  store i64 %sv, ptr %olast
  br label %place

grow:
  %ocnt = getelementptr i64, ptr %order, i64 %cnt
  store i64 %cnt, ptr %ocnt
  store i64 %cnt, ptr %s.a
  %cnt1 = add i64 %cnt, 1
  store i64 %cnt1, ptr %cnt.a
  store i8 {MISS}, ptr %outp
  br label %place

place:
  %s = load i64, ptr %s.a
  %sidn = getelementptr i64, ptr %sid, i64 %s
  store i64 %x, ptr %sidn
  %usen = getelementptr i64, ptr %suse, i64 %s
  %un = load i64, ptr %usage.a
  store i64 %un, ptr %usen
  store i64 %s, ptr %slotp
  br label %next

"""
    + _NEXT
    + """
done:
  %c = load i64, ptr %cnt.a
  ret i64 %c
}
"""
)

_p = ctypes.c_void_p
_i64 = ctypes.c_int64
_SIGNATURES = {
    "lru_loop": ctypes.CFUNCTYPE(_i64, _p, _i64, _p, _p, _p, _p, _p, _i64, _p, _p, _p, _i64),
    "usage_loop": ctypes.CFUNCTYPE(_i64, _p, _i64, _p, _p, _p, _p, _p, _i64, _i64, _p, _p),
}


def _ir() -> str:
    ir = _LRU + _USAGE
    for name, code in _CODES.items():
        ir = ir.replace("{" + name + "}", str(code))
    return ir


# run by the child: IR on stdin, an ELF object on stdout
_COMPILER = """
import sys
import llvmlite.binding as llvm
llvm.initialize_native_target()
llvm.initialize_native_asmprinter()
mod = llvm.parse_assembly(sys.stdin.read())
mod.verify()
tm = llvm.Target.from_default_triple().create_target_machine(opt=2, reloc="pic", codemodel="small")
sys.stdout.buffer.write(tm.emit_object(mod))
"""


def _compile_object() -> bytes:
    r = subprocess.run(
        [sys.executable, "-P", "-c", _COMPILER],
        input=_ir().encode(),
        capture_output=True,
        timeout=120,
    )
    if r.returncode:
        err = r.stderr.decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"LLVM compile in a child failed: {err[-1] if err else r.returncode}")
    return r.stdout


_EM_X86_64 = 62
_SHT_SYMTAB, _SHT_RELA, _SHT_REL = 2, 4, 9
_SHF_EXECINSTR = 4
_STT_FUNC = 2


def _text_and_symbols(obj: bytes) -> tuple[bytes, dict[str, int]]:
    """The one executable section of an x86-64 ELF64 object and its functions' offsets;
    refused if anything (a relocation) would have to be linked into it."""
    if obj[:6] != b"\x7fELF\x02\x01" or struct.unpack_from("<H", obj, 18)[0] != _EM_X86_64:
        raise ValueError("not a little-endian x86-64 ELF64 object")
    shoff = struct.unpack_from("<Q", obj, 0x28)[0]
    shentsize, shnum = struct.unpack_from("<HH", obj, 0x3A)
    # (name, type, flags, addr, offset, size, link, info, addralign, entsize)
    secs = [struct.unpack_from("<IIQQQQIIQQ", obj, shoff + i * shentsize) for i in range(shnum)]
    text = [i for i, h in enumerate(secs) if h[2] & _SHF_EXECINSTR and h[5]]
    if len(text) != 1:
        raise ValueError(f"{len(text)} executable sections, expected 1")
    (t,) = text
    if any(h[1] in (_SHT_RELA, _SHT_REL) and h[7] == t and h[5] for h in secs):
        raise ValueError("the code has relocations")
    symtab = next(h for h in secs if h[1] == _SHT_SYMTAB)
    strtab = secs[symtab[6]]
    funcs = {}
    for off in range(symtab[4], symtab[4] + symtab[5], 24):
        name, info, _, shndx, value, _ = struct.unpack_from("<IBBHQQ", obj, off)
        if shndx == t and info & 0xF == _STT_FUNC:
            start = strtab[4] + name
            funcs[obj[start : obj.index(b"\0", start)].decode()] = value
    return obj[secs[t][4] : secs[t][4] + secs[t][5]], funcs


def _map_executable(code: bytes) -> int:
    """code copied into fresh pages, then made read+execute (never writable and executable)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, _i64]
    libc.mprotect.argtypes = [_p, ctypes.c_size_t, ctypes.c_int]
    size = -(-len(code) // mmap.PAGESIZE) * mmap.PAGESIZE
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
    addr = libc.mmap(None, size, mmap.PROT_READ | mmap.PROT_WRITE, flags, -1, 0)
    if addr is None or addr == ctypes.c_void_p(-1).value:
        raise OSError(ctypes.get_errno(), "mmap failed")
    ctypes.memmove(addr, code, len(code))
    if libc.mprotect(addr, size, mmap.PROT_READ | mmap.PROT_EXEC):
        raise OSError(ctypes.get_errno(), "mprotect(PROT_EXEC) refused")
    return addr


def _load_out_of_process():
    code, funcs = _text_and_symbols(_compile_object())
    if any(not 0 <= funcs.get(n, -1) < len(code) for n in _SIGNATURES):
        raise ValueError("the object lacks a kernel's symbol")
    base = _map_executable(code)
    return None, {n: sig(base + funcs[n]) for n, sig in _SIGNATURES.items()}


def _load_in_process():
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    mod = llvm.parse_assembly(_ir())
    mod.verify()
    tm = llvm.Target.from_default_triple().create_target_machine(opt=2)
    engine = llvm.create_mcjit_compiler(mod, tm)
    engine.finalize_object()
    return engine, {n: sig(engine.get_function_address(n)) for n, sig in _SIGNATURES.items()}


def _load():
    if sys.platform == "linux" and platform.machine() == "x86_64":
        try:
            return "child", *_load_out_of_process()
        except Exception:  # e.g. no exec mappings allowed: LLVM in this process instead
            pass
    return "in-process", *_load_in_process()


# the engine (in-process) owns the code: kept alive with the functions
how, _engine, _funcs = _load()
_lru_loop, _usage_loop = _funcs["lru_loop"], _funcs["usage_loop"]


def _buf(a: np.ndarray, dtype) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=dtype)


def _check_ids(name: str, a: np.ndarray, nid: int) -> None:
    if a.size and (int(a.min()) < 0 or int(a.max()) >= nid):
        raise ValueError(f"{name}: id out of range 0..{nid - 1}")


def _check_outputs(n: int, cap: int, out: np.ndarray, victim: np.ndarray) -> None:
    """What the native loop writes through: checked here, not by assert (python -O)."""
    if cap < 0:
        raise ValueError(f"capacity {cap} < 0")
    for a, dt in ((out, np.int8), (victim, np.int64)):
        if a.dtype != dt or not a.flags.c_contiguous or not a.flags.writeable or len(a) != n:
            raise ValueError("out/victim must be writable contiguous int8/int64 of the block")


def lru_block(inverse, fillable, order, cap, out, victim):
    """lru-v6.8 over one block. order: the cache's ids, LRU first. Writes out (int8)/victim
    (int64) per event; returns the final order, LRU first."""
    fill = _buf(fillable, np.uint8)
    nid = len(fill)
    inv = _buf(inverse, np.int64)
    order = _buf(order, np.int64)
    _check_ids("inverse", inv, nid)
    _check_ids("order", order, nid)
    if len(np.unique(order)) != len(order):
        raise ValueError("order repeats an id")
    _check_outputs(len(inv), cap, out, victim)
    prv = np.full(nid, -1, np.int64)
    nxt = np.full(nid, -1, np.int64)
    inc = np.zeros(nid, np.uint8)
    k = len(order)
    if k:
        prv[order[1:]] = order[:-1]
        nxt[order[:-1]] = order[1:]
        inc[order] = 1
    st = np.array([order[0] if k else -1, order[-1] if k else -1, k], np.int64)
    final = np.empty(nid, np.int64)
    m = _lru_loop(
        inv.ctypes.data,
        len(inv),
        fill.ctypes.data,
        prv.ctypes.data,
        nxt.ctypes.data,
        inc.ctypes.data,
        st.ctypes.data,
        cap,
        out.ctypes.data,
        victim.ctypes.data,
        final.ctypes.data,
        nid,
    )
    return final[:m]


def usage_block(inverse, fillable, ent_id, ent_use, cap, out, victim):
    """usage-v2 over one block. ent_id/ent_use: the list, tail first (id -1 = invalidated
    entry still linked). Writes out/victim per event; returns the final (ent_id, ent_use),
    tail first."""
    fill = _buf(fillable, np.uint8)
    nid = len(fill)
    inv = _buf(inverse, np.int64)
    ent_id = _buf(ent_id, np.int64)
    ent_use = _buf(ent_use, np.int64)
    _check_ids("inverse", inv, nid)
    live = ent_id[ent_id >= 0]
    _check_ids("ent_id", live, nid)
    if len(np.unique(live)) != len(live) or len(ent_use) != len(ent_id):
        raise ValueError("ent_id repeats an id, or ent_use does not match it")
    _check_outputs(len(inv), cap, out, victim)
    m = len(ent_id)
    nslot = max(cap, m)
    slot_of = np.full(nid, -1, np.int64)
    sid = np.full(nslot, -1, np.int64)
    suse = np.zeros(nslot, np.int64)
    order = np.zeros(nslot, np.int64)
    sid[:m] = ent_id
    suse[:m] = ent_use
    order[:m] = np.arange(m)
    slot_of[live] = np.flatnonzero(ent_id >= 0)
    cnt = _usage_loop(
        inv.ctypes.data,
        len(inv),
        fill.ctypes.data,
        slot_of.ctypes.data,
        sid.ctypes.data,
        suse.ctypes.data,
        order.ctypes.data,
        m,
        cap,
        out.ctypes.data,
        victim.ctypes.data,
    )
    o = order[:cnt]
    return sid[o], suse[o]
