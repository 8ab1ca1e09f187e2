"""Issue 25 point 9: Ctrl-C in a sweep (or a failed cell) leaves no empty partition
directories: a reader of events/ and cells/ sees finished cells' directories only. The real
SIGINT case: test_sweep_and_summarize.py::test_ctrl_c_on_the_command_line."""

import shutil
from pathlib import Path

import pytest

from gictools.sweep.cell import CELLS_DIR, EVENTS_DIR, MANIFEST_DIR
from gictools.sweep.grid import cells_from_args
from gictools.sweep.run import run_sweep

TRACES = Path(__file__).resolve().parents[2] / "traces"
SMALL = [TRACES / "lpi-stress-v4-d4-e8-fixed.msgpack", TRACES / "lpi-stress-v16-d16-e16.msgpack"]


def empty_dirs(root: Path) -> list[str]:
    """Directories under events/ and cells/ with no file anywhere below them."""
    out = []
    for sub in (EVENTS_DIR, CELLS_DIR):
        for d in (root / sub).rglob("*"):
            if d.is_dir() and not any(f.is_file() for f in d.rglob("*")):
                out.append(str(d.relative_to(root)))
    return sorted(out)


def _partitions(root: Path, sub: str) -> set[str]:
    return {str(f.parent.relative_to(root / sub)) for f in (root / sub).rglob("*.parquet")}


@pytest.mark.parametrize("jobs", [1, 2])
def test_interrupt_leaves_no_empty_partition(tmp_path, jobs, monkeypatch):
    from gictools.sweep import run
    from gictools.trace.gen_lpi_stress import generate

    # ~1M MSIs: a cell runs for 0.4 s (C block loops) to a second, so a progress tick
    # (every 20 ms here) sees one running
    monkeypatch.setattr(run, "TICK_S", 0.02)
    generate(tmp_path / "big.msgpack", 1, 1, 17, 60000, "as-measured")
    cells = cells_from_args(
        [str(tmp_path / "big.msgpack")], ["lru-v6.8", "per-its-v6.10", "usage-v2"], []
    )
    started = []

    def stop_once_a_cell_runs(state):
        # a cell's partition directory exists from its start: stop while one is running
        root = tmp_path / "ds"
        if state.done >= 1 and (root / EVENTS_DIR).exists():
            started.append(len(list((root / EVENTS_DIR).rglob("trace=*"))))
            if started[-1] > state.done:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as ei:
        run_sweep(cells, tmp_path / "ds", jobs=jobs, progress=stop_once_a_cell_runs)
    res = ei.value.result
    root = tmp_path / "ds"
    done = {p for p, r in res.results.items() if r["status"] == "done"}
    assert 1 <= len(done) < len(cells)
    if jobs == 1:  # the one cell running at the interrupt was cut short; with two workers
        # both running cells may finish (manifest written) while the sweep stops: done
        assert started[-1] > len(done)
    assert empty_dirs(root) == []
    assert _partitions(root, EVENTS_DIR) == _partitions(root, CELLS_DIR) == done
    assert len(list((root / MANIFEST_DIR).glob("*.json"))) == len(done)
    again = run_sweep(cells, root, jobs=jobs)  # resumes into the same directories
    assert again.count("skipped") == len(done) and again.count("failed") == 0
    assert empty_dirs(root) == []
    assert len(_partitions(root, EVENTS_DIR)) == len(cells)


def test_failed_cell_leaves_no_empty_partition(tmp_path):
    shutil.copy(SMALL[0], tmp_path / "good.msgpack")
    data = SMALL[1].read_bytes()
    (tmp_path / "bad.msgpack").write_bytes(data[: len(data) // 2])  # truncated mid-record
    cells = cells_from_args([str(tmp_path / "*.msgpack")], ["lru-v6.8"], [])
    r = run_sweep(cells, tmp_path / "ds", jobs=1)
    assert (r.count("done"), r.count("failed")) == (1, 1)
    root = tmp_path / "ds"
    assert empty_dirs(root) == []
    assert _partitions(root, EVENTS_DIR) == {
        "policy=lru-v6.8/kernel=default/preset=fixed-v0/trace=good"
    }
