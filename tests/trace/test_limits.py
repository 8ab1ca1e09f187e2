"""Hostile traces: the per-object bound holds on decompressed streams (gzip, zstd), and deep
nesting is refused at read time naming the right record (issue 10, items 3 and 5)."""

import gzip
import io
import json
import subprocess
import sys

import msgpack
import pytest
from typer.testing import CliRunner

from gictools.cli import app
from gictools.errors import TraceFormatError
from gictools.trace import format as F
from gictools.trace.reader import TraceReader

HDR = {"format": F.FORMAT_NAME, "version": [1, 0], "vm": {"vcpus": 1, "itses": [{"base": 0}]}}
GOOD = msgpack.packb([F.COMMAND, 0, None, 0, bytes(32)])
MIB = 1 << 20
runner = CliRunner()


def _bin32_zeros(n: int) -> bytes:
    return b"\xc6" + n.to_bytes(4, "big") + bytes(n)


def bomb_gz(n_bins: int, bin_size: int = 16 * MIB) -> bytes:
    """A header, one good record, then one MEM-shaped record whose array holds n_bins bins of
    zeros: each bin is a gzip member of its own (members concatenate), so the file stays a few
    MB while the object is n_bins * bin_size bytes."""
    head = gzip.compress(msgpack.packb(HDR) + GOOD + b"\xdc" + n_bins.to_bytes(2, "big"))
    member = gzip.compress(_bin32_zeros(bin_size), 9)
    return head + member * n_bins


def read_all(data: bytes):
    return list(TraceReader(io.BytesIO(data)))


def _fails(data, needle, record):
    with pytest.raises(TraceFormatError) as ei:
        read_all(data)
    assert needle in str(ei.value), str(ei.value)
    assert ei.value.record == record, str(ei.value)
    return ei.value


def test_gzip_bomb_bounded_in_memory(tmp_path):
    """2.6 MB of gzip holding a 2.5 GiB object: refused after 64 MiB, peak memory bounded
    (measured in a child process: the whole object would need > 2.5 GiB)."""
    p = tmp_path / "bomb.msgpack.gz"
    p.write_bytes(bomb_gz(160))
    assert p.stat().st_size < 4 * MIB
    code = (
        "import sys\n"
        "from gictools.trace.reader import TraceReader\n"
        "from gictools.errors import TraceFormatError\n"
        "try:\n"
        "    list(TraceReader(sys.argv[1]))\n"
        "except TraceFormatError as e:\n"
        "    print(e.record, e)\n"
        # VmHWM, not ru_maxrss: ru_maxrss survives exec, so it would count the forking pytest
        "print([int(x.split()[1]) // 1024 for x in open('/proc/self/status')\n"
        "       if x.startswith('VmHWM:')][0])\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(p)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    first, peak = r.stdout.splitlines()
    assert first.startswith("2 ") and "larger than 64 MiB" in first
    assert int(peak) < 400, f"peak RSS {peak} MiB"


def test_large_header_and_record_on_gzip_refused():
    """An 80 MiB header and a 96 MiB record (each legal piece by piece) are too large."""
    bins = {f"k{i}": bytes(16 * MIB) for i in range(5)}
    big_header = gzip.compress(msgpack.packb({**HDR, "metadata": bins}), 1)
    _fails(big_header, "larger than 64 MiB", record=0)
    args = {f"k{i}": bytes(16 * MIB) for i in range(6)}
    big_record = gzip.compress(
        msgpack.packb(HDR) + GOOD + msgpack.packb([F.EXPECT, 0, None, "x", args]) + GOOD, 1
    )
    _fails(big_record, "larger than 64 MiB", record=2)
    # at the limit's scale but under it: accepted
    ok = {f"k{i}": bytes(15 * MIB) for i in range(4)}
    recs = read_all(gzip.compress(msgpack.packb(HDR) + msgpack.packb([6, 0, None, "x", ok]), 1))
    assert len(recs) == 1


def test_zstd_bomb_refused():
    import pyarrow as pa

    def zst(data):
        out = io.BytesIO()

        class W:
            closed = False
            write, flush = out.write, out.flush

            def close(self):
                pass

        s = pa.CompressedOutputStream(pa.PythonFile(W(), mode="w"), "zstd")
        s.write(data)
        s.close()
        return out.getvalue()

    n = 8  # 8 x 16 MiB = 128 MiB object; zstd frames concatenate like gzip members
    data = zst(msgpack.packb(HDR) + GOOD + b"\xdc" + n.to_bytes(2, "big"))
    data += zst(_bin32_zeros(16 * MIB)) * n
    assert len(data) < MIB
    _fails(data, "larger than 64 MiB", record=2)


def _nested_map(depth):
    v = 0
    for _ in range(depth):
        v = {"x": v}
    return v


def _packb_deep(obj):
    lim = sys.getrecursionlimit()
    sys.setrecursionlimit(10_000)
    try:
        return msgpack.packb(obj)
    finally:
        sys.setrecursionlimit(lim)


def test_deep_metadata_refused_at_read_time(tmp_path):
    data = _packb_deep({**HDR, "metadata": _nested_map(1000)}) + GOOD
    e = _fails(data, "nested deeper than 32 levels", record=0)
    assert e.field == "metadata"
    p = tmp_path / "deep.msgpack"
    p.write_bytes(data)
    for verb in (["info", str(p)], ["replay", str(p)], ["save", str(p), "-o", str(tmp_path / "i")]):
        r = runner.invoke(app, verb)
        assert r.exit_code == 2, (verb, r.output)
        assert "nested deeper" in r.output and "Recursion" not in r.output


def test_deep_values_name_their_record():
    deep_tag = b"\x93" + b"\x91" * 1000 + b"\x05\x00\x00"  # [[[...5...]], 0, 0]
    e = _fails(msgpack.packb(HDR) + GOOD + GOOD + deep_tag + GOOD, "unknown record tag", record=3)
    assert e.field == "tag" and len(str(e)) < 300
    args = _packb_deep([F.EXPECT, 0, None, "future-kind", _nested_map(1000)])
    e = _fails(msgpack.packb(HDR) + GOOD + args + GOOD, "nested deeper", record=2)
    assert e.field == "args"
    # as deep as allowed passes, and prints and encodes as JSON
    ok = msgpack.packb([F.EXPECT, 0, None, "future-kind", _nested_map(F.MAX_DEPTH - 1)])
    (rec,) = read_all(msgpack.packb(HDR) + ok)
    json.dumps(rec[4])
    repr(rec)
