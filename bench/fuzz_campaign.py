#!/usr/bin/env python3
"""Fuzz and fault campaign against the gictools CLI (issue 10); not part of the test suite.

    python bench/fuzz_campaign.py                 # full run, ~10-15 min on 2 cores
    python bench/fuzz_campaign.py --quick         # ~1 min
    python bench/fuzz_campaign.py --seed 1 --case 417 --keep /tmp/c417   # one case, files kept

Every case runs the CLI (`python -m gictools ...`) in a subprocess with a CPU-time limit
(RLIMIT_CPU, so that a loaded machine does not turn slow cases into hangs), a wall-clock
timeout (6x that, for processes blocked without using CPU) and an address-space limit
(RLIMIT_AS, 1.5 GiB), and is classified:

    refused   exit 2 with a one-line "gictools: error: ..." and no traceback
    accepted  exit 0 or 1 (a check failed), no traceback
    crash     a traceback, or any other exit
    hang      over the CPU-time limit, or the wall-clock timeout expired
    memory    MemoryError / bad_alloc / killed while over the limit
    broken    the CLI exited cleanly but an output contract broke: a partial or invalid
              output, a stray temporary file, a device node or an input replaced, an error
              naming the temporary file instead of the user's path

Categories: trace (byte flips, truncation, msgpack-level structural mutations, hostile
values, deep nesting, huge objects, gzip bombs), image (body mutated, then the checksum
recomputed so that the restore validator is reached), qemu (mutated lines of the
fixtures/qemu captures and their dumps), signal (SIGINT/SIGTERM/SIGHUP/SIGKILL a writer at
a random time), diskfull (a 2 MiB tmpfs per case; skipped unless mount is permitted),
concurrent (several writers to one output), outputs (device nodes, FIFOs, the same file
as an input); issue 23: workers (a worker of replay --jobs / sweep / predict killed by
SIGKILL, SIGTERM, SIGXCPU or MemoryError through its lowered rlimits), parentsig
(SIGTERM/SIGINT/SIGHUP/SIGKILL to their parent: workers gone, no temps, no
resource_tracker warning), stdin (`replay -`/`save -` on endless text or zeros, garbage
after a valid trace, a cut trace, a signal during the copy: bounded read, no spool left),
sweep (a trace at a cell's output path, hand-broken manifests, damaged files for
summarize, Arrow's default allocator under the limit, a full disk). Case i is rebuilt
from (seed, i) alone, so `--case i` reproduces it.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gzip
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgpack

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from procwalk import alive, below, descendants  # noqa: E402  (the tests' /proc walk)

FIXTURES = ROOT / "fixtures" / "qemu"
QEMU_NAMES = ("smp2-rebind", "smp2-traffic-affinity", "smp4-hotplug")
AS_LIMIT = 3 << 29  # 1.5 GiB
CLASSES = ("refused", "accepted", "crash", "hang", "memory", "broken")
CATEGORIES = {  # name: weight
    "trace": 44,
    "image": 24,
    "qemu": 14,
    "signal": 7,
    "diskfull": 4,
    "concurrent": 4,
    "outputs": 3,
    # issue 23: supervised processes, stdin spools, sweeps and datasets
    "workers": 6,
    "parentsig": 6,
    "stdin": 8,
    "sweep": 8,
}
HOSTILE_INTS = (
    -1,
    0,
    1,
    0xFF,
    0xFFFF,
    0x10000,
    2**31,
    2**32 - 1,
    2**32,
    2**52,
    2**63 - 1,
    2**63,
    2**64 - 1,
    -(2**63),
)
HOSTILE_VALUES = HOSTILE_INTS + (None, True, 1.5, "x", "9.9", "5.4", b"\0" * 33, [], {}, [1, 2])
ENV = dict(os.environ, ARROW_DEFAULT_MEMORY_POOL="system", PYTHONUNBUFFERED="1")
ENV.pop("COLUMNS", None)


# --- running the CLI -------------------------------------------------------------------------


CPU_LIMIT = [60]  # CPU seconds per CLI run (set by main); a hang is judged on CPU time, so
WALL_FACTOR = 6  # that a loaded machine does not make slow cases "hang"; the wall-clock
# timeout (CPU limit x WALL_FACTOR) only catches processes blocked without spending CPU
MAX_STDERR = 64 << 10  # an error message longer than this is itself a finding


def _limit():
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_LIMIT[0], CPU_LIMIT[0] + 5))


class Run:
    def __init__(self, args, rc, out, err, timed_out, secs):
        self.args, self.rc, self.out, self.err = args, rc, out, err
        self.timed_out, self.secs = timed_out, secs


def cli(args, cwd, timeout, stdin=None) -> Run:
    cmd = [sys.executable, "-m", "gictools", *map(str, args)]
    t0 = time.monotonic()
    try:
        r = subprocess.run(
            cmd,
            cwd=cwd,
            capture_output=True,
            timeout=timeout,
            preexec_fn=_limit,
            env=ENV,
            stdin=subprocess.DEVNULL if stdin is None else stdin,
        )
        return Run(args, r.returncode, r.stdout, r.stderr, False, time.monotonic() - t0)
    except subprocess.TimeoutExpired as e:
        return Run(args, None, e.stdout or b"", e.stderr or b"", True, time.monotonic() - t0)


def popen(args, cwd, *, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=None):
    """`python -m gictools ARGS` under the campaign's limits; stderr is always a pipe."""
    cmd = [sys.executable, "-m", "gictools", *map(str, args)]
    return subprocess.Popen(
        cmd,
        cwd=cwd,
        stdout=stdout,
        stderr=subprocess.PIPE,
        stdin=stdin,
        preexec_fn=_limit,
        env=env or ENV,
    )


def _stderr_within(p: subprocess.Popen, timeout: float) -> bytes | None:
    """What p wrote to stderr once it has ended; None when it is still running after
    timeout seconds (it is then killed and reaped)."""
    try:
        return p.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        return None


def classify(r: Run) -> tuple[str, str]:
    """(class, reason) of one CLI run."""
    err = r.err.decode("utf-8", "replace")
    if r.timed_out:
        return "hang", "wall-clock timeout"
    if r.rc == -signal.SIGXCPU:
        return "hang", f"over {CPU_LIMIT[0]} s of CPU"
    if (
        "MemoryError" in err
        or "bad_alloc" in err
        or "Cannot allocate memory" in err
        or "ArrowMemoryError" in err
        or r.rc == -signal.SIGKILL
    ):
        return "memory", _last_line(err) or f"exit {r.rc}"
    if "Traceback" in err:
        return "crash", _last_line(err)
    if r.rc == 2:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        if len(lines) == 1 and lines[0].startswith("gictools: error:"):
            if len(r.err) > MAX_STDERR:
                return "broken", f"a {len(r.err):,}-byte error message: {lines[0][:200]}..."
            return "refused", lines[0][:300]
        return "crash", f"exit 2 without a one-line error: {_last_line(err)!r}"
    if r.rc in (0, 1):
        return "accepted", ""
    return "crash", f"exit {r.rc}: {_last_line(err)}"


def _last_line(s: str) -> str:
    lines = [ln for ln in s.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def temps(d) -> list[str]:
    return sorted(n for n in os.listdir(d) if n.endswith(".tmp") or ".tmp-" in n)


# --- seeds (valid inputs, made once) ---------------------------------------------------------


def _rich_trace(path):
    """A Recorder trace touching every record kind: commands, registers, memory, MSIs,
    device controls (save/restore), acknowledges and expectations."""
    import itertools

    from gictools import VM
    from gictools.guest import Guest
    from gictools.trace.recorder import Recorder

    clock = itertools.count(0, 1000).__next__
    vm = VM(4, kernel="6.8")
    vm.add_its()
    vm.add_its()
    with Recorder(vm, path, clock=clock) as rec:
        for its in rec.itses:
            g = Guest(rec, its)
            for v in range(4):
                g.enable_lpis(v)
            for c in range(4):
                g.mapc(c, c)
            for d in range(6):
                g.mapd(d, 5)
                for e in range(8):
                    intid = 8192 + 64 * d + e + 512 * its.index
                    g.set_lpi_config(intid)
                    g.mapti(d, e, intid, (d + e) % 4)
            for d in range(6):
                for e in range(8):
                    rec.signal_msi(its, d, e)
            g.movi(1, 1, 2)
            rec.ack(1, 8192 + 64 + 1)
            rec.expect("pending", intid=8192, vcpu=0, pending=True)
            g.discard(2, 3)
            g.inv(3, 3)
            g.invall(1)
            g.movall(0, 3)
            g.sync(1)
            its.save_tables()
            rec.save_pending_tables()
            # no RESTORE_TABLES on the live ITS: KVM fails it (-EEXIST from the collections)
            # and frees every device and collection (vgic_its_restore_tables_v0)
            rec.signal_msi(its, 4, 4)
            rec.expect("msi", ret=1)


def _mem_heavy_trace(path, rng):
    from gictools.trace.writer import TraceWriter

    vm = {"vcpus": 1, "memory": [[0x4000_0000, 0x1000_0000]], "itses": [{"base": 0x8080000}]}
    with TraceWriter(path, vm=vm, source="fuzz_campaign mem-heavy") as w:
        for i in range(48):
            w.mem(0x4000_0000 + i * 0x10000, rng.randbytes(0x10000), t_ns=i)


def _gz_bombs(d: Path) -> list[Path]:
    """Small gzip files holding huge objects (the 64 MiB per-object limit must hold)."""
    out = []

    def write(name, head: bytes, fill: int, tail: bytes = b""):
        p = d / name
        with open(p, "wb") as raw:
            z = zlib.compressobj(1, zlib.DEFLATED, 31)
            raw.write(z.compress(head))
            chunk = bytes(1 << 20)
            for _ in range(fill >> 20):
                raw.write(z.compress(chunk))
            raw.write(z.compress(tail))
            raw.write(z.flush())
        out.append(p)

    hdr = {
        "format": "gictools-trace",
        "version": [1, 0],
        "vm": {"vcpus": 1, "itses": [{"base": 0x8080000}]},
        "source": "bomb",
        "metadata": {},
    }
    hb = msgpack.packb(hdr, use_bin_type=True)
    # a MEM record whose bin declares 2^32-1 bytes, followed by 96 MiB of zeros
    write(
        "bomb-bin32.msgpack.gz",
        hb + b"\x95\x04\x00\xc0\xce\x40\x00\x00\x00\xc6\xff\xff\xff\xff",
        96 << 20,
    )
    # an 80 MiB str in the header's metadata
    meta = b"\x85" + b"".join(msgpack.packb(k) + msgpack.packb(v) for k, v in list(hdr.items())[:4])
    write(
        "bomb-header-80m.msgpack.gz",
        meta + b"\xa8metadata\x81\xa1x\xdb" + struct.pack(">I", 80 << 20),
        80 << 20,
    )
    # a MEM record with 12 trailing bins of 16 MiB (each bin within limits, 192 MiB in all;
    # trailing elements are what later minor versions may append), and a record whose tag
    # is a 16 MiB bin
    for name, head, nbins in (
        ("bomb-array-192m.msgpack.gz", b"\xdc\x00\x11\x04\x00\xc0\xce\x40\x00\x00\x00\xc4\x00", 12),
        ("bomb-tag-16m.msgpack.gz", b"\x92", 1),
    ):
        p = d / name
        with open(p, "wb") as raw:
            z = zlib.compressobj(1, zlib.DEFLATED, 31)
            raw.write(z.compress(hb + head))
            zero = bytes(1 << 20)
            for _ in range(nbins):
                raw.write(z.compress(b"\xc6" + struct.pack(">I", 16 << 20)))
                for _ in range(16):
                    raw.write(z.compress(zero))
            if nbins == 1:
                raw.write(z.compress(b"\x00"))  # the tag record's second element
            raw.write(z.flush())
        out.append(p)
    # a 2^20-element array of maps in metadata (each tiny; the element count is the attack)
    arr = b"\xdd" + struct.pack(">I", 1 << 20) + b"\x80" * (1 << 20)
    write("bomb-wide.msgpack.gz", meta + b"\xa8metadata\x81\xa1x" + arr, 0)
    return out


class Seeds:
    """Valid inputs for the mutators, built deterministically in dir."""

    def __init__(self, d: Path, jobs: int):
        self.d = d
        d.mkdir(parents=True, exist_ok=True)
        self.big = d / "big.msgpack"
        lpi = ["gen", "lpi-stress", "-v", "2", "-d", "2", "-e", "4", "-i", "3"]
        big = ["gen", "lpi-stress", "-v", "4", "-d", "4", "-e", "64", "-i", "1000"]
        stage1 = [[*lpi, "-o", d / "lpi.msgpack"], [*big, "-o", self.big]]
        stage1 += [
            ["import", "qemu", *self.qemu_args(n), "-o", d / f"{n}.msgpack"] for n in QEMU_NAMES
        ]
        with ThreadPoolExecutor(jobs) as ex:
            runs = ex.map(lambda a: cli(a, d, 300), stage1)
            _rich_trace(d / "rich.msgpack")
            _mem_heavy_trace(d / "memheavy.msgpack", random.Random(12345))
            self.bombs = _gz_bombs(d)
            for r in runs:
                assert r.rc == 0, (r.args, r.err)
        self.traces = [d / "lpi.msgpack", d / "rich.msgpack"]
        self.traces += [d / f"{n}.msgpack" for n in QEMU_NAMES]
        self.images = [t.with_suffix(".img") for t in self.traces]
        # writers for the signal / full-disk / concurrency cases, with reference outputs
        self.writers = {
            "gen": (["gen", "lpi-stress", "-v", "4", "-d", "4", "-e", "32", "-i", "1500"], "trace"),
            "gen-small": (
                ["gen", "lpi-stress", "-v", "2", "-d", "2", "-e", "8", "-i", "40"],
                "trace",
            ),
            "replay": (["replay", "-q", self.big], "parquet"),
            "save": (["save", self.traces[-1]], "image"),
            "save-mem": (["save", d / "memheavy.msgpack"], "image"),
            "import": (["import", "qemu", *self.qemu_args("smp4-hotplug")], "trace"),
        }
        self.refs = {k: d / f"ref-{k}" for k in self.writers}
        stage2 = [["save", t, "-o", i] for t, i in zip(self.traces, self.images)]
        stage2 += [[*args, "-o", self.refs[k]] for k, (args, _) in self.writers.items()]
        # a finished sweep dataset (2 traces x 2 policies), copied by the sweep cases
        self.dataset = d / "dataset"
        self.sweep_traces = [self.traces[0], self.traces[2]]
        stage2.append(
            ["sweep", "-t", self.sweep_traces[0], "-t", self.sweep_traces[1], "-c", "none"]
            + ["-c", "lru-v6.8", "-o", self.dataset, "-q", "-j", "1"]
        )
        with ThreadPoolExecutor(jobs) as ex:
            for r in ex.map(lambda a: cli(a, d, 300), stage2):
                assert r.rc in ((0, 1) if r.args[0] == "sweep" else (0,)), (r.args, r.err)

    @staticmethod
    def qemu_args(name, parts=("cmdq", "lpiprop", "cmdline")):
        a = [FIXTURES / f"{name}.trace.log.gz"]
        for p in parts:
            a += [f"--{p}", FIXTURES / f"{name}.{p}.txt"]
        return a


# --- validity of an output -------------------------------------------------------------------


def valid_output(path: Path, kind: str, allowed: list[Path]) -> str | None:
    """None if path is whole and valid (byte-equal to one of `allowed` where outputs are
    deterministic), else the reason."""
    data = path.read_bytes()
    if kind in ("trace", "image"):
        if any(a.exists() and data == a.read_bytes() for a in allowed):
            return None
        return f"{kind} output differs from every whole version ({len(data)} bytes)"
    import pyarrow.parquet as pq

    try:
        n = pq.read_metadata(path).num_rows
    except Exception as e:
        return f"parquet unreadable: {e}"
    want = {pq.read_metadata(a).num_rows for a in allowed if a.exists()}
    return None if n in want else f"parquet has {n} rows, whole versions have {want}"


# --- mutators --------------------------------------------------------------------------------


def _objects(data: bytes) -> list:
    up = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=1 << 30)
    up.feed(data)
    return list(up)


_RAW: dict[bytes, bytes] = {}  # marker -> raw msgpack bytes spliced in by _pack


def _pack(objs) -> bytes:
    pk = msgpack.Packer(use_bin_type=True)
    out = b"".join(pk.pack(o) for o in objs)
    for marker, raw in list(_RAW.items()):
        packed = pk.pack(marker)
        if packed in out:
            out = out.replace(packed, raw)
            del _RAW[marker]
    return out


def _containers(obj, path=()):
    """(container, key) pairs for every element of every list/dict inside obj."""
    if isinstance(obj, list):
        for i, v in enumerate(obj):
            yield obj, i
            yield from _containers(v)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield obj, k
            yield from _containers(v)


def _deep(rng, depth):
    """A value nested depth deep (arrays and maps), too deep for msgpack's Packer: a marker
    that _pack replaces by the raw encoding."""
    raw = b"".join(b"\x91" if rng.random() < 0.5 else b"\x81\xa1k" for _ in range(depth))
    marker = b"\x00deep-" + rng.randbytes(12)
    _RAW[marker] = raw + msgpack.packb(rng.choice([0, "x", b"y"]), use_bin_type=True)
    return marker


def _hostile_command(rng) -> bytes:
    op = rng.choice(
        [0x01, 0x03, 0x04, 0x05, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0F, 0x05, 0x2D, 0xFF]
    )
    dw = [rng.choice([0, 1, 2**64 - 1, rng.getrandbits(64)]) for _ in range(4)]
    dw[0] = (dw[0] & ~0xFF) | op
    if rng.random() < 0.5:
        dw[1] = rng.choice([0x1F, 0xFF, 31, 0x10]) | rng.choice([0, 8192, 2**32 - 1]) << 32
        dw[2] = rng.choice([0, 2**63 | 0x4000_0000, 2**63 | (2**52 - 256), rng.getrandbits(64)])
    return b"".join(x.to_bytes(8, "little") for x in dw)


def mutate_trace(rng, seeds: Seeds, d: Path) -> tuple[Path, str]:
    """A mutated trace file in d and a short description."""
    src = rng.choice(seeds.traces)
    data = src.read_bytes()
    kind = rng.choices(
        [
            "flip",
            "truncate",
            "splice",
            "structural",
            "hostile-records",
            "deep",
            "huge-header",
            "big-object",
            "bomb",
        ],
        [14, 8, 6, 30, 16, 6, 6, 4, 3],
    )[0]
    desc = f"{kind} of {src.name}"
    if kind == "bomb":
        b = rng.choice(seeds.bombs)
        return b, f"gzip bomb {b.name}"
    if kind == "flip":
        b = bytearray(data)
        for _ in range(rng.choice([1, 1, 2, 4, 16])):
            i = rng.randrange(len(b))
            b[i] ^= rng.randrange(1, 256)
        data = bytes(b)
    elif kind == "truncate":
        data = data[: rng.randrange(len(data))]
    elif kind == "splice":
        i, j = sorted(rng.randrange(len(data)) for _ in range(2))
        data = data[:i] + (data[i:j] * rng.randint(0, 3)) + data[j:]
    else:
        objs = _objects(data)
        if kind == "structural":
            for _ in range(rng.choice([1, 1, 2, 3])):
                o = rng.randrange(min(len(objs), 200))
                slots = list(_containers(objs[o])) if isinstance(objs[o], (list, dict)) else []
                if not slots:
                    continue
                c, k = rng.choice(slots)
                what = rng.random()
                if what < 0.6:
                    c[k] = rng.choice(HOSTILE_VALUES)
                elif what < 0.75 and isinstance(c, list):
                    del c[k]
                elif what < 0.9 and isinstance(c, list):
                    c.append(rng.choice(HOSTILE_VALUES))
                elif isinstance(c, dict):
                    c[rng.choice(["zzz", "vcpus", "itses", "kernel", "memory", "vcpu_ids"])] = (
                        rng.choice(HOSTILE_VALUES)
                    )
        elif kind == "hostile-records":
            recs = []
            its_n = max(
                1, len(objs[0].get("vm", {}).get("itses", [])) if isinstance(objs[0], dict) else 1
            )
            for _ in range(rng.randint(1, 40)):
                t = rng.randrange(2**40)
                r = rng.random()
                if r < 0.35:
                    recs.append([2, t, None, rng.choice([0, its_n - 1]), _hostile_command(rng)])
                elif r < 0.55:
                    recs.append(
                        [
                            0,
                            t,
                            None,
                            rng.choice([0, its_n - 1]),
                            rng.choice(HOSTILE_INTS[1:8]),
                            rng.choice(HOSTILE_INTS[1:8]),
                        ]
                    )
                elif r < 0.7:
                    frame = rng.choice(["its", "its-user", "redist"])
                    off = rng.choice(
                        [
                            0,
                            8,
                            0x80,
                            0x84,
                            0x88,
                            0x90,
                            0x98,
                            0x100,
                            0x108,
                            0x70,
                            0x78,
                            0x28,
                            0x10040,
                        ]
                    )
                    recs.append(
                        [
                            3,
                            t,
                            None,
                            frame,
                            0,
                            off,
                            8 if off >= 0x70 else 4,
                            rng.getrandbits(32 if off < 0x70 else 64),
                            True,
                        ]
                    )
                elif r < 0.8:
                    gpa = rng.choice(
                        [0x4000_0000, 0x4000_0000 + rng.randrange(1 << 28), 2**64 - 8, 0]
                    )
                    recs.append([4, t, None, gpa, rng.randbytes(rng.choice([1, 8, 64, 4096]))])
                elif r < 0.9:
                    op = rng.choice(
                        ["save_tables", "restore_tables", "reset", "save_pending_tables"]
                    )
                    recs.append([5, t, None, op, 0 if op != "save_pending_tables" else None, None])
                else:
                    n = rng.choice([1, 100, 65536])
                    ids = bytes(4 * n) if rng.random() < 0.5 else rng.randbytes(4 * n)
                    recs.append([1, n, 0, bytes(8 * n), ids, ids, None])
            for r in recs:
                objs.insert(rng.randint(1, len(objs)), r)
        elif kind == "deep":
            depth = rng.choice([100, 500, 1000, 5000])
            if rng.random() < 0.5 and isinstance(objs[0], dict):
                objs[0]["metadata"] = {"deep": _deep(rng, depth)}
            else:
                objs.insert(
                    rng.randint(1, len(objs)), [6, 0, None, "pending", {"intid": _deep(rng, depth)}]
                )
                if rng.random() < 0.3:
                    objs.insert(1, _deep(rng, depth))  # a tag nested deep
        elif kind == "huge-header" and isinstance(objs[0], dict):
            vm = objs[0].setdefault("vm", {})
            which = rng.choice(["itses", "memory", "vcpus", "metadata"])
            if which == "itses":
                n = rng.choice([4096, 65536])
                vm["itses"] = [{"base": 0x1000_0000 + (i << 17)} for i in range(n)]
            elif which == "memory":
                n = rng.choice([4096, 1 << 16, 1 << 20])
                vm["memory"] = [[(1 << 32) + (i << 13), 4096] for i in range(n)]
            elif which == "vcpus":
                vm["vcpus"] = 4096
                vm["vcpu_ids"] = [rng.getrandbits(32) for _ in range(4096)]
            else:
                objs[0]["metadata"] = {f"k{i}": i for i in range(rng.choice([65535, 65537]))}
        elif kind == "big-object":
            which = rng.choice(["mem-16m", "mem-16m+1", "str-1m+1", "block-n"])
            if which.startswith("mem"):
                n = (16 << 20) + (1 if which.endswith("+1") else 0)
                objs.insert(rng.randint(1, len(objs)), [4, 0, None, 0x4000_0000, bytes(n)])
            elif which == "str-1m+1":
                objs.insert(rng.randint(1, len(objs)), [6, 0, None, "x" * ((1 << 20) + 1), {}])
            else:
                n = rng.choice([65536, 65537, 2**32 - 1])
                m = min(n, 65536)
                objs.insert(
                    rng.randint(1, len(objs)),
                    [1, n, 0, bytes(8 * m), bytes(4 * m), bytes(4 * m), None],
                )
        data = _pack(objs)
    out = d / "t.msgpack"
    if rng.random() < 0.25:
        data = gzip.compress(data, compresslevel=1)
        out = d / "t.msgpack.gz"
        if rng.random() < 0.2:
            data = data[: rng.randrange(len(data))]
            desc += ", gzip cut"
        desc += ", gzipped"
    out.write_bytes(data)
    return out, desc


_IMG_HEADER = struct.Struct("<8sHHIQ")


def _image_parts(data: bytes):
    magic, major, minor, res, n = _IMG_HEADER.unpack_from(data, 0)
    return (magic, major, minor, res), _objects(data[24 : 24 + n])


def _image_bytes(head, body: bytes) -> bytes:
    magic, major, minor, res = head
    h = _IMG_HEADER.pack(magic, major, minor, res, len(body))
    return h + body + hashlib.sha256(h + body).digest()


def mutate_image(rng, seeds: Seeds, d: Path) -> tuple[Path, str]:
    src = rng.choice(seeds.images)
    data = src.read_bytes()
    head, recs = _image_parts(data)
    kind = rng.choices(
        [
            "body-flip",
            "record",
            "memory",
            "replicate",
            "header",
            "drop-dup",
            "big-body",
            "raw-truncate",
        ],
        [15, 30, 25, 10, 6, 8, 1, 5],
    )[0]
    desc = f"{kind} of {src.name}"
    body = None
    if kind == "raw-truncate":
        out = d / "i.img"
        out.write_bytes(data[: rng.randrange(len(data))])
        return out, desc
    if kind == "body-flip":
        b = bytearray(data[24:-32])
        for _ in range(rng.choice([1, 2, 8])):
            i = rng.randrange(len(b))
            b[i] ^= rng.randrange(1, 256)
        body = bytes(b)
    elif kind == "record":
        for _ in range(rng.choice([1, 1, 2])):
            r = rng.choice(recs)
            slots = list(_containers(r))
            c, k = rng.choice(slots)
            if rng.random() < 0.7:
                c[k] = (
                    rng.choice(HOSTILE_INTS) if rng.random() < 0.7 else rng.choice(HOSTILE_VALUES)
                )
            else:
                c[k] = rng.getrandbits(64)
    elif kind in ("memory", "replicate"):
        mems = [r for r in recs if isinstance(r, list) and r and r[0] == "mem"]
        if mems:
            r = rng.choice(mems)
            b = bytearray(r[2])
            if kind == "memory":
                for _ in range(rng.choice([1, 4, 32])):
                    i = rng.randrange(len(b))
                    b[i] ^= 1 << rng.randrange(8)
            else:  # copy one non-zero 8-byte entry over a whole page: many DTEs/ITEs alike
                words = [i for i in range(0, len(b) - 7, 8) if any(b[i : i + 8])]
                if words:
                    w = bytes(b[(i := rng.choice(words)) : i + 8])
                    p0 = (i // 4096) * 4096
                    b[p0 : p0 + 4096] = w * 512
            r[2] = bytes(b)
    elif kind == "header":
        magic, major, minor, res = head
        which = rng.choice(["reserved", "minor", "major"])
        head = (magic, major, minor, rng.randrange(1, 2**32)) if which == "reserved" else head
        if which == "minor":
            head = (magic, major, rng.randrange(1, 65536), res)
        elif which == "major":
            head = (magic, rng.choice([0, 2, 65535]), minor, res)
    elif kind == "drop-dup":
        i = rng.randrange(len(recs))
        if rng.random() < 0.5:
            del recs[i]
        else:
            recs.insert(rng.randrange(len(recs)), recs[i])
    elif kind == "big-body":  # > 100 MiB of guest memory (issue 10 item 1)
        vmrec = recs[0]
        if isinstance(vmrec, list) and isinstance(vmrec[1], dict):
            vmrec[1]["memory"] = [[0x4000_0000, 0x2000_0000]]
        tail = [r for r in recs if isinstance(r, list) and r and r[0] != "mem" and r[0] != "end"]
        mem = [["mem", 0x5000_0000 + (i << 24), rng.randbytes(1 << 20) * 16] for i in range(8)]
        recs = tail + mem + [["end", len(tail) + len(mem)]]
    if body is None:
        body = _pack(recs)
    out = d / "i.img"
    out.write_bytes(_image_bytes(head, body))
    return out, desc


def mutate_qemu(rng, d: Path) -> tuple[list, str]:
    name = rng.choice(QEMU_NAMES)
    lines = gzip.decompress((FIXTURES / f"{name}.trace.log.gz").read_bytes()).split(b"\n")
    import re

    num = re.compile(rb"0x[0-9a-fA-F]+|\b\d+\b")
    hostile = [
        b"0xffffffffffffffff",
        b"0x100000000",
        b"0x1f",
        b"0xff",
        b"0x1000",
        b"0",
        b"4294967295",
        b"0x" + b"f" * 40,
        b"99999999999999999999999",
        b"-1",
    ]
    ops = []
    for _ in range(rng.choice([1, 1, 2, 4, 8])):
        op = rng.choices(
            ["number", "unknown", "cut", "delete", "dup", "garbage"], [50, 10, 15, 10, 10, 5]
        )[0]
        i = rng.randrange(len(lines))
        ops.append(f"{op}@{i + 1}")
        if op == "number":
            ms = list(num.finditer(lines[i]))
            if ms:
                m = rng.choice(ms)
                lines[i] = lines[i][: m.start()] + rng.choice(hostile) + lines[i][m.end() :]
        elif op == "unknown":
            lines.insert(i, b"1@1.0:gicv3_its_frobnicate GICv3 ITS: frobnicate 0x1 0x2")
        elif op == "cut":
            lines[i] = lines[i][: rng.randrange(len(lines[i]) + 1)]
        elif op == "delete":
            del lines[i]
        elif op == "dup":
            lines[i:i] = [lines[i]] * rng.choice([1, 10, 1000])
        else:
            lines[i] = rng.randbytes(rng.randrange(1, 200))
    text = b"\n".join(lines)
    log = d / ("q.trace.log.gz" if rng.random() < 0.5 else "q.trace.log")
    log.write_bytes(gzip.compress(text, 1) if log.suffix == ".gz" else text)
    args = [log]
    for part in ("cmdq", "lpiprop", "cmdline"):
        if rng.random() < 0.25:
            continue
        t = (FIXTURES / f"{name}.{part}.txt").read_bytes()
        if rng.random() < 0.3:
            tl = t.split(b"\n")
            j = rng.randrange(len(tl))
            if part == "cmdline":
                t = re.sub(
                    rb"-smp \d+|-m \d+",
                    rng.choice([b"-smp 5000", b"-m 99999999", b"-smp 0", b"-m 1"]),
                    t,
                )
                ops.append(f"{part}: -smp/-m changed")
            else:
                ms = list(num.finditer(tl[j]))
                if ms:
                    m = rng.choice(ms)
                    tl[j] = (
                        tl[j][: m.start()]
                        + rng.choice(hostile + [b"ffffffffffffffff", b"00000000000000ff"])
                        + tl[j][m.end() :]
                    )
                t = b"\n".join(tl)
                ops.append(f"{part} line {j + 1}")
        p = d / f"q.{part}.txt"
        p.write_bytes(t)
        args += [f"--{part}", p]
    return args, f"{name}: " + ", ".join(ops)


# --- cases -----------------------------------------------------------------------------------


class Result:
    def __init__(self, cat, idx, cls, reason, desc, cmds):
        self.cat, self.idx, self.cls, self.reason = cat, idx, cls, reason
        self.desc, self.cmds = desc, cmds

    def as_dict(self):
        return {
            "case": self.idx,
            "category": self.cat,
            "class": self.cls,
            "reason": self.reason,
            "what": self.desc,
            "commands": [[str(x) for x in c] for c in self.cmds],
        }


def _worst(results):
    order = {
        c: i for i, c in enumerate(["accepted", "refused", "broken", "hang", "memory", "crash"])
    }
    return max(results, key=lambda cr: order[cr[0]])


def case_trace(rng, seeds, d, timeout):
    t, desc = mutate_trace(rng, seeds, d)
    verb = rng.choices(
        ["info", "dump", "replay", "replay-o", "save", "roundtrip"], [15, 5, 35, 15, 20, 10]
    )[0]
    if verb == "info":
        args = ["info", t]
    elif verb == "dump":
        args = ["dump", t, "--limit", "200"]
    elif verb.startswith("replay"):
        args = ["replay", "-q", t]
        for c in rng.sample(
            ["none", "lru-v6.8", "usage-v2", "per-its-v6.10"], rng.choice([0, 1, 4])
        ):
            args += ["-c", c]
        if verb == "replay-o":
            args += ["-o", d / "out.parquet"]
    elif verb == "save":
        args = ["save", t, "-o", d / "out.img"]
    else:
        args = ["roundtrip", t]
    r = cli(args, d, timeout)
    cls, why = classify(r)
    if desc.startswith("gzip bomb") and "tag-16m" not in desc and "wide" not in desc:
        if cls == "accepted" or (cls == "refused" and "64 MiB" not in why):
            return "broken", f"an object over 64 MiB was not refused ({cls}: {why})", desc, [args]
    return cls, why, desc, [args]


def case_image(rng, seeds, d, timeout):
    img, desc = mutate_image(rng, seeds, d)
    verb = rng.choices(["restore", "inspect", "roundtrip"], [50, 25, 25])[0]
    args = [verb, img]
    r = cli(args, d, timeout)
    cls, why = classify(r)
    return cls, why, desc, [args]


def case_qemu(rng, seeds, d, timeout):
    inputs, desc = mutate_qemu(rng, d)
    args = ["import", "qemu", *inputs, "-o", d / "imp.msgpack"]
    r = cli(args, d, timeout)
    cls, why = classify(r)
    cmds = [args]
    if r.rc == 0 and rng.random() < 0.5:
        args2 = ["replay", "-q", d / "imp.msgpack"]
        cmds.append(args2)
        cls, why = _worst([(cls, why), classify(cli(args2, d, timeout))])
    return cls, why, desc, cmds


def _out_name(kind):
    return {"trace": "out.msgpack", "parquet": "out.parquet", "image": "out.img"}[kind]


def case_signal(rng, seeds, d, timeout):
    key = rng.choice(["gen", "replay", "save", "import", "save-mem"])
    args, kind = seeds.writers[key]
    out = d / _out_name(kind)
    old = None
    if rng.random() < 0.5:  # an older whole output is there already
        old = d / "old"
        other = {"trace": "gen-small", "image": "save" if key == "save-mem" else "save-mem"}
        shutil.copy(seeds.refs[other.get(kind, key)], old)
        shutil.copy(old, out)
    sig = rng.choice([signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGKILL])
    delay = rng.uniform(0.0, 2.0)
    full = [*args, "-o", out]
    desc = f"{key} -o {out.name}, {sig.name} after {delay:.2f} s" + (
        ", old output present" if old else ""
    )
    p = popen(full, d)
    time.sleep(delay)
    if p.poll() is None:
        p.send_signal(sig)
    err = _stderr_within(p, timeout)
    if err is None:
        return "hang", "writer did not stop after the signal", desc, [full]
    if b"Traceback" in err and sig != signal.SIGINT:
        return "crash", _last_line(err.decode("utf-8", "replace")), desc, [full]
    problems = []
    if sig != signal.SIGKILL and temps(d):
        problems.append(f"temporary files left after {sig.name}: {temps(d)}")
    if out.exists():
        bad = valid_output(out, kind, [seeds.refs[key]] + ([old] if old else []))
        if bad:
            problems.append(bad)
    # a following run in the same directory must clear what a SIGKILL left
    follow = ["gen", "lpi-stress", "-i", "1", "-o", d / "follow.msgpack"]
    fr = cli(follow, d, timeout)
    if fr.rc != 0:
        problems.append(f"following run failed: {_last_line(fr.err.decode())}")
    if temps(d):
        problems.append(f"temporary files left after a following run: {temps(d)}")
    if problems:
        return "broken", "; ".join(problems), desc, [full, follow]
    return "accepted", "", desc, [full, follow]


@contextlib.contextmanager
def tmpfs(d: Path, size: str):
    d.mkdir(exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)], capture_output=True
    )
    if r.returncode != 0:
        yield None
        return
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def can_mount() -> bool:
    with tempfile.TemporaryDirectory() as t, tmpfs(Path(t) / "m", "64k") as m:
        return m is not None


def case_diskfull(rng, seeds, d, timeout):
    key = rng.choice(["gen", "replay", "save-mem", "import"])
    args, kind = seeds.writers[key]
    with tmpfs(d / "full", "2m") as fs:
        if fs is None:
            return "skipped", "mount not permitted", key, []
        fill = rng.choice([0, 0, 1 << 20, rng.randrange(2 << 20)])
        if fill:
            with contextlib.suppress(OSError):
                (fs / "filler").write_bytes(bytes(fill))
        old = None
        out = fs / _out_name(kind)
        if rng.random() < 0.3:
            old = d / "old"
            old.write_bytes(b"old output")
            with contextlib.suppress(OSError):
                shutil.copy(old, out)
        full = [*args, "-o", out]
        desc = f"{key} -o a 2 MiB tmpfs holding {fill} bytes" + (
            ", old output present" if old else ""
        )
        r = cli(full, d, timeout)
        cls, why = classify(r)
        problems = []
        left = temps(fs)
        if left:
            problems.append(f"temporary files left: {left}")
        if ".gictools-" in why or ".tmp" in why:
            problems.append(f"error names the temporary file: {why}")
        if r.rc == 2 and out.exists() and (old is None or out.read_bytes() != old.read_bytes()):
            problems.append("a partial output after the error")
        if r.rc == 0 and out.exists():
            bad = valid_output(out, kind, [seeds.refs[key]])
            if bad:
                problems.append(bad)
        if problems and cls in ("refused", "accepted"):
            return "broken", "; ".join(problems), desc, [full]
        return cls, why, desc, [full]


def case_concurrent(rng, seeds, d, timeout):
    keys = rng.choice(
        [
            ["gen", "gen-small"],
            ["gen-small", "gen-small", "gen"],
            ["save", "save-mem"],
            ["replay"] * 2,
            ["import", "gen"],
        ]
    )
    kinds = {seeds.writers[k][1] for k in keys}
    out = d / ("out.parquet" if "parquet" in kinds else "out.bin")
    fulls = [[*seeds.writers[k][0], "-o", out] for k in keys]
    desc = f"{len(keys)} writers to one path: {', '.join(keys)}"
    ps = [popen(f, d) for f in fulls]
    problems = []
    for p in ps:
        try:
            _, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in ps:
                q.kill()
            return "hang", "a writer did not finish", desc, fulls
        if p.returncode != 0:
            problems.append(
                f"a writer failed: exit {p.returncode}: {_last_line(err.decode('utf-8', 'replace'))}"
            )
    if not out.exists():
        problems.append("no output")
    else:
        kind = seeds.writers[keys[0]][1] if len(kinds) == 1 else "trace"
        allowed = [seeds.refs[k] for k in keys]
        if len(kinds) > 1:  # compare bytes with whichever reference matches
            bad = (
                None
                if any(out.read_bytes() == a.read_bytes() for a in allowed)
                else "output is none of the whole versions"
            )
        else:
            bad = valid_output(out, kind, allowed)
        if bad:
            problems.append(bad)
    if temps(d):
        problems.append(f"temporary files left: {temps(d)}")
    return (
        ("broken", "; ".join(problems), desc, fulls) if problems else ("accepted", "", desc, fulls)
    )


def case_outputs(rng, seeds, d, timeout):
    which = rng.choice(
        [
            "char-node",
            "same-file",
            "hardlink",
            "symlink",
            "fifo",
            "block-node",
            "directory",
            "missing-dir",
        ]
    )
    key = rng.choice(["gen-small", "replay", "save", "import"])
    args, kind = seeds.writers[key]
    if which in ("char-node", "block-node"):
        if os.geteuid() != 0:
            return "skipped", "mknod needs root", which, []
        node = d / "node"
        typ = stat.S_IFCHR if which == "char-node" else stat.S_IFBLK
        os.mknod(
            node, typ | 0o666, os.makedev(1, 3) if which == "char-node" else os.makedev(7, 250)
        )
        full = [*args, "-o", node]
        r = cli(full, d, timeout)
        cls, why = classify(r)
        st = os.lstat(node)
        if stat.S_IFMT(st.st_mode) != typ:
            return "broken", f"the device node was replaced (mode {st.st_mode:o})", which, [full]
        if which == "block-node" and cls != "refused":
            return "broken", "writing to a block device was not refused", which, [full]
        return cls, why, f"{which}: {key}", [full]
    if which == "fifo":
        fifo = d / "fifo"
        os.mkfifo(fifo)
        got = []

        def reader():
            with open(fifo, "rb") as f:
                got.append(f.read())

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        full = [*args, "-o", fifo]
        r = cli(full, d, timeout)
        cls, why = classify(r)
        if not stat.S_ISFIFO(os.lstat(fifo).st_mode):
            return "broken", "the FIFO was replaced", which, [full]
        if (
            cls == "accepted"
            and kind != "parquet"
            and got
            and got[0] != seeds.refs[key].read_bytes()
        ):
            return "broken", "the FIFO got other bytes than the file output", which, [full]
        if cls != "accepted":  # unblock the reader
            with (
                contextlib.suppress(OSError),
                open(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK), "wb"),
            ):
                pass
        return cls, why, f"{which}: {key}", [full]
    if which in ("directory", "missing-dir"):
        out = d if which == "directory" else d / "no" / "such" / "x"
        full = [*args, "-o", out]
        r = cli(full, d, timeout)
        cls, why = classify(r)
        if cls != "refused":
            return "broken", f"not refused: {cls} {why}", which, [full]
        return cls, why, which, [full]
    # same file as an input
    if key == "gen-small":
        key = "save"
    args, kind = seeds.writers[key]
    inp = d / "input"
    src = {
        "replay": seeds.big,
        "save": seeds.traces[-1],
        "import": FIXTURES / "smp4-hotplug.trace.log.gz",
    }[key]
    shutil.copy(src, inp)
    before = inp.read_bytes()
    full = [str(inp) if str(a) == str(src) else a for a in args]
    if which == "same-file":
        out = inp
    elif which == "hardlink":
        out = d / "hl"
        os.link(inp, out)
    else:
        out = d / "sl"
        os.symlink(inp, out)
    full = [*full, "-o", out]
    r = cli(full, d, timeout)
    cls, why = classify(r)
    if inp.read_bytes() != before:
        return "broken", "the input was overwritten", f"{which}: {key}", [full]
    if cls != "refused":
        return "broken", f"output = input not refused ({cls})", f"{which}: {key}", [full]
    return cls, why, f"{which}: {key}", [full]


# --- processes, streams and sweeps (issue 23) ------------------------------------------------


def _wait_gone(pids, secs) -> list[int]:
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.02)
    return [p for p in pids if alive(p)]


def temps_below(d) -> list[str]:
    """gictools temporary files anywhere under d (a sweep dataset is a tree)."""
    out = []
    for dirpath, _, files in os.walk(d):
        out += [os.path.join(dirpath, n) for n in files if ".gictools-" in n]
    return sorted(out)


# a parallel run of each verb that lasts a few seconds (its workers are the targets)
def _parallel_run(rng, seeds, d, verb):
    if verb == "replay":
        pols = rng.sample(["none", "lru-v6.8", "usage-v2", "per-its-v6.10"], rng.choice([2, 3, 4]))
        args = ["replay", "-q", seeds.big, "-o", d / "out.parquet", "-j", str(min(3, len(pols)))]
        for c in pols:
            args += ["-c", c]
        return args, 1  # workers: children of the CLI
    if verb == "sweep":
        args = ["sweep", "-t", seeds.big, "-t", seeds.traces[0], "-c", "none", "-c", "lru-v6.8"]
        return [*args, "-o", d / "ds", "-q", "-j", "2"], 2  # the fork server's children
    v = rng.choice([32, 64])  # d*e*i >= 100k: the seeds run in processes
    args = ["predict", "lpi-stress", "-v", v, "-d", v, "-e", 16, "-i", 9600 // v]
    args += ["--preset", "v6.8-rc1"]
    return [*args, "--routing", "fixed", "--seeds", "3", "-j", "2"], 1


def _start_parallel(args, d, depth, timeout):
    p = popen(args, d, stdout=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and p.poll() is None:
        ws = below(p.pid, depth)
        if ws:
            return p, ws
        time.sleep(0.02)
    return p, []


def _sweep_checks(d, err: str, problems):
    ds = d / "ds"
    for line in err.splitlines():
        if line.startswith("FAILED policy="):
            part = line.split()[1].rstrip(":")
            cell = hashlib.sha256(part.encode()).hexdigest()[:20]
            if not (ds / "_manifest" / f"{cell}.failed.json").exists():
                problems.append(f"a failed cell without its .failed.json: {part}")
    if "resource_tracker" in err or "leaked" in err:
        problems.append(f"resource_tracker warning: {_last_line(err)}")


def case_workers(rng, seeds, d, timeout):
    """One worker of replay --jobs / sweep / predict dies: SIGKILL, SIGTERM, SIGXCPU (its
    RLIMIT_CPU lowered to what it has used) or MemoryError (its RLIMIT_AS lowered to what it
    has mapped). One line naming the work item (sweep: only its cell fails, with its
    .failed.json), the other workers stopped, no temporary file."""
    verb = rng.choice(["replay", "replay", "sweep", "predict"])
    how = rng.choice(["SIGKILL", "SIGTERM", "SIGXCPU", "MemoryError"])
    args, depth = _parallel_run(rng, seeds, d, verb)
    delay = rng.uniform(0.0, 1.0)
    desc = f"{verb}: a worker gets {how} {delay:.2f} s after it starts"
    p, ws = _start_parallel(args, d, depth, timeout)
    if not ws:
        out, err = p.communicate(timeout=timeout)
        return "accepted", "", desc + " (ended before a worker was seen)", [args]
    time.sleep(delay)
    tree = descendants(p.pid)
    victim = ws[0]
    try:
        if how in ("SIGKILL", "SIGTERM"):
            os.kill(victim, getattr(signal, how))
        elif how == "SIGXCPU":
            with open(f"/proc/{victim}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            used = (int(fields[11]) + int(fields[12])) // os.sysconf("SC_CLK_TCK")
            resource.prlimit(victim, resource.RLIMIT_CPU, (used + 1, used + 2))
        else:
            with open(f"/proc/{victim}/status") as f:
                vm = dict(ln.split(":", 1) for ln in f if ":" in ln)
            size = int(vm["VmSize"].split()[0]) * 1024
            resource.prlimit(victim, resource.RLIMIT_AS, (size + (8 << 20), AS_LIMIT))
    except (ProcessLookupError, FileNotFoundError, OSError):
        pass  # it ended first
    try:
        out, errb = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for q in [p.pid, *tree]:
            with contextlib.suppress(OSError):
                os.kill(q, signal.SIGKILL)
        p.communicate()
        return "hang", "the run did not end after a worker died", desc, [args]
    err = errb.decode("utf-8", "replace")
    problems = []
    left = _wait_gone(tree, 2.0)
    if left:
        problems.append(f"{len(left)} process(es) outlived the run")
    if temps_below(d):
        problems.append(f"temporary files left: {temps_below(d)[:3]}")
    if "Traceback" in err:
        return "crash", _last_line(err), desc, [args]
    if verb == "sweep":
        _sweep_checks(d, err, problems)
        cls = "accepted" if p.returncode in (0, 1) else "refused" if p.returncode == 2 else "crash"
        why = _last_line(err) if cls != "accepted" else ""
        if cls == "crash":
            why = f"exit {p.returncode}: {_last_line(err)}"
    else:
        cls, why = classify(Run(args, p.returncode, out, errb, False, 0))
        lines = [ln for ln in err.splitlines() if ln.strip()]
        if (
            cls == "memory"
            and how == "MemoryError"
            and p.returncode == 2
            and len(lines) == 1
            and ": worker ran out of memory" in lines[0]
        ):
            cls, why = "refused", lines[0]  # the limit we set, reported as it should be
        if cls == "refused" and "worker" in why and ": worker " not in why:
            problems.append(f"a dead worker not named with its work item: {why}")
        if verb == "replay" and cls == "refused" and (d / "out.parquet").exists():
            problems.append("an output after a failed run")
    if problems:
        return "broken", "; ".join(problems), desc, [args]
    return cls, why, desc, [args]


def case_parentsig(rng, seeds, d, timeout):
    """SIGTERM/SIGINT/SIGHUP to the parent of replay --jobs / sweep / predict: every worker
    gone within a second (2 s allowed on a loaded machine) and no temporary file; SIGKILL:
    the workers notice and exit, and the next run clears what is left."""
    verb = rng.choice(["replay", "sweep", "predict"])
    sig = rng.choice([signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGKILL])
    args, depth = _parallel_run(rng, seeds, d, verb)
    delay = rng.uniform(0.0, 2.0)
    desc = f"{verb}: {sig.name} to the parent {delay:.2f} s after its workers start"
    p, ws = _start_parallel(args, d, depth, timeout)
    if not ws:
        p.communicate(timeout=timeout)
        return "accepted", "", desc + " (ended before a worker was seen)", [args]
    time.sleep(delay)
    tree = descendants(p.pid)
    workers = below(p.pid, depth)
    if p.poll() is None:
        p.send_signal(sig)
    t0 = time.monotonic()
    left = _wait_gone(workers, 2.0 if sig != signal.SIGKILL else 4.0)
    took = time.monotonic() - t0
    errb = _stderr_within(p, timeout)
    if errb is None:
        return "hang", "the parent did not end after the signal", desc, [args]
    err = errb.decode("utf-8", "replace")
    problems = []
    helpers = _wait_gone([q for q in tree if q not in workers], 3.0)  # after the parent
    if left or helpers:
        for q in left + helpers:
            with contextlib.suppress(OSError):
                os.kill(q, signal.SIGKILL)
    if left:
        problems.append(f"{len(left)} worker(s) alive {took:.1f} s after {sig.name}")
    if helpers:
        problems.append(f"{len(helpers)} helper process(es) outlived the parent by 3 s")
    if "Traceback" in err:
        return "crash", _last_line(err), desc, [args]
    if "resource_tracker" in err or "leaked" in err:
        problems.append(f"resource_tracker warning: {_last_line(err)}")
    cmds = [args]
    if sig == signal.SIGKILL:  # the parent's own temps stay: the next run must clear them
        follow = args
        cmds.append(follow)
        fr = cli(follow, d, timeout)
        if fr.rc not in (0, 1):
            problems.append(f"the following run failed: {_last_line(fr.err.decode())}")
    if temps_below(d):
        problems.append(f"temporary files left: {temps_below(d)[:3]}")
    if problems:
        return "broken", "; ".join(problems), desc, cmds
    return "accepted", "", desc, cmds


def case_stdin(rng, seeds, d, timeout):
    """`replay -` / `save -` on hostile streams: endless text, endless zeros, a valid trace
    then endless garbage, a cut trace, a valid one, or a signal while it is copied. The
    stream is refused within a bounded read, the spool never stays in $TMPDIR."""
    kind = rng.choice(["yes", "zeros", "valid+garbage", "cut", "valid", "signal"])
    verb = rng.choice([["replay", "-q", "-"], ["save", "-", "-o", d / "out.img"]])
    src = rng.choice(seeds.traces)
    data = src.read_bytes()
    tmp = d / "tmp"
    tmp.mkdir()
    env = dict(ENV, TMPDIR=str(tmp))
    desc = f"{verb[0]} - <- {kind} ({src.name})"
    p = popen(verb, d, stdout=subprocess.PIPE, stdin=subprocess.PIPE, env=env)
    sent = [0]
    stop = threading.Event()

    def feed():
        try:
            if kind == "yes":
                chunk = b"y\n" * (1 << 15)
                while not stop.is_set():
                    p.stdin.write(chunk)
                    sent[0] += len(chunk)
            elif kind == "zeros":
                chunk = bytes(1 << 16)
                while not stop.is_set():
                    p.stdin.write(chunk)
                    sent[0] += len(chunk)
            elif kind == "valid+garbage":
                p.stdin.write(data)
                junk = rng.randbytes(1 << 16)
                while not stop.is_set():
                    p.stdin.write(junk)
                    sent[0] += len(junk)
            elif kind == "cut":
                p.stdin.write(data[: rng.randrange(1, len(data))])
            elif kind == "signal":
                p.stdin.write(data[: len(data) // 2])
                p.stdin.flush()
                stop.wait(timeout)
            else:
                p.stdin.write(data)
            p.stdin.close()
        except (BrokenPipeError, ValueError, OSError):
            pass

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    sig = None
    if kind == "signal":
        sig = rng.choice([signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and p.poll() is None and not os.listdir(tmp):
            time.sleep(0.02)
        time.sleep(rng.uniform(0, 0.3))
        if p.poll() is None:
            p.send_signal(sig)
        desc += f", {sig.name} during the copy"
    # the feeder owns stdin: wait, then read the (small) outputs
    reads = {}
    readers = [
        threading.Thread(target=lambda k=k, f=f: reads.__setitem__(k, f.read()), daemon=True)
        for k, f in (("out", p.stdout), ("err", p.stderr))
    ]
    for r_ in readers:
        r_.start()
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        stop.set()
        return "hang", f"still reading stdin after {sent[0]:,} bytes", desc, [verb]
    stop.set()
    t.join(5)
    for r_ in readers:
        r_.join(5)
    out, errb = reads.get("out", b""), reads.get("err", b"")
    err = errb.decode("utf-8", "replace")
    problems = []
    if os.listdir(tmp):
        problems.append(f"left in $TMPDIR: {os.listdir(tmp)}")
    if sent[0] > 64 << 20:
        problems.append(f"read {sent[0]:,} bytes of a stream that is not a trace")
    if sig is not None:
        if "Traceback" in err:
            return "crash", _last_line(err), desc, [verb]
        cls, why = "accepted", ""
    else:
        cls, why = classify(Run(verb, p.returncode, out, errb, False, 0))
        if kind == "valid" and cls != "accepted":
            problems.append(f"a valid trace on stdin was not accepted: {why}")
        if kind in ("yes", "zeros", "valid+garbage", "cut") and cls == "accepted":
            problems.append(f"{kind} on stdin was accepted")
    if problems:
        return "broken", "; ".join(problems), desc, [verb]
    return cls, why, desc, [verb]


def _sweep_base(seeds, d):
    shutil.copytree(seeds.dataset, d / "ds", symlinks=True)
    return d / "ds"


def case_sweep(rng, seeds, d, timeout):
    """Sweeps and datasets: a trace lying at a cell's output path, hand-broken manifest
    entries, damaged cell/event files for summarize (warned per file, exit 1 unless
    --skip-bad), a sweep with Arrow's default allocator under the 1.5 GiB limit, a sweep
    into a full disk."""
    kind = rng.choice(
        ["input-at-output", "manifest", "summarize", "summarize", "default-pool", "diskfull"]
    )
    t0, t1 = seeds.sweep_traces
    trace_args = ["-t", t0, "-t", t1, "-c", "none", "-c", "lru-v6.8"]
    if kind == "input-at-output":
        ds = _sweep_base(seeds, d)
        which = rng.choice(["events", "cells"])
        name = "part-0.parquet" if which == "events" else "cell.parquet"
        pol = rng.choice(["none", "lru-v6.8"])
        # a trace named like the cell's file, lying where its own cell writes
        preset = next((ds / which).glob(f"policy={pol}/kernel=default/preset=*")).name
        dst = ds / which / f"policy={pol}/kernel=default/{preset}/trace={Path(name).stem}"
        dst.mkdir(parents=True, exist_ok=True)
        dst = dst / name
        shutil.copy(rng.choice(seeds.sweep_traces), dst)
        before = dst.read_bytes()
        args = ["sweep", "-t", dst, "-c", pol, "-o", ds, "-q"]
        r = cli(args, d, timeout)
        cls, why = classify(r)
        desc = f"sweep with a trace at its own cell's {which}/.../{name}"
        if dst.read_bytes() != before:
            return "broken", "the input was overwritten", desc, [args]
        if cls != "refused":
            return "broken", f"not refused: {cls} {why}", desc, [args]
        return cls, why, desc, [args]
    if kind == "manifest":
        ds = _sweep_base(seeds, d)
        m = rng.choice(sorted((ds / "_manifest").glob("*.json")))
        how = rng.choice(["nested", "sparse", "fifo", "garbage", "array", "empty", "huge-string"])
        m.unlink()
        if how == "nested":
            m.write_text(rng.choice("[{") * rng.choice([1000, 200_000]))
        elif how == "sparse":
            with open(m, "wb") as f:
                f.truncate(rng.choice([2 << 20, 3 << 30]))
        elif how == "fifo":
            os.mkfifo(m)
        elif how == "garbage":
            m.write_bytes(rng.randbytes(rng.randrange(1, 5000)))
        elif how == "array":
            m.write_text("[1, 2, 3]")
        elif how == "huge-string":
            m.write_text('"' + "x" * (2 << 20) + '"')
        else:
            m.write_bytes(b"")
        args = ["sweep", *trace_args, "-o", ds, "-q"]
        r = cli(args, d, timeout)
        cls, why = classify(r)
        err = r.err.decode("utf-8", "replace")
        desc = f"sweep over a manifest entry that is {how}"
        if "Traceback" in err:
            return "crash", _last_line(err), desc, [args]
        if r.rc not in (0, 1):  # 1: a trace's expectation failed
            return "broken", f"exit {r.rc}: {_last_line(err)}", desc, [args]
        if f"warning: {m}" not in err:
            return "broken", f"no warning naming {m.name}: {err[:200]!r}", desc, [args]
        return "accepted", "", desc, [args]
    if kind == "summarize":
        ds = _sweep_base(seeds, d)
        which = rng.choice(["cell", "part"])
        files = sorted(ds.rglob("cell.parquet" if which == "cell" else "part-0.parquet"))
        f = rng.choice(files)
        how = rng.choice(["other-file", "wrong-schema", "directory", "garbage", "cut", "empty"])
        if how == "other-file":
            other = sorted(ds.rglob("part-0.parquet" if which == "cell" else "cell.parquet"))[0]
            shutil.copy(other, f)
        elif how == "wrong-schema":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.table({"x": [1]}), f)
        elif how == "directory":
            f.unlink()
            f.mkdir()
        elif how == "garbage":
            f.write_bytes(rng.randbytes(rng.randrange(1, 4096)))
        elif how == "cut":
            data = f.read_bytes()
            f.write_bytes(data[: rng.randrange(1, len(data))])
        else:
            f.write_bytes(b"")
        desc = f"summarize with a {which} file that is {how}"
        args = ["summarize", ds]
        r = cli(args, d, timeout)
        err = r.err.decode("utf-8", "replace")
        if "Traceback" in err:
            return "crash", _last_line(err), desc, [args]
        if r.rc != 1 or f"warning: {f}:" not in err:
            return "broken", f"exit {r.rc}, stderr {err[:200]!r}", desc, [args]
        args2 = ["summarize", ds, "--skip-bad", "--json"]
        r2 = cli(args2, d, timeout)
        if r2.rc != 0:
            return "broken", f"--skip-bad: exit {r2.rc}", desc, [args, args2]
        return "accepted", "", desc, [args, args2]
    if kind == "default-pool":
        env = dict(ENV)
        env.pop("ARROW_DEFAULT_MEMORY_POOL", None)
        cmd = [sys.executable, "-m", "gictools", "sweep", *trace_args, "-o", d / "ds", "-q"]
        r0 = subprocess.run(
            [str(x) for x in cmd], cwd=d, capture_output=True, timeout=timeout,
            preexec_fn=_limit, env=env,
        )  # fmt: skip
        r = Run(cmd, r0.returncode, r0.stdout, r0.stderr, False, 0)
        desc = "sweep with Arrow's default allocator under RLIMIT_AS 1.5 GiB"
        if r.rc not in (0, 1):
            cls, why = classify(r)
            if cls in ("accepted", "refused", "crash"):
                return "memory", f"exit {r.rc}: {_last_line(r.err.decode())}", desc, [cmd]
            return cls, why, desc, [cmd]
        return "accepted", "", desc, [cmd]
    # diskfull
    with tmpfs(d / "full", rng.choice(["256k", "1m", "2m"])) as fs:
        if fs is None:
            return "skipped", "mount not permitted", "sweep diskfull", []
        args = ["sweep", "-t", seeds.big, *trace_args, "-o", fs / "ds", "-q"]
        r = cli(args, d, timeout)
        err = r.err.decode("utf-8", "replace")
        desc = "sweep into a full tmpfs"
        if "Traceback" in err:
            return "crash", _last_line(err), desc, [args]
        problems = []
        if ".gictools-" in err or ".tmp" in err:
            problems.append(f"an error names a temporary file: {_last_line(err)}")
        if temps_below(fs):
            problems.append(f"temporary files left: {temps_below(fs)[:3]}")
        if r.rc not in (0, 2):
            problems.append(f"exit {r.rc}")
        if problems:
            return "broken", "; ".join(problems), desc, [args]
        return ("refused" if r.rc == 2 else "accepted"), _last_line(err), desc, [args]


CASES = {
    "trace": case_trace,
    "image": case_image,
    "qemu": case_qemu,
    "signal": case_signal,
    "diskfull": case_diskfull,
    "concurrent": case_concurrent,
    "outputs": case_outputs,
    "workers": case_workers,
    "parentsig": case_parentsig,
    "stdin": case_stdin,
    "sweep": case_sweep,
}


def schedule(allowed) -> list[str]:
    """Categories for case i = schedule[i % len]: smooth weighted round robin, so that every
    category shows up early even in a short run, in its weight's proportion over 100 cases."""
    names = [n for n in CATEGORIES if n in allowed]
    total = sum(CATEGORIES[n] for n in names)
    cur = dict.fromkeys(names, 0)
    out = []
    for _ in range(total):
        for n in names:
            cur[n] += CATEGORIES[n]
        best = max(names, key=lambda n: cur[n])
        cur[best] -= total
        out.append(best)
    return out


def run_case(seed, idx, seeds, work: Path, timeout, allowed, keep=False) -> Result:
    rng = random.Random(f"{seed}:{idx}")
    sched = schedule(allowed)
    cat = sched[idx % len(sched)]
    d = work / f"case-{idx}"
    d.mkdir(parents=True, exist_ok=True)
    try:
        cls, why, desc, cmds = CASES[cat](rng, seeds, d, timeout)
    except Exception as e:  # a bug of the campaign itself: report, do not hide
        cls, why, desc, cmds = "crash", f"campaign error: {type(e).__name__}: {e}", "", []
    finally:
        if not keep:
            shutil.rmtree(d, ignore_errors=True)
    return Result(cat, idx, cls, why, desc, cmds)


# --- main ------------------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=20261201)
    ap.add_argument(
        "--cases", type=int, default=None, help="number of cases (default 600; --quick 30)"
    )
    ap.add_argument("--quick", action="store_true", help="a ~1 minute run")
    ap.add_argument("--case", type=int, action="append", help="run only this case index (repeat)")
    ap.add_argument(
        "--only", action="append", choices=list(CATEGORIES), help="only these categories"
    )
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument(
        "--timeout", type=float, default=None, help="CPU seconds per CLI run (60; --quick 30)"
    )
    ap.add_argument("--keep", type=Path, help="work directory to keep (default: a temporary one)")
    a = ap.parse_args(argv)
    n = a.cases if a.cases is not None else (30 if a.quick else 600)
    CPU_LIMIT[0] = int(a.timeout or (30 if a.quick else 60))
    timeout = CPU_LIMIT[0] * WALL_FACTOR
    allowed = set(a.only or CATEGORIES)
    if "diskfull" in allowed and not (os.geteuid() == 0 and can_mount()):
        print("diskfull: mount -t tmpfs not permitted here; category skipped", file=sys.stderr)
        allowed.discard("diskfull")
    work = a.keep or Path(tempfile.mkdtemp(prefix="gictools-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    print(
        f"seed {a.seed}, {len(a.case) if a.case else n} cases, {a.jobs} jobs, CPU limit {CPU_LIMIT[0]} s, "
        f"RLIMIT_AS {AS_LIMIT >> 20} MiB; building seeds in {work}/seeds ...",
        file=sys.stderr,
        flush=True,
    )
    seeds = Seeds(work / "seeds", a.jobs)
    print(f"seeds ready in {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    indexes = a.case or list(range(n))
    results = []
    done = 0

    def one(i):
        return run_case(
            a.seed, i, seeds, work, timeout, allowed, keep=bool(a.case) and a.keep is not None
        )

    log = open(work / "results.jsonl", "w") if a.keep else None
    with ThreadPoolExecutor(a.jobs) as ex:
        for res in ex.map(one, indexes):
            results.append(res)
            done += 1
            if log:
                log.write(json.dumps(res.as_dict()) + "\n")
                log.flush()
            if done % 50 == 0 or done == len(indexes):
                print(
                    f"  {done}/{len(indexes)} cases, {time.monotonic() - t0:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
    elapsed = time.monotonic() - t0
    table = collections.defaultdict(collections.Counter)
    for r in results:
        table[r.cat][r.cls] += 1
    cols = ["tried", *CLASSES]
    print(f"\ngictools fuzz campaign: seed {a.seed}, {len(results)} cases, {elapsed:.0f} s\n")
    print(f"| {'category':<10} | " + " | ".join(f"{c:>8}" for c in cols) + " |")
    print("|" + "-" * 12 + "|" + "|".join("-" * 10 for _ in cols) + "|")
    total = collections.Counter()
    for cat in CATEGORIES:
        c = table.get(cat)
        if not c:
            continue
        tried = sum(v for k, v in c.items() if k != "skipped")
        total.update(c)
        total["tried"] += tried
        print(f"| {cat:<10} | {tried:>8} | " + " | ".join(f"{c[k]:>8}" for k in CLASSES) + " |")
    print(
        f"| {'total':<10} | {total['tried']:>8} | "
        + " | ".join(f"{total[k]:>8}" for k in CLASSES)
        + " |"
    )
    if total["skipped"]:
        print(f"({total['skipped']} skipped: not permitted here)")
    bad = [r for r in results if r.cls in ("crash", "hang", "memory", "broken")]
    if bad:
        print(
            f"\n{len(bad)} non-clean cases (reproduce: python bench/fuzz_campaign.py --seed {a.seed} "
            f"--case N --keep DIR):"
        )
        by_reason = collections.defaultdict(list)
        for r in bad:
            by_reason[(r.cat, r.cls, _reason_key(r.reason))].append(r)
        for (cat, cls, _), rs in sorted(
            by_reason.items(), key=lambda kv: (kv[0][0], kv[0][1], -len(kv[1]))
        ):
            r = rs[0]
            more = (
                f" (+{len(rs) - 1} alike: cases {', '.join(str(x.idx) for x in rs[1:8])}{' ...' if len(rs) > 8 else ''})"
                if len(rs) > 1
                else ""
            )
            print(f"- case {r.idx} [{cat}/{cls}] {r.desc}: {r.reason}{more}")
            for c in r.cmds[:1]:
                print(f"    gictools {' '.join(str(x) for x in c)}")
    if a.case:
        for r in results:
            print(f"case {r.idx} [{r.cat}] {r.cls}: {r.desc}: {r.reason}")
            for c in r.cmds:
                print(f"    gictools {' '.join(str(x) for x in c)}")
    if log:
        log.close()
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if bad else 0


def _reason_key(reason: str) -> str:
    """Group alike findings: the reason without numbers and paths."""
    import re

    s = re.sub(r"/\S+", "PATH", reason)
    s = re.sub(r"0x[0-9a-fA-F]+|\d+", "N", s)
    return s[:120]


if __name__ == "__main__":
    sys.exit(main())
