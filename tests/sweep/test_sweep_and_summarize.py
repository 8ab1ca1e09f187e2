"""gictools sweep / summarize: grid expansion, the dataset, both executors, resume, failures."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from gictools.cli import app
from gictools.errors import ConfigError
from gictools.sweep.cell import CELLS_DIR, EVENTS_DIR, MANIFEST_DIR
from gictools.sweep.grid import cells_from_args, cells_from_toml, int_range
from gictools.sweep.run import _Lock, run_sweep
from gictools.sweep.summarize import open_dataset, summarize

TRACES = Path(__file__).resolve().parents[2] / "traces"
SMALL = [TRACES / "lpi-stress-v4-d4-e8-fixed.msgpack", TRACES / "lpi-stress-v16-d16-e16.msgpack"]
runner = CliRunner()


def _grid(tmp_path, presets=("fixed-v0", "v6.10")):
    for t in SMALL:
        shutil.copy(t, tmp_path / t.name)
    return cells_from_args(
        [str(tmp_path / "*.msgpack")], ["lru-v6.8", "per-its-v6.10"], [], presets
    )


def _snapshot(root):
    """{partition: (events table, cell row without wall time)} of a dataset."""
    root = Path(root)
    out = {}
    for f in sorted((root / CELLS_DIR).rglob("cell.parquet")):
        part = str(f.parent.relative_to(root / CELLS_DIR))
        row = pq.read_table(f).to_pylist()[0]
        row.pop("wall_s")
        ev = root / EVENTS_DIR / part / "part-0.parquet"
        out[part] = (pq.read_table(ev) if ev.exists() else None, row)
    return out


def _assert_same(a, b):
    assert a.keys() == b.keys() and a
    for part in a:
        (ta, ra), (tb, rb) = a[part], b[part]
        assert ra == rb, part
        assert (ta is None) == (tb is None)
        if ta is not None:
            assert ta.num_rows > 0 and ta.equals(tb), part


def _temp_files(root):
    return [p for p in Path(root).rglob("*") if ".tmp" in p.name]


# --- the grid ----------------------------------------------------------------------------------


def test_grid_axes_and_partitions(tmp_path):
    cells = _grid(tmp_path)
    assert len(cells) == 2 * 2 * 2
    parts = {c.partition for c in cells}
    assert "policy=lru-v6.8/kernel=default/preset=v6.10/trace=lpi-stress-v16-d16-e16" in parts
    c = cells_from_args([str(SMALL[0])], ["none"], ["6.10", "6.1"], [])
    # "6.10" and "6.1" would be the same number to a reader that infers types
    assert sorted(x.kernel for x in c) == ["v6.1", "v6.10"]
    assert {x.preset for x in c} == {"fixed-v0"}


@pytest.mark.parametrize(
    "args, msg",
    [
        (([], ["lru-v6.8"]), "at least one --trace"),
        ((["/nonexistent/*.msgpack"],), "matches no file"),
        ((["s3://bucket/t.msgpack"],), "URLs are not supported"),
        (([str(SMALL[0])], ["lru-v9"]), "unknown cache policy"),
        (([str(SMALL[0])], [], ["5.4"]), "not modelled"),
        (([str(SMALL[0])], [], [], ["v9"]), "v9"),
    ],
)
def test_grid_rejects(args, msg):
    with pytest.raises(ConfigError, match=msg):
        cells_from_args(*args)


def test_same_stem_traces_get_distinct_partitions(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(SMALL[0], tmp_path / "a" / "t.msgpack")
    shutil.copy(SMALL[1], tmp_path / "b" / "t.msgpack")
    cells = cells_from_args([str(tmp_path / "*" / "t.msgpack")], ["none"])
    names = sorted(c.trace for c in cells)
    assert len(set(names)) == 2 and all(n.startswith("t-") and len(n) == 10 for n in names)


def test_int_range():
    assert int_range("x", 3) == [3]
    assert int_range("x", [1, 4, 4]) == [1, 4]
    assert int_range("x", {"start": 1, "stop": 64, "mul": 4}) == [1, 4, 16, 64]
    assert int_range("x", {"start": 2, "stop": 7, "step": 2}) == [2, 4, 6]
    for bad in (0, [1, -2], {"start": 1}, {"start": 1, "stop": 4, "mul": 1}, "1..4", True):
        with pytest.raises(ConfigError, match="x"):
            int_range("x", bad)


def test_toml_grid(tmp_path):
    shutil.copy(SMALL[0], tmp_path / "t.msgpack")
    g = tmp_path / "grid.toml"
    g.write_text(
        '[replay]\ntrace = ["*.msgpack"]\ncache = ["lru-v6.8", "usage-v2"]\nkernel = ["6.8"]\n'
        "[predict]\nv = {start = 1, stop = 4, mul = 4}\nd = 1\ne = [1, 17]\ni = 50\n"
        'preset = ["v6.8-rc1", "series-v2"]\nrouting = ["as-measured", "fixed"]\n'
    )
    cells = cells_from_toml(g)
    rep = [c for c in cells if c.kind == "replay"]
    pre = [c for c in cells if c.kind == "predict"]
    assert len(rep) == 2 and {c.kernel for c in rep} == {"v6.8"}
    assert len(pre) == 2 * 1 * 2 * 1 * 2 * 2
    assert (
        "policy=usage-v2/kernel=preset/preset=series-v2/trace=lpi-stress-v4-d1-e17-i50-fixed"
        in {c.partition for c in pre}
    )
    g.write_text("[replay]\ntrace = 'x.msgpack'\ncolour = 1\n")
    with pytest.raises(ConfigError, match=r"grid.toml.*colour"):
        cells_from_toml(g)
    g.write_text("[replay\n")
    with pytest.raises(ConfigError, match="not a TOML file"):
        cells_from_toml(g)


# --- executors, resume, failures ---------------------------------------------------------------


def test_local_and_dask_give_identical_datasets(tmp_path):
    """Replay and predict cells through a real LocalCluster (reached through the
    DASK_SCHEDULER_ADDRESS convention) and through local processes."""
    distributed = pytest.importorskip("distributed")
    _grid(tmp_path)
    g = tmp_path / "grid.toml"
    g.write_text(
        '[replay]\ntrace = "*.msgpack"\ncache = ["lru-v6.8", "per-its-v6.10"]\n'
        'preset = ["fixed-v0", "v6.10"]\n[predict]\nv = [1, 2]\nd = 2\ne = 3\ni = 64\n'
        'preset = "series-v2"\n'
    )
    cells = cells_from_toml(g)
    local = run_sweep(cells, tmp_path / "local", jobs=2)
    assert local.count("done") == len(cells) == 10
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, protocol="tcp", dashboard_address=None
    ) as cluster:
        r = runner.invoke(
            app,
            ["sweep", "--grid", str(g), "-o", str(tmp_path / "dask"), "--json"],
            env={"DASK_SCHEDULER_ADDRESS": cluster.scheduler_address},
        )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["executor"].startswith("dask tcp://")
    assert out["counts"] == {"done": 10, "skipped": 0, "failed": 0, "total": 10}
    _assert_same(_snapshot(tmp_path / "local"), _snapshot(tmp_path / "dask"))


def test_interrupt_leaves_finished_cells_and_resume_completes(tmp_path):
    cells = _grid(tmp_path)
    ref = run_sweep(cells, tmp_path / "ref", jobs=1)
    assert ref.count("done") == 8

    def stop_after_three(state):
        if state.done >= 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as ei:
        run_sweep(cells, tmp_path / "ds", jobs=1, progress=stop_after_three)
    res = ei.value.result
    assert res.interrupted and 3 <= res.count("done") < 8
    root = tmp_path / "ds"
    assert _temp_files(root) == []
    # only finished cells: each has its manifest entry, and nothing else is in the dataset
    finished = {
        json.loads(p.read_text())["identity"]["partition"]
        for p in (root / MANIFEST_DIR).glob("*.json")
    }
    assert finished == {p for p, r in res.results.items() if r["status"] == "done"}
    assert set(_snapshot(root)) == finished
    again = run_sweep(cells, root, jobs=2)
    assert again.count("skipped") == len(finished)
    assert again.count("done") == 8 - len(finished)
    _assert_same(_snapshot(ref.root), _snapshot(root))


def test_failed_cell_is_reported_and_others_finish(tmp_path):
    shutil.copy(SMALL[0], tmp_path / "good.msgpack")
    bad = tmp_path / "bad.msgpack"
    data = SMALL[1].read_bytes()
    bad.write_bytes(data[: len(data) // 2])  # truncated mid-record
    args = [
        "sweep",
        "-t",
        str(tmp_path / "*.msgpack"),
        "-c",
        "lru-v6.8",
        "-o",
        str(tmp_path / "ds"),
    ]
    r = runner.invoke(app, args)
    assert r.exit_code == 2
    assert "FAILED policy=lru-v6.8/kernel=default/preset=fixed-v0/trace=bad:" in r.stderr
    assert "bad.msgpack: record" in r.stderr  # the reader's located error, no traceback
    assert "Traceback" not in r.output
    assert set(_snapshot(tmp_path / "ds")) == {
        "policy=lru-v6.8/kernel=default/preset=fixed-v0/trace=good"
    }
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 2
    assert json.loads(r.stdout)["counts"] == {"done": 0, "skipped": 1, "failed": 1, "total": 2}


def test_changed_trace_reruns_its_cells(tmp_path):
    t = tmp_path / "t.msgpack"
    shutil.copy(SMALL[0], t)
    root = tmp_path / "ds"
    assert run_sweep(cells_from_args([str(t)], ["none"]), root, jobs=1).count("done") == 1
    assert run_sweep(cells_from_args([str(t)], ["none"]), root, jobs=1).count("skipped") == 1
    shutil.copy(SMALL[1], t)
    r = run_sweep(cells_from_args([str(t)], ["none"]), root, jobs=1)
    assert r.count("done") == 1
    row = next(iter(r.results.values()))["row"]
    assert row["msis"] == 5120  # the new trace's


def test_one_sweep_per_dataset_and_stale_temp_files_removed(tmp_path):
    cells = cells_from_args([str(SMALL[0])], ["none"])
    root = tmp_path / "ds"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    name = f".part-0.parquet.gictools-{int(dead.stdout)}-0123abcd.tmp"  # outputs.temp_path's
    stale = root / EVENTS_DIR / cells[0].partition / name
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a file")
    lock = _Lock(root)
    with pytest.raises(ConfigError, match="another sweep"):
        run_sweep(cells, root)
    lock.release()
    assert run_sweep(cells, root, jobs=1).count("done") == 1
    assert _temp_files(root) == []


def test_cli_import_does_not_import_dask():
    code = (
        "import sys, gictools.cli, gictools.sweep.run, gictools.sweep.summarize;"
        "bad = [m for m in ('dask', 'distributed') if m in sys.modules];"
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr + r.stdout


# --- what the dataset says ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("swept")
    cells = _grid(tmp)
    res = run_sweep(cells, tmp / "ds", jobs=2)
    assert res.count("done") == len(cells)
    return tmp / "ds", res


def test_summarize_known_answers(swept):
    root, res = swept
    s = summarize(root)
    assert [(g["policy"], g["preset"]) for g in s["replay"]] == [
        ("lru-v6.8", "fixed-v0"),
        ("lru-v6.8", "v6.10"),
        ("per-its-v6.10", "fixed-v0"),
        ("per-its-v6.10", "v6.10"),
    ]
    events = open_dataset(root).to_table()
    for g in s["replay"]:
        sel = events.filter(
            (pc.field("policy") == g["policy"])
            & (pc.field("preset") == g["preset"])
            & (pc.field("op") == "msi")
        )
        lat = sel.column("latency_ns").to_numpy()
        assert g["msis"] == len(lat) == 1600 + 5120
        want = np.percentile(lat, [50, 99], method="inverted_cdf")
        assert [g["latency_p50_ns"], g["latency_p99_ns"]] == want.tolist()
        cache = pc.value_counts(pc.cast(sel.column("cache"), pa.string())).to_pylist()
        counts = {d["values"]: d["counts"] for d in cache}
        lookups = len(lat) - counts.get("bypass", 0)
        assert g["hit_rate"] == counts.get("hit", 0) / lookups
        assert g["evictions"] == counts.get("miss-evict", 0)
        rows = [
            r["row"]
            for p, r in res.results.items()
            if f"policy={g['policy']}/" in p and f"preset={g['preset']}/" in p
        ]
        assert g["lpis_per_sec"] == pytest.approx(
            g["msis"] / sum(r["elapsed_ns"] for r in rows) * 1e9
        )


def test_single_trace_group_matches_the_replay_and_compare(tmp_path):
    from gictools.analysis.compare import compare_trace
    from gictools.latency.presets import load_preset
    from gictools.replay import replay

    p = load_preset("series-v2")
    root = tmp_path / "ds"
    run_sweep(cells_from_args([str(SMALL[1])], [p.cache], [], ["series-v2"]), root, jobs=1)
    (g,) = summarize(root)["replay"]
    (rep,) = replay(SMALL[1], policies=[p.cache], preset=p)
    d = rep.as_dict()
    assert (g["msis"], g["evictions"]) == (d["msis"], d["evictions"])
    assert (g["latency_p50_ns"], g["latency_p99_ns"]) == (d["latency_p50_ns"], d["latency_p99_ns"])
    # the closed-loop time from the per-event rows agrees with the latency model's own
    (c,) = compare_trace(SMALL[1], [p])
    assert g["lpis_per_sec"] == pytest.approx(c["lpis_per_sec"], rel=1e-3)


def test_predict_cells_match_predict(tmp_path):
    from gictools.analysis.predict import predict_lpi_stress

    g = tmp_path / "grid.toml"
    g.write_text('[predict]\nv = [1, 4]\nd = 2\ne = 3\ni = 100\npreset = "v6.8-rc1"\n')
    root = tmp_path / "ds"
    r = run_sweep(cells_from_toml(g), root, jobs=1)
    assert r.count("done") == 2
    s = summarize(root)
    assert s["replay"] == [] and len(s["predict"]) == 2
    for row in s["predict"]:
        v = int(row["trace"].split("-v")[1].split("-")[0])
        want = predict_lpi_stress(v, 2, 3, 100, "v6.8-rc1")
        assert row["lpis_per_sec"] == want["lpis_per_sec"]
        assert (row["msis"], row["hits"]) == (600, want["hits"])
    assert not (root / EVENTS_DIR).exists() or not list((root / EVENTS_DIR).rglob("*.parquet"))


def test_summarize_plot(swept, tmp_path):
    pytest.importorskip("matplotlib")
    root, _ = swept
    r = runner.invoke(app, ["summarize", str(root), "--plot", str(tmp_path / "plots")])
    assert r.exit_code == 0, r.output
    pngs = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert pngs == ["sweep-hit-rate.png", "sweep-lpis.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in (tmp_path / "plots").iterdir())


def test_summarize_cli(swept, tmp_path):
    root, _ = swept
    r = runner.invoke(app, ["summarize", str(root)])
    assert r.exit_code == 0, r.output
    assert "per-its-v6.10  default  v6.10" in r.stdout
    r = runner.invoke(app, ["summarize", str(tmp_path)])
    assert r.exit_code == 2 and "not a sweep dataset" in r.stderr
    r = runner.invoke(app, ["summarize", str(root), "--json"])
    assert r.exit_code == 0
    assert json.loads(r.stdout)["replay"] == summarize(root)["replay"]
    bad = tmp_path / "bad" / CELLS_DIR / "policy=a" / "kernel=b" / "preset=c" / "trace=d"
    bad.mkdir(parents=True)
    (bad / "cell.parquet").write_bytes(b"junk")
    r = runner.invoke(app, ["summarize", str(tmp_path / "bad")])
    assert r.exit_code == 2 and "unreadable sweep dataset" in r.stderr
    assert "Traceback" not in r.output


def test_duckdb_reads_the_dataset(swept):
    duckdb = pytest.importorskip("duckdb")
    root, _ = swept
    q = (
        f"SELECT policy, preset, count(*) FROM read_parquet('{root}/events/**/*.parquet', "
        "hive_partitioning=1) WHERE op = 'msi' GROUP BY ALL ORDER BY ALL"
    )
    got = duckdb.sql(q).fetchall()
    assert got == [
        ("lru-v6.8", "fixed-v0", 6720),
        ("lru-v6.8", "v6.10", 6720),
        ("per-its-v6.10", "fixed-v0", 6720),
        ("per-its-v6.10", "v6.10", 6720),
    ]
    n = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{root}/cells/**/*.parquet', hive_partitioning=1)"
    ).fetchall()[0][0]
    assert n == 8
    # docs/sweep.md's query gives summarize's exact percentiles and hit rate
    q = (
        "SELECT policy, kernel, preset, avg((cache = 'hit')::INT), quantile_disc(latency_ns, 0.5),"
        f" quantile_disc(latency_ns, 0.99) FROM read_parquet('{root}/events/**/*.parquet',"
        " hive_partitioning = 1) WHERE op = 'msi' AND cache <> 'bypass' GROUP BY ALL ORDER BY ALL"
    )
    want = [
        (
            g["policy"],
            g["kernel"],
            g["preset"],
            g["hit_rate"],
            g["latency_p50_ns"],
            g["latency_p99_ns"],
        )
        for g in summarize(root)["replay"]
    ]
    got = duckdb.sql(q).fetchall()
    assert [r[:3] + (pytest.approx(r[3]),) + r[4:] for r in got] == want


# dask's own pandas calls, not ours
@pytest.mark.filterwarnings("ignore:The inplace keyword")
def test_dask_dataframe_reads_the_dataset(swept):
    pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    root, _ = swept
    df = dd.read_parquet(str(root / "events"), dataset={"partitioning": "hive"})
    got = df[df.op == "msi"].groupby("policy").size().compute()
    assert {str(k): int(v) for k, v in got.items()} == {"lru-v6.8": 13440, "per-its-v6.10": 13440}
    assert os.path.isdir(root / CELLS_DIR)


def _live_in_group(pgid):
    """Processes of a process group that are not zombies (Linux /proc)."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            live.append(stat.parent.name)
    return live


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_on_the_command_line(tmp_path):
    """A real SIGINT to the sweep's process group (what a terminal's Ctrl-C sends): exit
    130, only finished cells, no temp files, no worker left; the re-run completes."""
    import signal
    import time

    from gictools.trace.gen_lpi_stress import generate

    generate(tmp_path / "a.msgpack", 1, 1, 17, 1000, "as-measured")
    shutil.copy(tmp_path / "a.msgpack", tmp_path / "b.msgpack")
    root = tmp_path / "ds"
    args = ["sweep", "-t", str(tmp_path / "*.msgpack"), "-j", "1", "-o", str(root), "--json"]
    args += ["-c", "lru-v6.8", "-c", "usage-v2", "-c", "none"]
    p = subprocess.Popen(
        [sys.executable, "-m", "gictools", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while not [f for f in root.glob(f"{MANIFEST_DIR}/*.json") if "failed" not in f.name]:
        assert p.poll() is None and time.monotonic() < deadline, p.communicate()
        time.sleep(0.01)
    os.killpg(p.pid, signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "interrupted:" in err and "Traceback" not in err
    counts = json.loads(out)["counts"]
    assert 1 <= counts["done"] < 6 and counts["failed"] == 0
    assert _temp_files(root) == []
    dirs = [d for s in (EVENTS_DIR, CELLS_DIR) for d in (root / s).rglob("*") if d.is_dir()]
    assert [d for d in dirs if not any(f.is_file() for f in d.rglob("*"))] == []  # none empty
    entries = [json.loads(f.read_text()) for f in root.glob(f"{MANIFEST_DIR}/*.json")]
    assert set(_snapshot(root)) == {e["identity"]["partition"] for e in entries}
    assert len(entries) == counts["done"]
    deadline = time.monotonic() + 10  # the workers (and fork server) go with the driver
    while _live_in_group(p.pid):
        assert time.monotonic() < deadline, _live_in_group(p.pid)
        time.sleep(0.05)
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["counts"]["skipped"] == counts["done"]
    # a and b are the same bytes: whichever run wrote each, their cells must agree
    snap = _snapshot(root)
    assert len(snap) == 6
    for pol in ("lru-v6.8", "usage-v2", "none"):
        (ta, ra), (tb, rb) = (
            snap[f"policy={pol}/kernel=default/preset=fixed-v0/trace={t}"] for t in "ab"
        )
        assert ta.num_rows > 17000 and ta.equals(tb)
        assert {**ra, "trace_path": None} == {**rb, "trace_path": None}


def test_progress_counts(tmp_path):
    cells = cells_from_args([str(SMALL[0])], ["none", "lru-v6.8", "usage-v2"])
    seen = []

    def record(s):
        seen.append((s.total, s.skipped, s.done, s.failed, s.running, s.eta_s()))

    run_sweep(cells[:1], tmp_path / "ds", jobs=1)
    run_sweep(cells, tmp_path / "ds", jobs=2, progress=record)
    assert seen[0][:4] == (3, 1, 0, 0) and seen[0][5] is None  # nothing ran yet: no ETA
    assert seen[-1] == (3, 1, 2, 0, 0, 0.0)
    done = [s[2] for s in seen]
    assert done == sorted(done) and all(0 <= s[4] <= 2 for s in seen)


def test_hostile_grids(tmp_path):
    g = tmp_path / "grid.toml"
    g.write_text(
        '[predict]\nv = {start = 1, stop = 10000}\nd = {start = 1, stop = 100}\npreset = "v6.10"\n'
    )
    with pytest.raises(ConfigError, match="1,000,000 cells"):
        cells_from_toml(g)
    g.write_text('[predict]\nv = 1\npreset = "v6.10"\nhost_cpus = -3\n')
    with pytest.raises(ConfigError, match="host_cpus"):
        cells_from_toml(g)
    long = tmp_path / ("x" * 200 + ".msgpack")
    shutil.copy(SMALL[0], long)
    (c,) = cells_from_args([str(long)], ["none"])
    assert len(c.trace) == 100 and c.trace.startswith("xxx")
    r = run_sweep([c], tmp_path / "ds", jobs=1)
    assert r.count("done") == 1


def test_worker_with_another_version_fails_the_cell(tmp_path):
    from dataclasses import replace

    from gictools.sweep.cell import run_cell

    (c,) = cells_from_args([str(SMALL[0])], ["none"])
    r = run_cell(replace(c, gictools_version="0.0.9"), str(tmp_path))
    assert r["status"] == "failed" and "same version on every worker" in r["error"]
    assert not list(tmp_path.rglob("*.parquet"))


def test_scheduler_address_checked():
    from gictools.sweep.run import check_scheduler_address

    for ok in (
        "tcp://10.0.0.1:8786",
        "sched.example:8786",
        "tls://[::1]:8786",
        "inproc://1.2.3.4/5/1",
    ):
        check_scheduler_address(ok)
    for bad in ("bogus", "tcp://host", "http://host:80", "tcp://host:80/x", ""):
        with pytest.raises(ConfigError, match="tcp://HOST:PORT"):
            check_scheduler_address(bad)
    r = runner.invoke(
        app,
        ["sweep", "-t", str(SMALL[0]), "-j", "2", "-o", "unused"],
        env={"DASK_SCHEDULER_ADDRESS": "tcp://10.0.0.1:8786"},
    )
    assert r.exit_code == 2 and "give one" in r.stderr


def test_documented_grid_is_valid(tmp_path):
    """The TOML grid in docs/sweep.md expands to the cells its comments promise."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "sweep.md").read_text()
    toml = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "captures").mkdir()
    for t in TRACES.glob("*.msgpack"):
        shutil.copy(t, tmp_path / "captures" / t.name)
    g = tmp_path / "grid.toml"
    g.write_text(toml)
    cells = cells_from_toml(g)
    rep = [c for c in cells if c.kind == "replay"]
    pre = [c for c in cells if c.kind == "predict"]
    assert len(rep) == 3 * 3 * 2 * 3 and {c.host_cpus for c in rep} == {64}
    assert sorted({c.workload[0] for c in pre}) == [1, 4, 16, 64]
    assert sorted({c.workload[1] for c in pre}) == [1, 6, 11, 16]
    assert len(pre) == 4 * 4 * 2 * 1 * 2 * 2
