"""Every value read from a QEMU log is hostile (issue 10, item 4): bounded, and a bad one is a
line-numbered error with exit code 2 and no output file, never a traceback or a huge
allocation."""

import re

import pytest
from typer.testing import CliRunner

from gictools.cli import app
from gictools.trace import format as F
from gictools.trace.qemu import convert
from gictools.trace.reader import TraceReader

runner = CliRunner()


def line(ev, text, i=0, tid=7):
    return f"{tid}@1000.{i:06d}:{ev} {text}\n"


def redist(cpu, off, data, size=8, i=0):
    return line(
        "gicv3_redist_write",
        f"GICv3 redistributor {cpu:#x} write: offset {off:#x} data {data:#x} size {size} secure 0",
        i,
    )


def cmd(slot, opcode, ev, text, i=0):
    return line(
        "gicv3_its_process_command",
        f"GICv3 ITS: processing command at offset {slot:#x}: {opcode:#x}",
        i,
    ) + line(ev, "GICv3 ITS: command " + text, i + 1)


BOOT = redist(0, 0x78, 0x425C0000) + redist(0, 0x0, 0x3, 4, 1)

CASES = {
    # name: (log text, extra CLI args (name, content) or None, line, message pattern)
    "redistributor 0x1000": (
        redist(0x1000, 0x0, 1, 4),
        None,
        1,
        r"redistributor 0x1000: a VM has at most 4096",
    ),
    "CPU 0x5000 acknowledges": (
        BOOT + line("gicv3_icc_iar1_read", "GICv3 ICC_IAR1 read cpu 0x5000 value 0x2000", 2),
        None,
        3,
        r"CPU 0x5000: a VM has at most 4096",
    ),
    "MAPD Size 0xff without a queue dump": (
        BOOT
        + cmd(0, 8, "gicv3_its_cmd_mapd", "MAPD DeviceID 0x1 Size 0xff ITT_addr 0x4000 V 1", 2),
        None,
        4,
        r"MAPD: Size: 0xff does not fit .*not a value QEMU can log",
    ),
    "ITE INTID 2^64-1": (
        BOOT
        + cmd(
            0,
            0xA,
            "gicv3_its_cmd_mapti",
            "MAPTI DeviceID 0x1 EventID 0x0 ICID 0x0 pINTID 0xffffffffffffffff",
            2,
        ),
        None,
        4,
        r"gicv3_its_cmd_mapti: argument 4 \(ffffffffffffffff\) does not fit QEMU's %x",
    ),
    "ICID beyond 16 bits": (
        BOOT + cmd(0, 9, "gicv3_its_cmd_mapc", "MAPC ICID 0x10000 RDbase 0x0 V 1", 2),
        None,
        4,
        r"MAPC: ICID: 0x10000 does not fit",
    ),
    "timestamp beyond 2^63 ns": (
        "1@99999999999.000000:gicv3_icc_iar1_read GICv3 ICC_IAR1 read cpu 0x0 value 0x1b\n",
        None,
        1,
        r"timestamp 99999999999.000000 is beyond 2\^63 ns",
    ),
    "a 40-digit number": (
        line("gicv3_icc_iar1_read", "GICv3 ICC_IAR1 read cpu 0x0 value 0x" + "f" * 40),
        None,
        1,
        r"does not match QEMU 7.2's format",
    ),
    "-smp 5000": (
        BOOT,
        ("--cmdline", "qemu -smp 5000 -m 128\n"),
        None,
        r"-smp 5000: a VM has 1..4096",
    ),
    "-m 99999T": (BOOT, ("--cmdline", "qemu -smp 1 -m 99999T\n"), None, r"-m 99999T: RAM must be"),
    "the dump has a MOVI where the log has a MAPC": (
        # fuzz campaign seed 20261205 case 195: the MAPC check read RDbase from a MOVI (KeyError)
        BOOT + cmd(0, 9, "gicv3_its_cmd_mapc", "MAPC ICID 0x0 RDbase 0x0 V 1", 2),
        ("--cmdq", "0x0000 0000001000000001 0000000000000000 0000000000000002 0\n"),
        4,
        r"the command queue dump has MOVI .* the trace MAPC .*not the same capture",
    ),
    "cmdq slot beyond a 1 MiB queue": (
        BOOT,
        ("--cmdq", "0x10000 0 0 0 0\n"),
        1,
        r"SLOT < 0x8000",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_value_exit_2_named_line_no_output(tmp_path, name):
    text, extra, lineno, pattern = CASES[name]
    log = tmp_path / "x.log"
    log.write_text(text)
    out = tmp_path / "x.msgpack"
    args = ["import", "qemu", str(log), "-o", str(out)]
    if extra:
        aux = tmp_path / "aux.txt"
        aux.write_text(extra[1])
        args += [extra[0], str(aux)]
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    where = rf"line {lineno}: " if lineno else ""
    assert re.search(where + ".*" + pattern, r.output), r.output
    assert not out.exists()


def test_propbaser_idbits_31_is_bounded_by_kvm(tmp_path):
    """IDbits 31 would be a 4 GiB table; KVM reads at most 2^16 INTIDs' bytes."""
    log = tmp_path / "p.log"
    log.write_text(redist(0, 0x70, 0x4027001F) + BOOT)
    vm, meta, recs = convert(log)
    mems = [r for r in recs if r[0] == "mem"]
    assert len(mems) == 1 and len(mems[0][4]) == (1 << 16) - 8192
    assert meta["emitted"]["lpi_config_initial_bytes"] == (1 << 16) - 8192
    out = tmp_path / "p.msgpack"
    r = runner.invoke(app, ["import", "qemu", str(log), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert sum(1 for rec in TraceReader(out) if rec[0] == F.MEM) == 1


def test_mapc_to_a_processor_the_vm_lacks(tmp_path):
    """A MAPC to PE 7 on a 4-vCPU VM (QEMU refuses it, KVM answers E_ITS_MAPC_PROCNUM_OOR) does
    not grow the VM: the -smp given wins and the command is replayed as the guest sent it."""
    log = tmp_path / "m.log"
    log.write_text(BOOT + cmd(0, 9, "gicv3_its_cmd_mapc", "MAPC ICID 0x1 RDbase 0x7 V 1", 2))
    cl = tmp_path / "c.txt"
    cl.write_text("qemu -smp 4\n")
    vm, meta, recs = convert(log, cmdline=cl)
    assert vm["vcpus"] == 4
    assert meta["qemu_only_semantics_and_anomalies"] == {"mapc_procnum_oor": 1}
    assert [r[0] for r in recs].count("command") == 1


def test_many_distinct_skipped_names_keep_the_header_readable(tmp_path):
    """70,000 lines of distinct unknown names: counted under at most 257 keys, so the header's
    maps stay within what a reader accepts (2^16 entries)."""
    log = tmp_path / "n.log"
    log.write_text(BOOT + "".join(f"other_event_{i} x\n" for i in range(70_000)))
    out = tmp_path / "n.msgpack"
    r = runner.invoke(app, ["import", "qemu", str(log), "-o", str(out)])
    assert r.exit_code == 0, r.output
    skipped = TraceReader(out).header["metadata"]["skipped_lines"]
    assert len(skipped) == 257 and sum(skipped.values()) == 70_000  # 256 names + the rest


def test_mutated_kut_logs_fail_only_with_import_errors(tmp_path):
    """Fixed-seed mutations of a real capture (numbers replaced by random ones of any length,
    lines dropped, duplicated, cut, swapped): the import succeeds or raises ImportFormatError
    with a line number; never another exception."""
    import gzip
    import random
    from pathlib import Path

    from gictools.errors import ImportFormatError
    from gictools.trace.qemu import import_qemu

    src = Path(__file__).resolve().parents[2] / "fixtures" / "kut"
    with gzip.open(src / "its-pending-migration-src.trace.log.gz", "rt") as f:
        base = f.read().splitlines(keepends=True)
    base = base[:300] + base[-120:]
    rng = random.Random(20261201)
    num = re.compile(r"(?<=0x)[0-9a-f]+|(?<= )[0-9]+(?= |$)")
    outcomes = {"ok": 0, "refused": 0}
    for case in range(150):
        lines = list(base)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(lines))
            op = rng.randrange(5)
            if op == 0:
                digits = "".join(
                    rng.choice("0123456789abcdef") for _ in range(rng.choice((1, 4, 9, 17, 30)))
                )
                lines[i] = num.sub(
                    lambda m, d=digits: d if rng.random() < 0.5 else m.group(0), lines[i]
                )
            elif op == 1:
                del lines[i]
            elif op == 2:
                lines.insert(i, lines[i])
            elif op == 3:
                lines[i] = lines[i][: rng.randrange(len(lines[i]))]
            else:
                j = rng.randrange(len(lines))
                lines[i], lines[j] = lines[j], lines[i]
        log = tmp_path / f"m{case}.log"
        log.write_text("".join(lines))
        out = tmp_path / f"m{case}.msgpack"
        try:
            import_qemu(log, out)
            outcomes["ok"] += 1
        except ImportFormatError as e:
            assert e.line is not None or e.path is not None
            assert not out.exists()
            outcomes["refused"] += 1
    assert outcomes["ok"] > 0 and outcomes["refused"] > 0
