"""The C block loops (_blocks.c via native.py) equal the Python reference loops: outcome
and victim streams and the cache left behind, on random streams (capacity overflow,
invalidations between blocks, three ITSes). The loops check every buffer and every id
they index with.

The tests run from a clone, where an installed wheel's extension is not on the path: when
gictools.model.cache._blocks is not importable, the C file is compiled into a temporary
directory for these tests (skipped only where no C compiler works)."""

import importlib.machinery
import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from model_checks import one_device
from strategies import examples, key_streams

from gictools.model.block import OUTCOME_TO_COLUMN, inject_block
from gictools.model.cache import COLUMN_VALUES, POLICIES, Block, native
from gictools.model.cache.keys import split_translation_keys, translation_keys
from gictools.model.cache.outcome import Outcome

SOURCE = Path(native.__file__).with_name("_blocks.c")
_BUILT: list = []


def _compiled(tmp_dir: Path):
    """The extension: installed/in place, else compiled from SOURCE into tmp_dir."""
    if native._c is not None:
        return native._c
    script = textwrap.dedent(f"""
        from setuptools import Distribution, Extension
        from setuptools.command.build_ext import build_ext
        d = Distribution({{"ext_modules": [Extension("_blocks", [{str(SOURCE)!r}])]}})
        cmd = build_ext(d)
        cmd.build_lib, cmd.build_temp = {str(tmp_dir)!r}, {str(tmp_dir / "t")!r}
        cmd.ensure_finalized()
        cmd.run()
        print(cmd.get_ext_fullpath("_blocks"))
        """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"no working C compiler: {r.stderr.strip().splitlines()[-1:]}")
    path = r.stdout.strip().splitlines()[-1]
    loader = importlib.machinery.ExtensionFileLoader("_blocks", path)
    spec = importlib.util.spec_from_file_location("_blocks", path, loader=loader)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    mod.set_codes(Outcome.HIT, Outcome.MISS, Outcome.EVICT, Outcome.MISS_NOFILL, Outcome.RECYCLE)
    return mod


@pytest.fixture
def c_loops(tmp_path_factory, monkeypatch):
    if not _BUILT:
        _BUILT.append(_compiled(tmp_path_factory.mktemp("cblocks")))
    monkeypatch.setattr(native, "_c", _BUILT[0])
    return _BUILT[0]


def _policy_state(pol):
    if pol.name == "lru-v6.8":
        return [(k, lpi.intid) for k, lpi in pol.map.items()]
    return pol.linked(), pol.entries()


def _drive(name, nr_vcpus, pool, nofill, ops, native_loop):
    pol = POLICIES[name](nr_vcpus)
    itses = [SimpleNamespace(index=i, doorbell=0x0801_0040 + 0x20000 * i) for i in range(3)]
    for its in itses:
        pol.doorbells[its.doorbell] = its.index
    trace = []
    nofill_keys = {pool[j][1:] for j in nofill}
    lpi_of = {}
    for op in ops:
        if op[0] == "invalidate":
            pol.invalidate()
            continue
        _, i, idx = op
        if not idx:
            continue
        dev = np.array([pool[j][1] for j in idx], dtype=np.uint32)
        ev = np.array([pool[j][2] for j in idx], dtype=np.uint32)
        uniq, first, inverse = np.unique(
            translation_keys(dev, ev), return_index=True, return_inverse=True
        )
        # one slow-path answer per key for the whole stream (run_block's precondition:
        # the cache agrees with the slow path, CachePolicy.consistent)
        lpis = [
            None
            if (d, e) in nofill_keys
            else lpi_of.setdefault(
                (i, d, e), SimpleNamespace(intid=8192 + i * 100_000 + d * 64 + e)
            )
            for d, e in zip(*(a.tolist() for a in split_translation_keys(uniq)))
        ]
        block = Block(uniq, lpis, inverse, first)
        r = pol.run_block(itses[i], block, native_loop=native_loop)
        trace.append(
            (
                r.outcome.tolist(),
                r.victim_index.tolist(),
                r.victim_keys.tolist(),
                _policy_state(pol),
            )
        )
    return trace


@settings(max_examples=examples(1.5), suppress_health_check=list(HealthCheck))
@given(
    name=st.sampled_from(["lru-v6.8", "usage-v2"]),
    nr_vcpus=st.integers(1, 2),
    stream=key_streams(),
)
def test_c_block_equals_python_block(c_loops, name, nr_vcpus, stream):
    pool, nofill, ops = stream
    assert _drive(name, nr_vcpus, pool, nofill, ops, True) == _drive(
        name, nr_vcpus, pool, nofill, ops, False
    )


def test_c_loops_known_answer(c_loops):
    """lru, capacity 2: ids 0 1 0 2 (evicts 1) 3 (nofill) 1 (evicts 0)."""
    inv = np.array([0, 1, 0, 2, 3, 1], np.int64)
    fill = np.array([1, 1, 1, 0], np.bool_)
    out, vic = np.empty(6, np.int8), np.full(6, -1, np.int64)
    final = native.lru_block(inv, fill, np.zeros(0, np.int64), 2, out, vic)
    assert out.tolist() == [Outcome.MISS, Outcome.MISS, Outcome.HIT, Outcome.EVICT,
                            Outcome.MISS_NOFILL, Outcome.EVICT]  # fmt: skip
    assert vic.tolist() == [-1, -1, -1, 1, -1, 0] and final.tolist() == [2, 1]
    # usage, capacity 2, an empty entry (stale usage 5) at the tail and id 0 (usage 1) at the
    # head: 1 recycles the empty one and starts at 5 (the stale counter counts), 0 hits (2),
    # 2 evicts the least used: 0, and starts at 5
    out, vic = np.empty(3, np.int8), np.full(3, -1, np.int64)
    ids, uses = native.usage_block(
        np.array([1, 0, 2], np.int64), np.ones(3, np.bool_), [-1, 0], [5, 1], 2, out, vic
    )
    assert out.tolist() == [Outcome.RECYCLE, Outcome.HIT, Outcome.EVICT]
    assert vic.tolist() == [-1, -1, 0]
    assert ids.tolist() == [1, 2] and uses.tolist() == [5, 5]


def test_c_loops_refuse_bad_ids_and_buffers(c_loops):
    """Every id the loops index with, and every buffer they write through, is checked in C
    before anything is written."""
    out, vic = np.empty(3, np.int8), np.full(3, -1, np.int64)
    fill = np.ones(4, np.bool_)
    none = np.zeros(0, np.int64)
    lru, usage = c_loops.lru_block, c_loops.usage_block
    inv = np.array([0, 1, 2], np.int64)
    for call, match in (
        (lambda: lru(np.array([0, 4, 1]), fill, none, 2, out, vic), "inverse: id 4 out of range"),
        (lambda: lru(np.array([0, -1, 1]), fill, none, 2, out, vic), "inverse: id -1"),
        (lambda: lru(inv, fill, np.array([-1]), 2, out, vic), "order: id -1 out of range"),
        (lambda: lru(inv, fill, np.array([2, 2]), 2, out, vic), "repeats"),
        (lambda: usage(np.array([0, 1, 9]), fill, none, none, 2, out, vic), "inverse: id 9"),
        (lambda: usage(inv, fill, np.array([3, 3]), np.zeros(2, np.int64), 2, out, vic), "repeats"),
        (lambda: usage(inv, fill, np.array([-2]), np.zeros(1, np.int64), 2, out, vic), "id -2"),
        (lambda: usage(inv, fill, np.array([1]), none, 2, out, vic), "ent_use does not match"),
        (lambda: usage(inv[:2], fill, none, none, 2, out, vic), "one item per event"),
        (lambda: lru(inv, fill, none, 2, out, vic.astype(np.int32)), "victim: expected"),
        (lambda: lru(inv, fill, none, 2, out.astype(np.int64), vic), "out: expected"),
        (lambda: lru(inv, fill, none, 2, out, vic[::-1]), "victim: not a writable contiguous"),
        (lambda: usage(inv, fill, none, none, -1, out, vic), "capacity -1"),
        (lambda: lru(inv.astype(np.uint64), fill, none, 2, out, vic), "inverse: expected"),
        (lambda: lru(inv, fill.astype(np.int64), none, 2, out, vic), "fillable: expected"),
        (lambda: lru(inv.reshape(3, 1), fill, none, 2, out, vic), "1-D"),
    ):
        out[:] = 7
        with pytest.raises(ValueError, match=match):
            call()
        assert out.tolist() == [7, 7, 7] and vic.tolist() == [-1, -1, -1]  # nothing written
    ro = out.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out: not a writable"):
        lru(inv, fill, none, 2, ro, vic)


def test_large_blocks_take_the_c_loop_and_equal_per_event(c_loops, monkeypatch):
    calls = []
    real = native.use

    def spy(n, native_loop=None, cached=0):
        calls.append(real(n, native_loop, cached))
        return calls[-1]

    monkeypatch.setattr(native, "use", spy)
    for policy in ("lru-v6.8", "usage-v2"):
        vms = [one_device(policy, 20, 5, kernel="6.8") for _ in range(2)]
        rng = np.random.default_rng(7)
        ev = rng.integers(0, 24, native.MIN_EVENTS + 100).astype(np.uint32)
        r = inject_block(vms[0][0], vms[0][1], np.zeros_like(ev), ev)
        per = [vms[1][0].signal_msi(vms[1][1], 0, int(e)) for e in ev]
        assert [COLUMN_VALUES[c] for c in OUTCOME_TO_COLUMN[r.outcome]] == [p.cache for p in per]
        assert vms[0][1].cache.entries() == vms[1][1].cache.entries()
    assert calls and all(calls)
    assert not native.use(native.MIN_EVENTS - 1)  # small blocks stay in Python
    assert not native.use(native.MIN_EVENTS * 2, None, native.MIN_EVENTS + 1)  # or a big cache


def test_without_the_extension_python_runs(monkeypatch):
    """No compiler at install time: the same results from the Python loops."""
    monkeypatch.setattr(native, "_c", None)
    assert not native.available() and not native.use(10**6, True)
    vm, its = one_device("usage-v2", 20, 5)
    ev = np.arange(native.MIN_EVENTS * 2, dtype=np.uint32) % 24
    r = inject_block(vm, its, np.zeros_like(ev), ev)
    assert r is not None and len(r.outcome) == len(ev)
    with pytest.raises(RuntimeError, match="no C block loops"):
        native.lru_block(ev, np.ones(24, np.bool_), [], 4, np.empty(len(ev), np.int8), ev)
