"""replay --jobs under real signals: a worker that dies is one line naming its policies and
the cause (exit 2), the others are stopped, no temporary file stays; SIGTERM/SIGINT/SIGHUP
to the parent stop every worker within a second."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from procwalk import alive, children

ROOT = Path(__file__).parents[2]
POLICIES = ["none", "lru-v6.8", "usage-v2"]


@pytest.fixture(scope="module")
def big_trace(tmp_path_factory):
    from gictools.trace.gen_lpi_stress import generate

    p = tmp_path_factory.mktemp("trace") / "big.msgpack"
    generate(p, 1, 1, 17, 100_000)  # 1.7M MSIs: a few seconds per policy
    return p


def _start(trace, out):
    args = [sys.executable, "-m", "gictools", "replay", str(trace), "-o", str(out), "-j", "3"]
    for c in POLICIES:
        args += ["-c", c]
    p = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ws = children(p.pid)
        if len(ws) == 3:
            time.sleep(0.3)  # writing their parts
            return p, ws
        assert p.poll() is None, p.communicate()
        time.sleep(0.02)
    p.kill()
    raise AssertionError("no workers")


def _temps(d):
    return [n for n in os.listdir(d) if ".gictools-" in n or n.startswith(".out")]


@pytest.mark.slow
def test_killed_worker_is_one_line_and_stops_the_others(big_trace, tmp_path):
    out = tmp_path / "out.parquet"
    p, ws = _start(big_trace, out)
    os.kill(ws[1], signal.SIGKILL)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 2
    assert err.splitlines()[-1].startswith("gictools: error: replay of policy ")
    assert ": worker killed by SIGKILL" in err
    assert "Traceback" not in err
    assert not any(alive(w) for w in ws)
    assert _temps(tmp_path) == [] and not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_to_parent_stops_workers_within_a_second(big_trace, tmp_path, sig):
    out = tmp_path / "out.parquet"
    p, ws = _start(big_trace, out)
    p.send_signal(sig)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline and any(alive(w) for w in ws):
        time.sleep(0.02)
    assert not any(alive(w) for w in ws), "workers outlived the stop by a second"
    _, err = p.communicate(timeout=30)
    assert "Traceback" not in err
    if sig != signal.SIGINT:
        assert p.returncode == -sig
    assert _temps(tmp_path) == [] and not out.exists()
