"""gictools mrc with bounded memory: the stream is held as 4-byte key ids, the Fenwick tree
is renumbered down to the distinct keys, and a trace beyond --max-msis is refused (exit 2)
naming the limit. The curves do not depend on batch or tree sizes."""

import json
import tracemalloc
from array import array

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.main import get_command
from typer.testing import CliRunner

from gictools import mrc
from gictools.cli import app
from gictools.errors import ConfigError
from gictools.trace.gen_lpi_stress import generate


def _brute_distances(stream):
    """1 + distinct keys since the last use (0: first use), by definition."""
    out = []
    for t, k in enumerate(stream):
        prev = max((s for s in range(t) if stream[s] == k), default=None)
        out.append(0 if prev is None else 1 + len(set(stream[prev + 1 : t]) - {k}))
    return out


@given(st.lists(st.integers(0, 9), min_size=1, max_size=80), st.integers(1, 24))
def test_renumbered_tree_gives_the_exact_distances(stream, min_tree):
    """A tree of only max(2 x distinct, min_tree) positions, renumbered whenever time runs
    past it, gives every access's stack distance."""
    want = _brute_distances(stream)
    assert mrc.stack_distances(stream, min_tree=min_tree).tolist() == want
    assert mrc.stack_distances(stream).tolist() == want


def test_curves_do_not_depend_on_batches_or_tree_size(monkeypatch):
    """Interleaved ITSes, IDs up to 2^32-1, key ids given across many small batches and a
    tree renumbered often: the same report as in one batch and one tree."""
    rng = np.random.default_rng(7)
    n = 3000
    its = rng.integers(0, 3, n)
    dev = rng.choice([0, 5, 0xFFFF_FFFF], n)
    ev = rng.integers(0, 40, n)
    ev[::97] = 0xFFFF_FFFF
    caps = [1, 10, 50]
    whole = mrc.analyse(its, dev, ev, 2, caps)
    monkeypatch.setattr(mrc, "_BATCH", 7)
    monkeypatch.setattr(mrc, "_CHUNK", 5)
    monkeypatch.setattr(mrc, "MIN_TREE", 3)
    assert mrc.analyse(its, dev, ev, 2, caps) == whole
    keys = list(zip(its.tolist(), dev.tolist(), ev.tolist()))
    d = mrc.stack_distances(keys)
    assert whole["lru"] == mrc.lru_curve(d)
    assert whole["distinct"] == len(set(keys)) == int((d == 0).sum())
    for i, pts in whole["per_its_footprint"].items():
        seen = set()
        firsts = []
        for t, k in enumerate(keys):
            if k[0] == i and k not in seen:
                seen.add(k)
                firsts.append(t)
        assert pts[-1] == [n, len(firsts)]


def _peak(fn, *args):
    tracemalloc.start()
    try:
        out = fn(*args)
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_reading_holds_at_most_6_bytes_per_msi(tmp_path):
    """4x the MSIs (same 64 keys) cost at most 6 more bytes each at the peak: the ids are
    4 bytes (the reader's own buffers stop growing below 256,000 MSIs)."""
    peaks = []
    for iterations in (4000, 16000):
        t = tmp_path / f"s{iterations}.msgpack"
        generate(t, 1, 4, 16, iterations)
        acc, peak = _peak(mrc.trace_accesses, t)
        assert acc.distinct == 64
        peaks.append((acc.n, peak))
    (n1, p1), (n2, p2) = peaks
    assert n2 == 4 * n1 == 1_024_000
    assert (p2 - p1) / (n2 - n1) <= 6, peaks


def test_the_lru_pass_grows_with_distinct_keys_only(monkeypatch):
    """The Fenwick tree is renumbered down to twice the distinct keys: 4x the accesses,
    (almost) no more memory."""
    monkeypatch.setattr(mrc, "MIN_TREE", 256)
    peaks = []
    for n in (4000, 16000):
        ids = array("I", (np.arange(n) % 64).astype(np.uint32).tobytes())
        (hist, _), peak = _peak(mrc._walk, ids, 64)
        assert hist[0] == 64 and hist[64] == n - 64  # a cycle of 64 keys
        peaks.append(peak)
    assert (peaks[1] - peaks[0]) / 12000 <= 1, peaks


def test_max_msis_refuses_a_longer_trace(tmp_path):
    t = tmp_path / "s.msgpack"
    generate(t, 1, 1, 17, 30)  # 510 MSIs
    r = CliRunner().invoke(app, ["mrc", str(t), "--max-msis", "509", "-q"])
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.output
    assert "more than 509 MSIs" in lines[0] and "--max-msis" in lines[0]
    r = CliRunner().invoke(app, ["mrc", str(t), "--max-msis", "510", "--json", "-q"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["schema"] == "gictools.mrc/1" and doc["accesses"] == 510
    r = CliRunner().invoke(app, ["mrc", str(t), "--max-msis", "0"])
    assert r.exit_code == 2


def test_the_limit_holds_while_reading_too():
    """A trace without counts in its header (or with lying ones) is stopped at the limit."""
    b = mrc.StreamBuilder(max_msis=5, source="x.msgpack")
    b.add_block(0, np.arange(5, dtype=np.uint32), np.zeros(5, dtype=np.uint32))
    with pytest.raises(ConfigError, match=r"x.msgpack: more than 5 MSIs.*--max-msis"):
        b.add(0, 9, 9)


def test_help_documents_the_limit():
    r = CliRunner().invoke(app, ["mrc", "--help"], terminal_width=200)
    assert "--max-msis" in r.output and "never a sample" in r.output
    opt = next(p for p in get_command(app).commands["mrc"].params if p.name == "max_msis")
    assert opt.default == mrc.DEFAULT_MAX_MSIS and opt.max == mrc.MAX_MSIS
