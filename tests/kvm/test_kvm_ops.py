"""The kvm-check machinery without a kernel: the op format, the model runner, the comparer,
conversion of traces and images, the kernel-version mapping, the CLI's refusals."""

import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gictools.kvm import compare, convert, host
from gictools.kvm import model as M
from gictools.kvm import ops as O

PROC_61 = (
    "Linux version 6.1.0-57-arm64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14+deb12u1)"
    " 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-11-20)"
)
PROC_612 = (
    "Linux version 6.12.118+deb12-arm64 (debian-kernel@lists.debian.org) (aarch64-linux-gnu-gcc-12"
    " (Debian 12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP Debian"
    " 6.12.118-1~deb12u1 (2026-11-28)"
)


def test_line_parse_roundtrip():
    ln = O.line("memw", 0x4000_0000, b"\x01\x02")
    assert ln == "memw 40000000 0102"
    assert O.parse(ln) == O.Op("memw", (0x4000_0000,), b"\x01\x02")
    raw = bytes(range(32))
    assert O.parse(O.line("cmd", raw)) == O.Op("cmd", (), raw)


@pytest.mark.parametrize(
    "text, msg",
    [
        ("", "empty"),
        ("frob 1", "unknown op"),
        ("msi 1", "takes 2"),
        ("msi 1 zz", "not a hex"),
        ("memw 0 123", "odd number"),
        ("cmd 00", "32 bytes"),
        ("its_r 11111111111111111", "not a hex"),
    ],
)
def test_parse_rejects(text, msg):
    with pytest.raises(O.OpError, match=msg):
        O.parse(text)


def test_memr_answer_lists_nonzero_qwords():
    data = bytes(8) + (5).to_bytes(8, "little") + bytes(7) + b"\x80"
    assert O.memr_answer(data) == "8=5 10=8000000000000000"
    assert O.memr_answer(bytes(16)) == "-"
    assert O.memr_words("8=5 10=8000000000000000") == {8: 5, 0x10: 1 << 63}
    assert O.memr_words("-14") is None


def test_model_runner_answers_like_kvmcheck():
    lines = [
        O.vm_line(7, 2),
        "memw 40000000 0102030405060708",
        "memr 40000000 10",
        "memr 0 8",  # outside RAM: -EFAULT, as kvmcheck.c
        "its_r 80",
        "its_r 81",  # misaligned: -EINVAL (vgic_its_attr_regs_access)
        "its_r 200",  # no register: -ENXIO
        "msi 0 0",
        "bogus",
    ]
    got = M.ModelRunner("6.12.118").run(lines)
    assert got[:3] == ["vm 7 0", "0", "0=807060504030201"]
    assert got[3:7] == ["-14", "=0", "-22", "-6"]
    assert got[8] == "!bad unknown op 'bogus'"
    assert M.ModelRunner("6.1").run(["msi 0 0"]) == ["!novm"]
    bare = M.ModelRunner("6.12.118").run([O.vm_line(1, 1, flags=O.VM_NO_ITS), "its_r 0", "save"])
    assert bare == ["vm 1 0", "!noits", "!noits"]


def test_cmd_processes_the_queue_in_the_model():
    from gictools.kvm import corpus as C

    b = C.Builder(__import__("random").Random(1), 0, "t", 1)
    b.standard()
    b.cmd("MAPC", ICID=0, RDbase=0, V=1)
    got = M.ModelRunner("6.12.118").run(b.lines)
    assert got[-1] == "=20"  # CREADR moved past the one command: KVM processed it


def test_diff_case_reports_each_op():
    case = O.Case(3, "cmds", [O.vm_line(3, 1), "msi 0 0", "memr 40000000 10"])
    k = ["vm 3 0", "1", "0=1 8=2"]
    m = ["vm 3 0", "0", "0=1"]
    d = compare.diff_case(case, k, m)
    assert d[0] == "case 3 (cmds) op 1 `msi 0 0`: kernel 1, model 0"
    assert d[1].startswith("case 3 (cmds) op 2 `memr 40000000 10`: 1 qwords differ: 0x40000008")
    assert compare.diff_case(case, k, k) == []
    assert "<no answer>" in compare.diff_case(case, k[:1], k)[0]


def test_upstream_version_of_debian_kernels():
    assert host.upstream_version(PROC_61, "6.1.0-57-arm64") == "6.1.192"
    assert host.upstream_version(PROC_612, "6.12.118+deb12-arm64") == "6.12.118"
    assert host.upstream_version("Linux version 6.13.2 (x@y) #1", "6.13.2") == "6.13.2"
    with pytest.raises(host.HostError):
        host.upstream_version("", "weird")


def test_split_answers_counts_lines():
    cases = [O.Case(0, "a", ["x", "y"]), O.Case(1, "b", ["z"])]
    assert O.split_answers(cases, "1\n2\n3\n") == [["1", "2"], ["3"]]
    assert O.split_answers(cases, "1\n") == [["1"], []]  # a crash: short
    with pytest.raises(O.OpError):
        O.split_answers(cases, "1\n2\n3\n4\n")


def test_trace_converts_with_commands_through_the_queue():
    c = convert.case_from_trace("traces/lpi-stress-v1-d1-e17.msgpack")
    # the trace's ITS sits at QEMU's distributor address: the vGIC frames move
    assert c.lines[0] == "vm 0 1 40000000 100000000 a000000 a100000 8000000 0"
    assert sum(ln.startswith("cmd ") for ln in c.lines) == 20  # MAPC, MAPD, 17 MAPTI, INVALL
    assert sum(ln.startswith("msi ") for ln in c.lines) == 17000 + 17  # + one probe per event
    answers = M.run_cases([c], "6.12.118")[0]
    assert not [a for a in answers if a.startswith("!")]


def test_image_converts_in_restore_order(tmp_path):
    from gictools import VM
    from gictools.guest import Guest
    from gictools.image import save_image

    vm = VM(2, kernel="6.12")
    its = vm.add_its()
    g = Guest(vm, its)
    g.enable_lpis()
    g.mapc(0, 1)
    g.mapd(5, 4)
    g.mapti(5, 3, 8200, 0)
    path = tmp_path / "a.img"
    save_image(vm, path)
    c = convert.case_from_image(path)
    ops = [ln.split()[0] for ln in c.lines]
    i = ops.index("restore")
    assert ops[i - 1 : i + 2] == ["its_w", "restore", "its_w"]
    assert c.lines[i + 1] == "its_w 0 80000001"  # GITS_CTLR last, as saved (Quiescent, Enabled)
    assert "msi 5 3" in c.lines
    got = M.run_cases([c], "6.12.118")[0]
    assert got[i] == "0" and got[c.lines.index("msi 5 3")] == "1"


def test_trace_acks_are_left_out_and_noted(tmp_path):
    from gictools import VM
    from gictools.trace.recorder import Recorder

    p = tmp_path / "t.msgpack"
    vm = VM(1)
    vm.add_its()
    with Recorder(vm, p) as r:
        r.ack(0, 8192)
    notes = []
    c = convert.case_from_trace(p, 0, notes)
    assert notes == [f"{p}: 1 ACK records left out (they need a running vCPU)"]
    assert not [ln for ln in c.lines if ln.startswith("ack")]


@pytest.mark.skipif(platform.machine() in ("aarch64", "arm64"), reason="an arm64 host may have KVM")
def test_kvm_check_off_arm64_is_one_line_exit_2():
    p = subprocess.run(
        [sys.executable, "-m", "gictools", "kvm-check", "traces/lpi-stress-v1-d1-e17.msgpack"],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        f"gictools: error: kvm-check needs an arm64 KVM host (this is {platform.machine()})"
    ]


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc") is None, reason="no arm64 cross compiler")
def test_kvmcheck_c_builds_static(tmp_path):
    out = host.build(tmp_path / "kvmcheck", cc="aarch64-linux-gnu-gcc")
    assert out.read_bytes()[:4] == b"\x7fELF"


def _fake_host(monkeypatch, tmp_path, kernel):
    """An 'arm64 host' whose kvmcheck is the model at `kernel` (a script standing in for the
    binary), so the verb's whole path runs here: build, script, run, parse, compare, exit."""
    from gictools.kvm import cli as kcli

    stub = tmp_path / "kvmcheck"
    stub.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "from gictools.kvm.model import ModelRunner\n"
        f"r = ModelRunner({kernel!r})\n"
        "for ln in open(sys.argv[1]):\n"
        "    print(r.answer(ln.rstrip('\\n')))\n"
    )
    stub.chmod(0o755)
    monkeypatch.setattr(kcli.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(kcli.os, "access", lambda *a: True)
    monkeypatch.setattr(host, "build", lambda out, cc="cc", static=True: stub)
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))


def _run_verb(args):
    from typer.testing import CliRunner

    from gictools.cli import app

    return CliRunner().invoke(app, ["kvm-check", *args])


def test_kvm_check_verb_agreeing_kernel_exits_0(monkeypatch, tmp_path):
    _fake_host(monkeypatch, tmp_path, "6.12.118")
    r = _run_verb(["--kernel", "6.12.118", "traces/lpi-stress-v4-d4-e8-fixed.msgpack"])
    assert r.exit_code == 0, r.output
    (summary,) = r.output.strip().splitlines()  # no difference line, the summary (stderr)
    assert summary.startswith("kvm-check: 1 cases, ") and summary.endswith(": 0 differences")


def test_kvm_check_verb_reports_each_difference_exits_1(monkeypatch, tmp_path):
    from gictools.kvm import corpus as C

    _fake_host(monkeypatch, tmp_path, "6.12.118")  # the "kernel" frees on any BASER write
    cases = [c for c in C.generate(300) if c.kind == "baser-change"][:5]
    C.save_cases(tmp_path / "cases.msgpack.gz", cases, 20)
    r = _run_verb(["--kernel", "6.1.192", "--corpus", str(tmp_path / "cases.msgpack.gz")])
    assert r.exit_code == 1
    *lines, summary = r.output.strip().splitlines()
    assert lines and all(ln.startswith("case ") for ln in lines)
    assert "`msi 0 0`: kernel 0, model 1" in r.output  # 6.12 freed the devices, 6.1 did not
    assert summary.endswith(f": {len(lines)} differences")
