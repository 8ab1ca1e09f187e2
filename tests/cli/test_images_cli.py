"""Issue 25 point 6: images for a kernel developer. inspect --ignore-checksum reads
hand-edited tables; restore names the first bad entry and points at inspect; inspect --json
and restore --json give problems as data (table, index, address, errno)."""

import json
from pathlib import Path

from model_checks import build_its_state
from typer.testing import CliRunner

from gictools.cli import app
from gictools.image import dump_image

try:  # the layout layer (issue 21 point 3), or where it was before
    from gictools.entries import pack_ite
except ImportError:
    from gictools.abi.entries import pack_ite

runner = CliRunner()
DOC = Path(__file__).parent.parent.parent / "docs" / "image-format.md"


def _its_with_device_5():
    vm, its = build_its_state(
        (1, False, 1, [(5, 4, [(0, 8192, 0), (1, 8193, 0), (2, 8194, 0)])], [])
    )
    assert vm.save_pending_tables() == 0 and its.save_tables() == 0
    return vm, its.devices[5].itt_addr


def _bad_image(path):
    """ITE 1 with pINTID 100 (< 8192: -EINVAL), ITE 2 naming collection 7 (unmapped)."""
    vm, itt = _its_with_device_5()
    vm.memory.write_u64(itt + 8, pack_ite(1, 100, 0))
    vm.memory.write_u64(itt + 16, pack_ite(0, 8194, 7))
    path.write_bytes(dump_image(vm, flush=False))
    return itt


def test_restore_names_the_first_bad_entry_and_suggests_inspect(tmp_path):
    img = tmp_path / "bad.img"
    itt = _bad_image(img)
    r = runner.invoke(app, ["restore", str(img)])
    assert r.exit_code == 2 and r.stdout == ""
    assert len(r.stderr.splitlines()) == 1
    assert (
        f"first bad entry: ITS 0 ITT of device 5 entry 1 at {itt + 8:#x}: "
        "ITE 1 of device 5: pINTID 100 < 8192 (-EINVAL)" in r.stderr
    )
    assert f"`gictools inspect {img}` lists every problem" in r.stderr


def test_problems_as_json(tmp_path):
    img = tmp_path / "bad.img"
    itt = _bad_image(img)
    want = [
        {"its": 0, "table": "ITT of device 5", "index": 1, "address": itt + 8, "errno": 22},
        {"its": 0, "table": "ITT of device 5", "index": 2, "address": itt + 16, "errno": 22},
    ]
    keys = ("its", "table", "index", "address", "errno")
    r = runner.invoke(app, ["inspect", str(img), "--json"])
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc["schema"] == "gictools.inspect/1" and doc["ok"] is False
    assert [{k: p[k] for k in keys} for p in doc["problems"]] == want
    assert doc["problems"][0]["error"] == "-EINVAL"
    r = runner.invoke(app, ["restore", str(img), "--json"])
    assert r.exit_code == 2
    doc = json.loads(r.stdout)
    assert doc["schema"] == "gictools.restore/1" and doc["ok"] is False
    assert [{k: p[k] for k in keys} for p in doc["problems"]] == want


def test_a_good_image_has_no_problems(tmp_path):
    vm, _ = _its_with_device_5()
    img = tmp_path / "good.img"
    img.write_bytes(dump_image(vm, flush=False))
    for verb in ("inspect", "restore"):
        r = runner.invoke(app, [verb, str(img), "--json"])
        assert r.exit_code == 0, r.output
        doc = json.loads(r.stdout)
        assert doc["ok"] is True and doc["problems"] == []


def test_ignore_checksum_reads_hand_edited_tables(tmp_path):
    """Edit an ITE in the file itself (as a developer with a hex editor would): the digest
    no longer matches; --ignore-checksum lets the restore walk judge the edit."""
    vm, itt = _its_with_device_5()
    data = bytearray(dump_image(vm, flush=False))
    old = vm.memory.read(itt + 8, 8)
    assert data.count(old) == 1
    at = data.index(old)
    data[at : at + 8] = pack_ite(1, 100, 0).to_bytes(8, "little")
    img = tmp_path / "edited.img"
    img.write_bytes(bytes(data))
    r = runner.invoke(app, ["inspect", str(img)])
    assert r.exit_code == 2 and "checksum mismatch" in r.stderr
    r = runner.invoke(app, ["inspect", str(img), "--ignore-checksum"])
    assert r.exit_code == 1, r.output
    assert "checksum not checked" in r.stdout
    assert f"MALFORMED at {itt + 8:#x}: ITE 1 of device 5: pINTID 100 < 8192" in r.stdout


def test_image_format_is_documented():
    """docs/image-format.md states the layout the code writes (header fields and records)."""
    from gictools import image

    text = DOC.read_text()
    assert image.MAGIC.rstrip(b"\0").decode() in text
    for record in ("vm", "redist", "its", "mem", "end"):
        assert f'`["{record}"' in text, record
    assert f"{image.HEADER_SIZE}" in text and "SHA-256" in text
    assert "--ignore-checksum" in text
