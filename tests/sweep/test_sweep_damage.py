"""Sweeps and datasets against hand-damaged trees: a sweep never overwrites an input, a
broken manifest entry is bounded and re-run with a warning naming it, and summarize warns
per damaged file and exits 1 unless --skip-bad."""

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gictools.errors import ConfigError
from gictools.sweep.cell import CELL_FILE, CELLS_DIR, EVENTS_DIR, EVENTS_FILE, MANIFEST_DIR
from gictools.sweep.grid import cells_from_args
from gictools.sweep.run import run_sweep
from gictools.sweep.summarize import summarize

ROOT = Path(__file__).parents[2]
TRACES = ROOT / "traces"
T1 = TRACES / "lpi-stress-v1-d1-e17.msgpack"
T4 = TRACES / "lpi-stress-v4-d4-e8-fixed.msgpack"
T16 = TRACES / "lpi-stress-v16-d16-e16.msgpack"


def _cli(*args, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "gictools", *args], env=env, capture_output=True, text=True,
        timeout=120, **kw,
    )  # fmt: skip


@pytest.mark.parametrize("where", [EVENTS_DIR, CELLS_DIR])
def test_sweep_refuses_to_overwrite_a_trace_at_a_cell_output(tmp_path, where):
    out = tmp_path / "ds"
    (c,) = cells_from_args([str(T1)], ["none"])
    # the trace is copied where its own cell's output goes, and swept from there
    name = EVENTS_FILE if where == EVENTS_DIR else CELL_FILE
    d = out / where / c.partition.replace("lpi-stress-v1-d1-e17", Path(name).stem)
    d.mkdir(parents=True)
    shutil.copy(T1, d / name)
    before = (d / name).read_bytes()
    cells = cells_from_args([str(d / name)], ["none"])
    with pytest.raises(ConfigError, match=r"is the same file as the input .*refusing to overwrite"):
        run_sweep(cells, out, jobs=1)
    assert (d / name).read_bytes() == before


def _one_cell_dataset(tmp_path):
    out = tmp_path / "ds"
    cells = cells_from_args([str(T1)], ["none"])
    r = run_sweep(cells, out, jobs=1)
    assert r.count("done") == 1
    (m,) = (out / MANIFEST_DIR).glob("*.json")
    return out, cells, m


def test_deeply_nested_manifest_is_not_finished_with_a_warning(tmp_path):
    out, cells, m = _one_cell_dataset(tmp_path)
    m.write_text("[" * 200_000)
    r = run_sweep(cells, out, jobs=1)
    assert r.count("done") == 1 and r.count("skipped") == 0
    assert r.warnings == [f"{m}: nested too deeply, not a manifest entry; the cell runs again"]
    assert json.loads(m.read_text())["files"]  # rewritten whole


def _as_limit(nbytes):
    def f():
        resource.setrlimit(resource.RLIMIT_AS, (nbytes, nbytes))

    return f


def test_huge_sparse_manifest_is_bounded(tmp_path):
    out, cells, m = _one_cell_dataset(tmp_path)
    with open(m, "wb") as f:
        f.truncate(3 << 30)  # 3 GB of holes
    r = _cli(
        "sweep", "-t", str(T1), "-c", "none", "-o", str(out), "-q", "-j", "1",
        preexec_fn=_as_limit(2 << 30),  # reading it whole would need 3 GB
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stderr == (
        f"warning: {m}: larger than 1,048,576 bytes, not a manifest entry; the cell runs again\n"
    )
    assert m.stat().st_size < 4096


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "ds"
    cells = cells_from_args([str(T1), str(T4), str(T16)], ["none"])
    assert run_sweep(cells, out, jobs=2).count("done") == 3
    return out


def _part(root, which, trace):
    name = EVENTS_FILE if which == EVENTS_DIR else CELL_FILE
    (d,) = (root / which).glob(f"policy=none/kernel=default/preset=*/trace={trace}")
    return d / name


def _damage_cell_by_events(root):
    shutil.copy(_part(root, EVENTS_DIR, T1.stem), _part(root, CELLS_DIR, T4.stem))
    return [
        (_part(root, CELLS_DIR, T4.stem), "not a sweep cells file (its schema differs)"),
        (_part(root, EVENTS_DIR, T4.stem), "its cell file is missing or damaged"),
    ]


def _damage_part_schema(root):
    pq.write_table(pa.table({"x": [1, 2]}), _part(root, EVENTS_DIR, T4.stem))
    return [
        (_part(root, CELLS_DIR, T4.stem), "its cell's events file is missing or damaged"),
        (_part(root, EVENTS_DIR, T4.stem), "not a sweep events file (its schema differs)"),
    ]


def _damage_part_is_dir(root):
    p = _part(root, EVENTS_DIR, T4.stem)
    p.unlink()
    p.mkdir()
    return [
        (_part(root, CELLS_DIR, T4.stem), "its cell's events file is missing or damaged"),
        (p, "a directory where a Parquet file belongs"),
    ]


def _damage_empty_cell(root):
    f = sorted((root / CELLS_DIR).rglob(CELL_FILE))[0]  # the first file a dataset reads
    f.write_bytes(b"")
    assert T1.stem in str(f)
    return [
        (f, "not a readable Parquet file"),
        (_part(root, EVENTS_DIR, T1.stem), "its cell file is missing or damaged"),
    ]


@pytest.mark.parametrize(
    "damage",
    [_damage_cell_by_events, _damage_part_schema, _damage_part_is_dir, _damage_empty_cell],
)
def test_summarize_warns_per_damaged_file_and_exits_1(dataset, tmp_path, damage):
    good = summarize(dataset)
    assert good["skipped"] == [] and good["replay"][0]["traces"] == 3
    root = tmp_path / "ds"
    shutil.copytree(dataset, root)
    want = damage(root)
    s = summarize(root)
    got = [(Path(b["file"]), b["reason"]) for b in s["skipped"]]
    assert [(f, why[: len(w)]) for (f, why), (_, w) in zip(got, want)] == want
    assert s["replay"][0]["traces"] == 2
    lost = 1600 if T4.stem in str(want[0][0]) else 17000  # the damaged trace's MSIs
    assert s["replay"][0]["msis"] == good["replay"][0]["msis"] - lost
    r = _cli("summarize", str(root))
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert len(lines) == len(want)
    for line, (f, why) in zip(lines, want):
        assert line.startswith(f"warning: {f}: {why}") and line.endswith("; skipped")
    assert "traces" in r.stdout
    r = _cli("summarize", str(root), "--skip-bad")
    assert r.returncode == 0 and len(r.stderr.splitlines()) == len(want)


def test_fifo_manifest_is_removed_and_the_cell_runs_again(tmp_path):
    out, cells, m = _one_cell_dataset(tmp_path)
    m.unlink()
    os.mkfifo(m)
    r = run_sweep(cells, out, jobs=1)  # would block for ever writing into the FIFO
    assert r.count("done") == 1
    assert r.warnings == [f"{m}: not a regular file; the cell runs again"]
    assert json.loads(m.read_text())["files"]


@pytest.mark.parametrize("where", [EVENTS_DIR, CELLS_DIR])
def test_fifo_at_a_cell_output_refuses_the_sweep(tmp_path, where):
    out = tmp_path / "ds"
    (c,) = cells_from_args([str(T1)], ["none"])
    f = out / where / c.partition / (EVENTS_FILE if where == EVENTS_DIR else CELL_FILE)
    f.parent.mkdir(parents=True)
    os.mkfifo(f)
    with pytest.raises(ConfigError, match="a FIFO where the sweep writes a file; remove it"):
        run_sweep([c], out, jobs=1)
