"""Sweep workers under real signals: a SIGKILLed worker fails only its own cell (with its
`.failed.json`); SIGTERM to the driver stops every worker, leaves no temp file and no
resource_tracker warning, and the driver dies by SIGTERM."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from procwalk import alive, below, descendants

ROOT = Path(__file__).parents[2]
TRACE = ROOT / "traces" / "lpi-stress-v1-d1-e17.msgpack"
DRIVER = Path(__file__).parent / "sweep_driver.py"


def _workers(driver):
    """The fork server's children (the cells' workers)."""
    return below(driver, 2)


def _start(tmp_path):
    fifo = tmp_path / "stuck-trace"
    os.mkfifo(fifo)
    out = tmp_path / "ds"
    p = subprocess.Popen(
        [sys.executable, str(DRIVER), str(TRACE), str(fifo), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},  # this checkout's gictools
    )
    # wait for the two real cells to finish: then only the stuck worker is left
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = list((out / "_manifest").glob("*.json")) if (out / "_manifest").is_dir() else []
        ws = _workers(p.pid)
        if len([d for d in done if not d.name.endswith(".failed.json")]) == 2 and len(ws) == 1:
            return p, out, ws[0]
        assert p.poll() is None, p.communicate()
        time.sleep(0.05)
    p.kill()
    raise AssertionError("the sweep did not reach its stuck cell")


def _temps(root):
    return [str(q) for q in Path(root).rglob("*") if ".gictools-" in q.name]


def test_killed_worker_fails_only_its_cell(tmp_path):
    p, out, worker = _start(tmp_path)
    os.kill(worker, signal.SIGKILL)
    stdout, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    res = json.loads(stdout)
    assert sorted(s for s, _ in res.values()) == ["done", "done", "failed"]
    (failed,) = [(k, e) for k, (s, e) in res.items() if s == "failed"]
    assert "trace=stuck-trace" in failed[0]
    assert failed[1].startswith("worker killed by SIGKILL")  # FAILED <partition>: ...
    (rec,) = (out / "_manifest").glob("*.failed.json")
    assert json.loads(rec.read_text())["error"] == failed[1]
    assert _temps(out) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signal_to_driver_stops_workers_no_temps_no_warnings(tmp_path, sig):
    p, out, worker = _start(tmp_path)
    everyone = descendants(p.pid)
    t0 = time.monotonic()
    p.send_signal(sig)
    stdout, err = p.communicate(timeout=30)
    assert time.monotonic() - t0 < 5
    assert p.returncode == (130 if sig == signal.SIGINT else -sig), err
    assert err == "interrupted\n"  # no resource_tracker or other warning
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline and any(alive(q) for q in everyone):
        time.sleep(0.02)
    assert not any(alive(q) for q in everyone)
    assert _temps(out) == []
    assert not list((out / "_manifest").glob("*.failed.json"))  # stopped, not failed
