"""Issue 25 point 9: a Parquet file of several traces (`replay A B -o F`) keeps each
trace's VM (and kernels, SHA-256), not only the first's (docs/replay-output.md)."""

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from gictools.cli import app
from gictools.trace.reader import TraceReader

runner = CliRunner()
TRACES = Path(__file__).resolve().parents[2] / "traces"
A, B = TRACES / "lpi-stress-v1-d1-e17.msgpack", TRACES / "lpi-stress-v16-d16-e16.msgpack"


def _value(v):
    try:
        return json.loads(v)
    except ValueError:  # gictools_version, one trace's trace_sha256: plain text
        return v.decode()


def _meta(path):
    return {
        k.decode(): _value(v)
        for k, v in pq.read_metadata(path).metadata.items()
        if k != b"ARROW:schema"
    }


def _header_vm(path):
    with TraceReader(path) as r:
        return r.header["vm"]


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_every_trace_keeps_its_vm(tmp_path, jobs):
    pols = ["--cache", "lru-v6.8", "--cache", "per-its-v6.10"]
    both, one_a, one_b = (tmp_path / f"{n}.parquet" for n in ("ab", "a", "b"))
    for traces, out in (([A, B], both), ([A], one_a), ([B], one_b)):
        r = runner.invoke(app, ["replay", *map(str, traces), *pols, "-j", jobs, "-o", str(out)])
        assert r.exit_code == 0, r.output
    m, ma, mb = _meta(both), _meta(one_a), _meta(one_b)
    vms = [_header_vm(A), _header_vm(B)]
    assert vms[0]["vcpus"] == 1 and vms[1]["vcpus"] == 16  # two different VMs
    assert [t["vm"] for t in m["traces"]] == vms
    assert [t["name"] for t in m["traces"]] == [str(A), str(B)]
    assert m["traces"] == ma["traces"] + mb["traces"]
    # the per-trace keys: lists in trace order, each element the one-trace file's value
    assert m["vm"] == [ma["vm"], mb["vm"]] == vms
    assert m["kernel"] == [ma["kernel"], mb["kernel"]]
    assert m["trace_sha256"] == [ma["trace_sha256"], mb["trace_sha256"]]
    assert m["trace_sha256"] == [hashlib.sha256(p.read_bytes()).hexdigest() for p in (A, B)]
    for k in ("cache_policy", "latency_preset", "latency_parameters", "gictools_version"):
        assert m[k] == ma[k] == mb[k]
