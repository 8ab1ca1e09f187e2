"""Replay engine: the per-event MSI path equals the block path, row groups per policy and
trace, several traces per run, command rows, unknown expectations, error classes."""

import json
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import gictools.replay as replay_mod
import gictools.replay.block as replay_block
from gictools.errors import ConfigError
from gictools.replay import replay
from gictools.trace.gen_lpi_stress import generate
from gictools.trace.qemu import import_qemu
from gictools.trace.writer import TraceWriter

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "qemu"
POLICIES = ["none", "lru-v6.8", "usage-v2", "per-its-v6.10"]


@pytest.fixture(scope="module")
def hotplug(tmp_path_factory):
    """An imported capture: one MSI per record, MAPTI/MOVI/DISCARD/INV between."""
    name = "smp2-rebind"
    out = tmp_path_factory.mktemp("imp") / f"{name}.msgpack"
    import_qemu(
        FIX / f"{name}.trace.log.gz",
        out,
        cmdq=FIX / f"{name}.cmdq.txt",
        lpiprop=FIX / f"{name}.lpiprop.txt",
        cmdline=FIX / f"{name}.cmdline.txt",
    )
    return out


@pytest.fixture(scope="module")
def stress(tmp_path_factory):
    p = tmp_path_factory.mktemp("g") / "e17.msgpack"
    generate(p, vcpus=2, devices=2, events=17, iterations=4)
    return p


def _by_policy(path):
    t = pq.read_table(path)
    out = {}
    for pol in set(t["cache_policy"].to_pylist()):
        sub = t.filter(pc.equal(t["cache_policy"].cast("string"), pol)).sort_by("seq")
        out[pol] = sub.drop_columns(["cache_policy"]).to_pydict()
    return out


def test_per_event_path_equals_block_path(hotplug, tmp_path, monkeypatch):
    """Every MSI through inject_block (the path every record took before) and the per-event
    vm.signal_msi path give the same rows and reports under every policy."""
    fast = tmp_path / "fast.parquet"
    rf = replay(hotplug, POLICIES, out=fast)
    monkeypatch.setattr(replay_block, "SCALAR_MAX", 1)
    slow = tmp_path / "slow.parquet"
    rs = replay(hotplug, POLICIES, out=slow)
    assert [r.as_dict() for r in rf] == [r.as_dict() for r in rs]
    assert all(r.failure_count == 0 and r.msis == rf[0].msis > 1000 for r in rf)
    a, b = _by_policy(fast), _by_policy(slow)
    assert sorted(a) == sorted(POLICIES)
    for pol in POLICIES:
        assert a[pol] == b[pol], pol


def test_each_policy_in_its_own_row_groups(stress, tmp_path):
    out = tmp_path / "o.parquet"
    replay(stress, POLICIES, out=out)
    f = pq.ParquetFile(out)
    seen = []
    for i in range(f.num_row_groups):
        vals = set(f.read_row_group(i, columns=["cache_policy"])["cache_policy"].to_pylist())
        assert len(vals) == 1
        seen += vals
    assert sorted(set(seen)) == sorted(POLICIES)
    # a predicate on cache_policy reads only that policy's rows
    t = pq.read_table(out, filters=[("cache_policy", "=", "usage-v2")])
    assert set(t["cache_policy"].to_pylist()) == {"usage-v2"}
    assert t.num_rows == pq.read_metadata(out).num_rows // 4


def test_several_traces_one_file(stress, hotplug, tmp_path):
    out = tmp_path / "two.parquet"
    reps = replay([stress, hotplug], ["lru-v6.8", "per-its-v6.10"], out=out)
    assert [(Path(r.trace).name, r.policy) for r in reps] == [
        ("e17.msgpack", "lru-v6.8"),
        ("e17.msgpack", "per-its-v6.10"),
        ("smp2-rebind.msgpack", "lru-v6.8"),
        ("smp2-rebind.msgpack", "per-its-v6.10"),
    ]
    t = pq.read_table(out)
    md = pq.read_metadata(out).metadata
    traces = json.loads(md[b"traces"])
    assert [Path(x["name"]).name for x in traces] == ["e17.msgpack", "smp2-rebind.msgpack"]
    assert [x["sha256"] for x in traces] == [reps[0].trace_sha256, reps[2].trace_sha256]
    assert len(set(x["sha256"] for x in traces)) == 2
    for r in reps:
        sub = t.filter(
            pc.and_(
                pc.equal(t["trace"].cast("string"), r.trace),
                pc.equal(t["cache_policy"].cast("string"), r.policy),
            )
        )
        assert sub.num_rows == r.events
        assert sub["seq"].to_pylist() == list(range(r.events))  # seq counts within a trace


def test_command_rows_name_collection_and_target(stress, tmp_path):
    out = tmp_path / "o.parquet"
    replay(stress, ["per-its-v6.10"], out=out)
    t = pq.read_table(out)
    cmds = t.filter(pc.equal(t["op"].cast("string"), "command")).to_pylist()
    mapc = [r for r in cmds if r["command"] == "MAPC"]
    # as-measured routing: the selftest's guest names vCPU 0 in every MAPC
    assert [(r["icid"], r["vcpu"]) for r in mapc] == [(0, 0), (1, 0)]
    mapti = [r for r in cmds if r["command"] == "MAPTI"]
    assert mapti and all(r["icid"] is not None for r in mapti)
    assert all(r["vcpu"] is not None for r in mapti)
    assert all(r["icid"] is None for r in cmds if r["command"] == "MAPD")


def test_unknown_expectation_kinds_pass_unchecked_and_counted(tmp_path):
    p = tmp_path / "u.msgpack"
    with TraceWriter(p, vm={"vcpus": 1, "itses": [{"base": 0x0800_0000}]}) as w:
        w.msi(0, 1, 2)
        w.expect("future_kind", {"anything": 1})
        w.expect("future_kind", {})
        w.expect("other", {"x": [1, 2]})
        w.expect("msi", {"ret": -16, "error": -16})
    out = tmp_path / "u.parquet"
    (r,) = replay(p, out=out)
    assert r.failure_count == 0
    assert r.unchecked == {"future_kind": 2, "other": 1}
    assert r.as_dict()["unchecked_expectations"] == {"future_kind": 2, "other": 1}
    t = pq.read_table(out)
    exp = t.filter(pc.equal(t["op"].cast("string"), "expect"))
    assert exp["error"].to_pylist() == [None, None, None, 0]


def test_bad_kernel_is_the_users_error_not_the_files(stress):
    with pytest.raises(ConfigError, match="not modelled"):
        replay(stress, kernel="5.4")
    with pytest.raises(ConfigError, match=r"X\.Y"):
        replay(stress, kernel="six")


# --- the replay command ------------------------------------------------------------------


def _cli(*args):
    from typer.testing import CliRunner

    from gictools.cli import app

    return CliRunner().invoke(app, ["replay", *map(str, args)])


def test_cli_output_directory_refused_before_any_work(stress, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("replayed although -o is a directory")

    monkeypatch.setattr(replay_mod, "run_replayers", boom)
    r = _cli(stress, "-o", tmp_path)
    assert r.exit_code == 2 and "is a directory" in r.output
    r = _cli(stress, "-o", tmp_path / "missing" / "o.parquet")
    assert r.exit_code == 2 and "does not exist" in r.output
    before = stress.read_bytes()
    r = _cli(stress, "-o", stress)
    assert r.exit_code == 2 and "is the same file as the input" in r.output
    assert stress.read_bytes() == before


def test_cli_json_names_preset_traces_and_hashes(stress, hotplug):
    r = _cli(stress, hotplug, "-c", "lru-v6.8", "--json", "--preset", "v6.10")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["latency_preset"] == "v6.10"
    assert [Path(t["name"]).name for t in d["traces"]] == ["e17.msgpack", "smp2-rebind.msgpack"]
    assert all(len(t["sha256"]) == 64 for t in d["traces"])
    assert [x["trace"] for x in d["reports"]] == [t["name"] for t in d["traces"]]
    assert all(x["latency_preset"] == "v6.10" for x in d["reports"])
    assert d["events"] == sum(x["events"] for x in d["reports"])


def test_cli_summary_names_the_fixed_preset_and_the_rate(stress):
    plain = _cli(stress, "-c", "lru-v6.8")
    named = _cli(stress, "-c", "lru-v6.8", "--preset", "fixed-v0")
    assert plain.exit_code == named.exit_code == 0
    for r in (plain, named):
        assert "latency preset: fixed-v0" in r.stdout
        assert "events/s" in r.stdout
    strip = [ln for ln in plain.stdout.splitlines() if "events/s" not in ln]
    assert strip == [ln for ln in named.stdout.splitlines() if "events/s" not in ln]
    other = _cli(stress, "-c", "lru-v6.8", "--preset", "v6.10")
    assert "latency preset: v6.10" in other.stdout


def test_policies_in_one_run_equal_one_run_each(stress, tmp_path):
    """Policies replay independently: one run with all four writes, per policy, exactly the
    rows of four one-policy runs."""
    out = tmp_path / "all.parquet"
    replay(stress, POLICIES, out=out)
    together = _by_policy(out)
    for pol in POLICIES:
        one = tmp_path / f"{pol}.parquet"
        replay(stress, [pol], out=one)
        assert _by_policy(one)[pol] == together[pol], pol


def test_policies_in_parallel_processes_write_the_same_file(stress, hotplug, tmp_path):
    """jobs=2: the policies dealt into two processes, parts joined without re-encoding; the same rows,
    metadata and reports as one process, and no part file left behind."""
    one, par = tmp_path / "one.parquet", tmp_path / "par.parquet"
    r1 = replay([stress, hotplug], POLICIES, out=one)
    r2 = replay([stress, hotplug], POLICIES, out=par, jobs=2)
    assert [r.as_dict() for r in r1] == [r.as_dict() for r in r2]
    assert pq.read_metadata(one).metadata == pq.read_metadata(par).metadata
    import hashlib
    import json as _json

    shas = [hashlib.sha256(Path(t).read_bytes()).hexdigest() for t in (stress, hotplug)]
    assert _json.loads(pq.read_metadata(par).metadata[b"trace_sha256"]) == shas
    assert [r.trace_sha256 for r in r2] == [shas[0]] * len(POLICIES) + [shas[1]] * len(POLICIES)
    a, b = pq.read_table(one), pq.read_table(par)
    assert a.schema == b.schema and a.num_rows == b.num_rows
    assert pq.ParquetFile(one).num_row_groups == pq.ParquetFile(par).num_row_groups

    def rows(t):
        key = [pc.cast(t[c], "string") for c in ("trace", "cache_policy")]
        t = t.append_column("k0", key[0]).append_column("k1", key[1])
        return t.sort_by([("k0", "ascending"), ("k1", "ascending"), ("seq", "ascending")])

    assert rows(a).equals(rows(b))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.parquet", "par.parquet"]


def test_the_jobs_hashing_thread_leaves_errors_to_the_parent(stress, tmp_path):
    """The --jobs parent hashes in a thread; a trace that vanished is not a thread
    traceback: the hash is left undone, and asking for it raises in the caller."""
    import shutil

    import gictools.replay as R
    import gictools.replay.jobs as replay_jobs

    t = tmp_path / "t.msgpack"
    shutil.copy(stress, t)
    (rp,) = R.open_replayers([t])
    rp.close()
    t.unlink()
    replay_jobs._hash_quietly([rp])
    with pytest.raises(FileNotFoundError):
        _ = rp.sha256
