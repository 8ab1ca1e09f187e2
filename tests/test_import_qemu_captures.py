"""The three real QEMU captures import and replay with zero command errors and zero failed
expectations for every cache policy; bad inputs fail with a line number and no output."""

import gzip
from pathlib import Path

import pytest

from gictools.errors import ImportFormatError
from gictools.replay import replay
from gictools.trace.import_qemu import import_qemu

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "qemu"
CAPTURES = ["smp2-traffic-affinity", "smp2-rebind", "smp4-hotplug"]
POLICIES = ["none", "lru-v6.8", "usage-v2", "per-its-v6.10"]


def _import(name, out):
    f = FIX / name
    return import_qemu(Path(f"{f}.trace.log.gz"), out, cmdq=Path(f"{f}.cmdq.txt"),
                       lpiprop=Path(f"{f}.lpiprop.txt"), cmdline=Path(f"{f}.cmdline.txt"))


@pytest.mark.parametrize("name", CAPTURES)
def test_capture_replays_clean_under_every_policy(tmp_path, name):
    out = tmp_path / "t.msgpack"
    _import(name, out)
    reports = replay(out, POLICIES)
    for r in reports:
        assert r.msis > 2000 and r.delivered == r.msis, r.policy
        assert not r.command_errors, (r.policy, r.command_errors)
        assert r.failure_count == 0, (r.policy, r.failures[:3])
    assert len({(r.delivered, r.msis) for r in reports}) == 1


def test_bad_inputs_name_the_line_and_leave_no_output(tmp_path):
    src = gzip.decompress((FIX / "smp2-rebind.trace.log.gz").read_bytes()).splitlines(True)
    out = tmp_path / "t.msgpack"
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    with pytest.raises(ImportFormatError):
        import_qemu(empty, out)
    cut = tmp_path / "cut.log.gz"
    cut.write_bytes((FIX / "smp2-rebind.trace.log.gz").read_bytes()[:20000])
    with pytest.raises(ImportFormatError):
        import_qemu(cut, out)
    i = next(k for k, line in enumerate(src) if b"gicv3_its_cmd_mapti" in line)
    bad = tmp_path / "bad.log"
    bad.write_bytes(b"".join(src[:i]) + src[i][:40] + b"\n" + b"".join(src[i + 1:]))
    with pytest.raises(ImportFormatError) as e:
        import_qemu(bad, out)
    assert e.value.line is not None
    assert not out.exists()
