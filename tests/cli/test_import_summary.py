"""Issue 25 point 9: the `import qemu` summary is plain text, no Python dict or list reprs
({'delivered_after_invall': 256} became '256 LPI config bytes (256 delivered_after_invall)')."""

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gictools.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
QEMU, KUT = ROOT / "fixtures" / "qemu", ROOT / "fixtures" / "kut"


def _args(d, name, *, lpiprop=True):
    a = [str(d / f"{name}.trace.log.gz"), "--cmdq", str(d / f"{name}.cmdq.txt")]
    a += ["--cmdline", str(d / f"{name}.cmdline.txt")]
    return a + (["--lpiprop", str(d / f"{name}.lpiprop.txt")] if lpiprop else [])


MIGRATION = _args(KUT, "its-pending-migration-src") + [
    "--migrate-to",
    str(KUT / "its-pending-migration-dst.trace.log.gz"),
    "--dst-cmdq",
    str(KUT / "its-pending-migration-dst.cmdq.txt"),
    "--dst-lpiprop",
    str(KUT / "its-pending-migration-dst.lpiprop.txt"),
    "--dst-cmdline",
    str(KUT / "its-pending-migration-dst.cmdline.txt"),
]

CASES = {
    "smp2-rebind": (
        _args(QEMU, "smp2-rebind"),
        [
            "  reconstructed: 1 device-table level-2 page, 18 LPI config bytes (8 delivered_after,"
            " 5 masked_before_discard, 3 final_table, 2 unmask), 0 pending bits",
            '  skipped 1 other line: 1 "qemu: gicv3_dist_read:"',
            "  QEMU-only semantics / anomalies: none",
        ],
    ),
    "migration": (
        MIGRATION,
        [
            "  reconstructed: 0 device-table level-2 pages, 256 LPI config bytes"
            " (256 delivered_after_invall), 256 pending bits",
        ],
    ),
    "introspection": (
        _args(KUT, "its-introspection", lpiprop=False),
        [
            "  reconstructed: 0 device-table level-2 pages, 0 LPI config bytes, 0 pending bits",
            '  skipped 6 other lines: 3 "qemu: gicv3_its_write:", 3 "qemu: its_writel:"',
            "  QEMU-only semantics / anomalies: 3 its_access_qemu_refused_kvm_accepts",
        ],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_import_summary_is_plain_text(tmp_path, case):
    args, want = CASES[case]
    r = runner.invoke(app, ["import", "qemu", *args, "-o", str(tmp_path / "t.msgpack")])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    for w in want:
        assert w in lines
    for ln in lines:  # no {...}, [...] or 'key': of a Python repr
        assert not re.search(r"[{}\[\]]|'\w[^']*':", ln), ln
