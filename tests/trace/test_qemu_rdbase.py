"""MAPC's RDbase in a QEMU capture: QEMU keeps and logs a 16-bit processor number
(process_mapc: RDbase & RDBASE_PROCNUM_MASK), while the command in the queue keeps all its
bits. A logged RDbase beyond 16 bits is not a QEMU capture: a line-numbered error, exit 2."""

import re

from typer.testing import CliRunner

from gictools.cli import app
from gictools.cmdlayout import encode_command
from gictools.trace.qemu import QEMU_RDBASE_PROCNUM_MASK, convert

runner = CliRunner()


def _line(ev, text, i, tid=7):
    return f"{tid}@1000.{i:06d}:{ev} {text}\n"


def _mapc_log(rdbase):
    boot = _line(
        "gicv3_redist_write",
        "GICv3 redistributor 0x0 write: offset 0x78 data 0x425c0000 size 8 secure 0",
        0,
    ) + _line(
        "gicv3_redist_write",
        "GICv3 redistributor 0x0 write: offset 0x0 data 0x3 size 4 secure 0",
        1,
    )
    return (
        boot
        + _line("gicv3_its_process_command", "GICv3 ITS: processing command at offset 0x0: 0x9", 2)
        + _line("gicv3_its_cmd_mapc", f"GICv3 ITS: command MAPC ICID 0x1 RDbase {rdbase:#x} V 1", 3)
    )


def test_the_processor_number_is_gicr_typers():
    assert QEMU_RDBASE_PROCNUM_MASK == 0xFFFF  # RDBASE_PROCNUM_LENGTH = 16


def test_logged_rdbase_beyond_16_bits_is_an_error(tmp_path):
    log = tmp_path / "m.log"
    log.write_text(_mapc_log(0x10001))
    cl = tmp_path / "c.txt"
    cl.write_text("qemu -smp 4\n")
    out = tmp_path / "m.msgpack"
    r = runner.invoke(app, ["import", "qemu", str(log), "--cmdline", str(cl), "-o", str(out)])
    assert r.exit_code == 2, r.output
    assert re.search(
        r"line 4: .*RDbase 0x10001 does not fit QEMU's 16-bit processor number", r.output
    ), r.output
    assert not out.exists()


def test_queued_rdbase_high_bits_are_masked_as_qemu_does(tmp_path):
    """The dumped command keeps RDbase 0x10003, QEMU logged 3: the same command, replayed
    with the guest's bits."""
    raw = encode_command("MAPC", ICID=1, RDbase=0x10003, V=1)
    words = [int.from_bytes(raw[i : i + 8], "little") for i in range(0, 32, 8)]
    cmdq = tmp_path / "m.cmdq.txt"
    cmdq.write_text("0x0 " + " ".join(f"{w:#x}" for w in words) + "\n")
    log = tmp_path / "m.log"
    log.write_text(_mapc_log(0x3))
    vm, meta, recs = convert(log, cmdq=cmdq)
    assert [r[-1] for r in recs if r[0] == "command"] == [raw]
    assert meta["emitted"]["commands_from_cmdq"] == 1
