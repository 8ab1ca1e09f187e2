"""`import qemu`'s inputs are bounded by what they can legitimately hold (issue 23 point 6)
and a log that is not text is named as such (issue 25 point 5): one line on stderr, exit 2,
no output, never a MemoryError or a hang."""

import gzip
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from gictools.errors import ImportFormatError
from gictools.trace.qemu import convert, read_cmdline, read_cmdq, read_lpiprop
from gictools.trace.qemu.inputs import (
    MAX_CMDLINE_BYTES,
    MAX_CMDQ_BYTES,
    MAX_LINE,
    MAX_LPIPROP_BYTES,
)

ROOT = Path(__file__).resolve().parents[2]
KUT = ROOT / "fixtures" / "kut"
LOG = KUT / "its-introspection.trace.log.gz"
READERS = {"cmdq": read_cmdq, "lpiprop": read_lpiprop, "cmdline": read_cmdline}
LIMITS = {"cmdq": MAX_CMDQ_BYTES, "lpiprop": MAX_LPIPROP_BYTES, "cmdline": MAX_CMDLINE_BYTES}


def run_cli(*args):
    """`python -m gictools import qemu ...` from this worktree, under a 1 GiB address-space
    limit: reading /dev/zero whole needed 1.45 GB."""
    code = (
        "import resource, runpy, sys; "
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); "
        "sys.argv = ['gictools', *sys.argv[1:]]; "
        "runpy.run_module('gictools', run_name='__main__')"
    )
    return subprocess.run(
        [sys.executable, "-c", code, "import", "qemu", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_line_error(p, out, *words):
    assert p.returncode == 2, (p.returncode, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert "Traceback" not in p.stderr and "MemoryError" not in p.stderr
    for w in words:
        assert w in lines[0], lines[0]
    assert not out.exists()


# --- auxiliary inputs: devices that never end -----------------------------------------------


@pytest.mark.parametrize("option", ["cmdq", "lpiprop", "cmdline"])
def test_dev_zero_is_refused_one_line(tmp_path, option):
    out = tmp_path / "x.msgpack"
    p = run_cli(LOG, f"--{option}", "/dev/zero", "-o", out)
    assert_one_line_error(p, out, "/dev/zero", "a character device", "regular file or a pipe")


@pytest.mark.parametrize("option", ["cmdq", "lpiprop", "cmdline"])
def test_destination_dev_zero_is_refused(tmp_path, option):
    """The migration destination's dumps go through the same readers."""
    src = KUT / "its-pending-migration-src.trace.log.gz"
    dst = KUT / "its-pending-migration-dst.trace.log.gz"
    out = tmp_path / "x.msgpack"
    p = run_cli(src, "--migrate-to", dst, f"--dst-{option}", "/dev/zero", "-o", out)
    assert_one_line_error(p, out, "/dev/zero", "a character device")


# --- auxiliary inputs: bounded by what they can hold ----------------------------------------


@pytest.mark.parametrize("option", ["cmdq", "lpiprop", "cmdline"])
def test_file_one_byte_over_its_limit_is_refused(tmp_path, option):
    big = tmp_path / f"big.{option}.txt"
    with open(big, "wb") as f:
        f.truncate(LIMITS[option] + 1)  # sparse: no disk used
    with pytest.raises(ImportFormatError, match=f"more than {LIMITS[option]:,} bytes"):
        READERS[option](big)


@pytest.mark.parametrize("option", ["cmdq", "lpiprop", "cmdline"])
def test_endless_pipe_is_bounded(option):
    """A pipe is accepted (`--cmdq <(zcat x.gz)`), but read no further than the limit."""
    r, w = os.pipe()

    def write_forever():
        chunk = b"# comment line\n" * 4096
        try:
            while True:
                os.write(w, chunk)
        except OSError:  # the reader closed its end
            pass
        finally:
            os.close(w)

    t = threading.Thread(target=write_forever, daemon=True)
    t.start()
    try:
        with pytest.raises(ImportFormatError, match="larger than any"):
            READERS[option](f"/dev/fd/{r}")
    finally:
        os.close(r)
        t.join(10)
    assert not t.is_alive()


def test_largest_legitimate_dumps_fit(tmp_path):
    """The limits are not tighter than the formats: a full 1 MiB queue (32768 slots) and a
    table of every INTID KVM reads, written as capture.sh writes them, parse whole."""
    q = tmp_path / "full.cmdq.txt"
    head = (
        "# ITS command queue at 0x42590000 (1048576 bytes, GITS_CBASER=0xb8000000425904ff), "
        "one 32-byte command per line:\n# slot  dw0(bits 63:0)  dw1(127:64)  dw2(191:128)  "
        "dw3(255:192) -- little-endian 64-bit words; all-zero slots omitted\n"
    )
    body = "".join(
        f"{s:#06x} {0xFFFF_FFFF_0000_000A:016x} {s:016x} {s:016x} {0:016x}\n"
        for s in range(1 << 15)
    )
    q.write_text(head + body)
    slots = read_cmdq(q)
    assert len(slots) == 1 << 15
    assert slots[0x7FFF][8:16] == (0x7FFF).to_bytes(8, "little")
    p = tmp_path / "full.lpiprop.txt"
    body = "".join(f"{i:#06x} 0xa3\n" for i in range(8192, 1 << 16))
    p.write_text("# LPI configuration table at 0x40270000 (57344 bytes)\n" + body)
    default, entries = read_lpiprop(p)
    assert len(entries) == (1 << 16) - 8192 and entries[0xFFFF] == 0xA3


# --- the log: text only ---------------------------------------------------------------------


def test_binary_log_is_not_a_text_log(tmp_path):
    """A gictools trace given by mistake: the CLI knows the file for what it is."""
    out = tmp_path / "x.msgpack"
    trace = ROOT / "traces" / "lpi-stress-v1-d1-e17.msgpack"
    p = run_cli(trace, "-o", out)
    assert_one_line_error(p, out, "a gictools trace already", "not a QEMU text log", trace.name)


@pytest.mark.parametrize("log", ["/dev/zero", "/dev/urandom"])
def test_device_log_is_not_a_text_log(tmp_path, log):
    out = tmp_path / "x.msgpack"
    p = run_cli(log, "-o", out)
    assert_one_line_error(p, out, "not a text log")


def test_gzipped_binary_is_not_a_text_log(tmp_path):
    log = tmp_path / "elf.trace.log.gz"
    log.write_bytes(gzip.compress(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 8))
    with pytest.raises(ImportFormatError, match="not a text log"):
        convert(log)


def test_binary_after_the_start_is_not_refused_as_binary(tmp_path):
    """Only the start decides "not a text log": a real capture with a stray byte later is
    judged line by line (here: a line that is no event, skipped and counted)."""
    capture = ROOT / "fixtures" / "qemu" / "smp2-traffic-affinity.trace.log.gz"
    log = tmp_path / "stray.trace.log"
    log.write_bytes(gzip.decompress(capture.read_bytes()) + b"\x00\xff stray\n")
    before = convert(capture)[1]["skipped_lines"].get("(not an event)", 0)
    vm, meta, recs = convert(log)
    assert meta["skipped_lines"]["(not an event)"] == before + 1


def test_endless_line_is_bounded(tmp_path):
    log = tmp_path / "long.trace.log"
    log.write_bytes(b"x" * (MAX_LINE * 3))
    with pytest.raises(ImportFormatError, match="line 1: a line of more than"):
        convert(log)
