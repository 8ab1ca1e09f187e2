"""The Parquet writer's memory contract: Arrow arrays built without pa.array (which imports
pandas), and long outputs written as parts joined without a copy (pyarrow holds per-row-group
metadata until its writer closes)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import examples

import gictools.stats.parquet as P
from gictools.stats.schema import COLUMN_TABLE, DICTIONARIES
from gictools.stats.splice import Joiner

TRACE = Path(__file__).resolve().parents[2] / "traces" / "lpi-stress-v1-d1-e17.msgpack"

_PLAIN = [(n, t, d) for n, t, d in COLUMN_TABLE if not pa.types.is_dictionary(t)]


# an example builds and reads back a Parquet file: ~5x a typical property test's example
@settings(max_examples=examples(0.5))
@given(
    col=st.sampled_from(_PLAIN),
    n=st.integers(0, 300),
    seed=st.integers(0, 2**32 - 1),
    null_rate=st.sampled_from([0.0, 0.1, 1.0]),
)
def test_numpy_column_equals_pa_array(col, n, seed, null_rate):
    """Buffers + packed validity bits give what pa.array gives (the reference)."""
    name, typ, dt = col
    rng = np.random.default_rng(seed)
    info = np.iinfo(dt)
    values = rng.integers(info.min, info.max, size=n, dtype=dt, endpoint=True)
    mask = rng.random(n) < null_rate
    got = P._column(name, values, mask, n, None)
    want = pa.array(values, type=typ, mask=mask)
    got.validate(full=True)
    assert got.equals(want)
    assert got.null_count == int(mask.sum())


@given(vals=st.lists(st.one_of(st.none(), st.integers(0, 2**31 - 1)), max_size=50))
def test_list_column_with_nulls(vals):
    got = P._column("error", vals, None, len(vals), None)
    assert got.to_pylist() == vals
    # a dictionary column from a list: indices with nulls
    idx = [None if v is None else v % len(DICTIONARIES["op"]) for v in vals]
    d = P._column("op", idx, None, len(idx), P.string_array(DICTIONARIES["op"]))
    d.validate(full=True)
    assert d.to_pylist() == [None if i is None else DICTIONARIES["op"][i] for i in idx]


@given(st.lists(st.text(max_size=12), max_size=20))
def test_string_array(strings):
    a = P.string_array(strings)
    a.validate(full=True)
    assert a.to_pylist() == strings


@pytest.mark.skipif(importlib.util.find_spec("pandas") is None, reason="pandas not installed")
def test_replay_never_imports_pandas(tmp_path):
    """pyarrow imports pandas (~50 MB RSS) from pa.array/pa.scalar when it is installed; a
    replay writing Parquet must not pay for it."""
    out = tmp_path / "o.parquet"
    code = (
        "import sys\n"
        "from gictools.replay import replay\n"
        f"replay({str(TRACE)!r}, ['lru-v6.8', 'none'], out={str(out)!r})\n"
        "assert 'pandas' not in sys.modules, 'pandas imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert pq.read_metadata(out).num_rows > 0


def _chunks(n_chunks, rows, policy=0):
    for i in range(n_chunks):
        seq = np.arange(i * rows, (i + 1) * rows, dtype=np.int64)
        yield (
            {"seq": seq, "t_ns": seq * 3, "op": 0, "device_id": (seq % 7).astype(np.uint32)},
            {},
            rows,
            policy,
        )


def _write(path, part_groups, monkeypatch, n_chunks=23, rows=100):
    monkeypatch.setattr(P, "PART_ROW_GROUPS", part_groups)
    w = P.EventWriter(path, {"k": "v"}, ["lru-v6.8", "none"], row_group=250)
    for pol in (0, 1):
        for cols, masks, n, p in _chunks(n_chunks, rows, pol):
            w.add(cols, masks, n, p)
    w.close()


@pytest.mark.parametrize("part_groups", [1, 2, 3])
def test_parts_join_into_one_file(tmp_path, monkeypatch, part_groups):
    """A writer closed every part_groups row groups gives the same file content as one
    writer: rows, row groups, metadata; read by pyarrow and DuckDB."""
    one, parts = tmp_path / "one.parquet", tmp_path / "parts.parquet"
    _write(one, 10**6, monkeypatch)
    _write(parts, part_groups, monkeypatch)
    a, b = pq.read_table(one), pq.read_table(parts)
    assert a.equals(b) and a.num_rows == 2 * 23 * 100
    ma, mb = pq.read_metadata(one), pq.read_metadata(parts)
    # chunks of 100 rows flush once >= 250 are buffered: 7 row groups of 300 + 1 of 200
    assert mb.num_row_groups == ma.num_row_groups == 2 * 8
    assert mb.metadata == ma.metadata and mb.metadata[b"k"] == b"v"
    for i in range(mb.num_row_groups):
        assert mb.row_group(i).num_rows == ma.row_group(i).num_rows
    duckdb = pytest.importorskip("duckdb")
    got = duckdb.sql(
        f"SELECT cache_policy, count(*), sum(seq) FROM '{parts}' GROUP BY ALL ORDER BY 1"
    )
    want = [("lru-v6.8", 2300, 2300 * 2299 // 2), ("none", 2300, 2300 * 2299 // 2)]
    assert got.fetchall() == want


def test_empty_output_has_the_schema(tmp_path):
    p = tmp_path / "e.parquet"
    w = P.EventWriter(p, {}, ["none"])
    w.close()
    t = pq.read_table(p)
    assert t.num_rows == 0 and t.schema.names == [n for n, _, _ in COLUMN_TABLE]


def test_joiner_refuses_a_part_without_footer(tmp_path):
    with open(tmp_path / "x", "wb") as f:
        sink = Joiner(f).sink()
        sink.footer()
        sink.write(b"not a footer")
        with pytest.raises(ValueError, match="footer"):
            sink.end()
