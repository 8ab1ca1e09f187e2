"""The KVM recorder: real recordings of vgic_lpi_stress (fixtures/kvm/, 6.1.192 and 6.12.118 in the
nested host) import, replay clean, equal gen lpi-stress's workload, and agree with the kernel's
own translation-cache counts; hostile logs fail at a named line."""

import gzip
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gictools.cli import app
from gictools.errors import ImportFormatError
from gictools.replay import replay
from gictools.trace.gen_lpi_stress import generate
from gictools.trace.kvm.cli import SCRIPT
from gictools.trace.kvm.compare import compare_workloads, model_cache_counts, workload
from gictools.trace.kvm.importer import import_kvm

FIX = Path(__file__).parents[2] / "fixtures" / "kvm"
RECORDINGS = sorted(p.name for p in FIX.iterdir() if (p / "record.log.gz").exists())
LPI_STRESS = [n for n in RECORDINGS if n.startswith("lpi-stress-")]
KVM_CHECK = [n for n in RECORDINGS if n.startswith("kvm-check-")]
TRACES = Path(__file__).parents[2] / "traces"
FLAGS = re.compile(r"-v (\d+) -d (\d+) -e (\d+) -i (\d+)")


def _flags(name):
    doc = json.loads((FIX / name / "workload.json").read_text())
    v, d, e, i = (int(x) for x in FLAGS.search(doc["workload"]).groups())
    return doc, v, d, e, i


def test_recordings_of_two_kernels():
    assert len(LPI_STRESS) == 9 and len(KVM_CHECK) == 2
    releases = {
        json.loads((FIX / n / "workload.json").read_text())["kernel_release"][:4]
        for n in RECORDINGS
    }
    assert releases == {"6.1.", "6.12"}


@pytest.mark.parametrize("name", LPI_STRESS)
def test_recording_replays_clean_and_equals_gen(name, tmp_path):
    doc, v, d, e, i = _flags(name)
    t = tmp_path / "rec.msgpack"
    s = import_kvm(FIX / name / "record.log.gz", t)
    assert not s.info.lost and s.info.exit == 0
    # known answers from the flags: every MSI delivered (KVM_SIGNAL_MSI returned 1)
    assert s.msis == d * e * i and dict(s.msi_results) == {1: d * e * i}
    assert len(s.commands) == v + d + d * e + v  # MAPC per vCPU, MAPD + MAPTIs, INVALL per vCPU
    assert s.as_dict() == doc["observed"]
    for policy in ("lru-v6.8", "per-its-v6.10"):
        (rep,) = replay(t, policies=(policy,))
        assert rep.failure_count == 0 and rep.msis == d * e * i and rep.delivered == d * e * i
    g = tmp_path / "gen.msgpack"
    generate(g, vcpus=v, devices=d, events=e, iterations=i)
    c = compare_workloads(t, g)
    assert c["commands_equal"], c["command_differences"]
    assert c["msis_multiset_equal"] and c["msis_per_device_equal"]
    if d == 1:  # one injector thread: the order is the selftest's loop itself
        assert c["msis_global_order_equal"]


@pytest.mark.parametrize("name", LPI_STRESS)
def test_kernel_cache_counts_equal_the_model(name, tmp_path):
    """Hits, misses and fills the kernel showed (vgic_its_inject_cached_translation and
    vgic_its_resolve_lpi returns) = the model's under that kernel's policy."""
    _, v, d, e, i = _flags(name)
    t = tmp_path / "rec.msgpack"
    s = import_kvm(FIX / name / "record.log.gz", t)
    m = model_cache_counts(t)
    on_61 = "-6.1" in name and "-6.12" not in name
    assert m["policy"] == ("lru-v6.8" if on_61 else "per-its-v6.10")
    assert (s.cache_hits, s.cache_misses, s.cache_fills) == (m["hits"], m["misses"], m["fills"])
    # known answers: per-its-v6.10 (6.12) keeps every translation, so each LPI misses once; 6.1's
    # LRU list holds 16 per vCPU, and one injector cycling through more LPIs than that evicts each
    # entry just before its next use (the LRU pathology): every MSI misses
    lpis = d * e
    thrash = on_61 and d == 1 and lpis > 16 * v
    assert s.cache_misses == (lpis * i if thrash else lpis)
    assert s.cache_hits == d * e * i - s.cache_misses
    # 6.12.118 invalidates on the guest's first GITS_BASER0/1 writes (any change, stable
    # 6.12.112: vgic_mmio_write_its_baser); 6.1 only on Valid 1->0: the model does the same
    assert s.cache_invalidations == (0 if on_61 else 2)
    assert m["invalidations"] == s.cache_invalidations
    # teardown (vgic_its_destroy, not a recorded operation): one per device freed, plus one
    assert s.cache_invalidations_outside == d + 1


@pytest.mark.parametrize("name", KVM_CHECK)
def test_kvm_check_recording_replays_to_the_input_answers(name, tmp_path):
    """kvm-check (the kvmcheck issue's raw-ioctl program) replaying a bundled trace on real KVM,
    recorded: KVM processed the input's commands byte for byte (userspace GITS_CWRITER writes),
    its MSIs are the input's followed by kvm-check's own probes, all delivered, and the recording
    replays clean."""
    doc = json.loads((FIX / name / "workload.json").read_text())
    src = TRACES / doc["input"]
    t = tmp_path / "rec.msgpack"
    s = import_kvm(FIX / name / "record.log.gz", t)
    assert not s.info.lost and s.as_dict() == doc["observed"]
    (rep,) = replay(t)
    assert rep.failure_count == 0 and rep.msis == rep.delivered == s.msis
    a, b = workload(t), workload(src)
    assert a["commands"] == b["commands"] and len(b["commands"]) == 44
    n = len(b["msis"])
    assert [m[:2] for m in a["msis"][:n]] == [m[:2] for m in b["msis"]]
    (inp,) = replay(src)
    assert inp.delivered == n  # the input's own answers: every MSI delivered, as on KVM
    m = model_cache_counts(t)
    assert (s.cache_hits, s.cache_misses, s.cache_fills) == (m["hits"], m["misses"], m["fills"])


def test_cli_import_check_cache(tmp_path):
    r = CliRunner().invoke(
        app,
        [
            "import",
            "kvm",
            str(FIX / LPI_STRESS[0] / "record.log.gz"),
            "-o",
            str(tmp_path / "t.msgpack"),
            "--check-cache",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "agrees on hits, misses and fills" in r.output


def test_record_script_printed_and_installed(tmp_path):
    r = CliRunner().invoke(app, ["record", "kvm", "--script"])
    assert r.exit_code == 0 and r.output.rstrip("\n") == SCRIPT.read_text().rstrip("\n")
    r = CliRunner().invoke(app, ["record", "kvm", "--install", str(tmp_path / "rec.sh")])
    assert r.exit_code == 0 and os.access(tmp_path / "rec.sh", os.X_OK)
    sh = shutil.which("sh")
    if sh:  # POSIX syntax (the host runs it with busybox sh)
        subprocess.run([sh, "-n", str(tmp_path / "rec.sh")], check=True)


# --- hostile and edge-case logs ---------------------------------------------------------------
def _text(name=None):
    return gzip.decompress((FIX / (name or LPI_STRESS[0]) / "record.log.gz").read_bytes()).decode()


def _write(tmp_path, text):
    p = tmp_path / "x.log"
    p.write_text(text)
    return p


def test_not_a_log(tmp_path):
    with pytest.raises(ImportFormatError, match="line 1: not a `gictools record kvm` log"):
        import_kvm(_write(tmp_path, "hello\n"), tmp_path / "t.msgpack")
    assert not (tmp_path / "t.msgpack").exists()


def test_log_cut_short_is_refused(tmp_path):
    text = "\n".join(x for x in _text().splitlines() if not x.startswith("# end"))
    with pytest.raises(ImportFormatError, match="no '# end' line"):
        import_kvm(_write(tmp_path, text), tmp_path / "t.msgpack")


def test_lost_events_are_refused_unless_allowed(tmp_path):
    lines = _text().splitlines()
    k = next(n for n, x in enumerate(lines) if " msi: " in x)
    lines.insert(k, "CPU:1 [LOST 17 EVENTS]")
    p = _write(tmp_path, "\n".join(lines))
    with pytest.raises(ImportFormatError, match="17 events lost in the trace pipe"):
        import_kvm(p, tmp_path / "t.msgpack")
    s = import_kvm(p, tmp_path / "t.msgpack", allow_lost=True)
    assert s.info.lost_events == 17
    over = _text().replace("# stats cpu 1 overrun 0 dropped 0", "# stats cpu 1 overrun 5 dropped 0")
    with pytest.raises(ImportFormatError, match="cpu1: 5 overrun"):
        import_kvm(_write(tmp_path, over), tmp_path / "t.msgpack")


def test_probe_hits_missing_from_the_log_are_lost(tmp_path):
    """An event the kernel dropped without counting it (measured with set_event_pid on 6.12)
    shows as a probe hit with no line: refused."""
    lines = _text().splitlines()
    k = next(n for n, x in enumerate(lines) if " msi: " in x)
    del lines[k : k + 4]  # one MSI: entry, cache lookup and return, result
    with pytest.raises(
        ImportFormatError, match="probe hits missing from the log msi: 1, cached: 1"
    ):
        import_kvm(_write(tmp_path, "\n".join(lines)), tmp_path / "t.msgpack")
    # a lost return alone: the MSI is imported without an expectation, and counted
    lines = _text().splitlines()
    k = next(n for n, x in enumerate(lines) if " msi_ret: " in x)
    del lines[k]
    s = import_kvm(_write(tmp_path, "\n".join(lines)), tmp_path / "t.msgpack")
    assert s.unreturned == 1 and s.msi_results[None] == 1


@pytest.mark.parametrize(
    "bad, what",
    [
        ("garbage line here", "not a trace event line"),
        (" x-1 [000] d.... 1.000001: msi: (vgic_its_inject_msi+0x0/0xd8) a=zz", "field a='zz'"),
        (" x-1 [000] ..... 1.000001: kvm_mmio: mmio write len four", "malformed kvm_mmio"),
        ("# stats cpu x", "malformed '# stats' line"),
        ("x" * 9000, "longer than 8192 bytes"),
    ],
)
def test_malformed_line_is_named(tmp_path, bad, what):
    lines = _text().splitlines()
    lines.insert(20, bad)
    with pytest.raises(ImportFormatError, match=r"line 21: .*" + re.escape(what)):
        import_kvm(_write(tmp_path, "\n".join(lines)), tmp_path / "t.msgpack")


def test_damaged_gzip(tmp_path):
    data = (FIX / LPI_STRESS[0] / "record.log.gz").read_bytes()
    p = tmp_path / "x.log.gz"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImportFormatError, match="damaged compressed log"):
        import_kvm(p, tmp_path / "t.msgpack")


def test_two_vms_with_an_its_need_vm(tmp_path):
    text = _text()
    body = [x for x in text.splitlines() if not x.startswith("#")]
    p = _write(tmp_path, text + "\n" + "\n".join(body) + "\n# end lost 0\n")
    with pytest.raises(ImportFormatError, match=r"2 VMs with an ITS .*--vm"):
        import_kvm(p, tmp_path / "t.msgpack")
    vm_lines = [k for k, x in enumerate(p.read_text().splitlines()) if "create_vm:" in x]
    s = import_kvm(p, tmp_path / "t.msgpack", vm_index=len(vm_lines))
    assert s.msis == 160


def test_mid_life_log_needs_the_vm_config(tmp_path):
    """Attached mid-life: no creation in the log; the VM's shape must be given."""
    lines = _text().splitlines()
    first_msi = next(n for n, x in enumerate(lines) if " msi: " in x)
    head = [x for x in lines if x.startswith("#")]
    tail = [x for x in lines[first_msi:] if not x.startswith("# kprobe ")]  # hits since creation
    p = _write(tmp_path, "\n".join(head[:5] + tail))
    with pytest.raises(ImportFormatError, match="recorded mid-life"):
        import_kvm(p, tmp_path / "t.msgpack")
    s = import_kvm(p, tmp_path / "t.msgpack", vcpus=1, its_base=0x800_0000, redist_base=0x803_0000)
    assert s.msis > 0
    (rep,) = replay(tmp_path / "t.msgpack", policies=("lru-v6.8",))
    assert rep.failure_count == rep.msis  # the ITS's mappings predate the recording: all lost


def test_stack_window_read(tmp_path):
    """Kernels whose return probes lack $argN: the bytes are taken from the caller's stack
    window at data - sp; a buffer outside the window is counted, not guessed."""
    text = _text("lpi-stress-v1-d1-e16-i10-6.1")
    assert " s31=" in text  # this fixture was recorded that way
    s = import_kvm(_write(tmp_path, text), tmp_path / "t.msgpack")
    assert s.reads_unobserved == 0 and s.commands[0][:8] == bytes([9, 0, 0, 0, 0, 0, 0, 0])  # MAPC
    far = re.sub(
        r"(rd: .*data=)0x[0-9a-f]+( sp=)(0x[0-9a-f]+)",
        lambda m: f"{m[1]}{int(m[3], 16) + 4096:#x}{m[2]}{m[3]}",
        text,
    )
    s = import_kvm(_write(tmp_path, far), tmp_path / "t.msgpack")
    assert s.reads_unobserved > 0 and s.mem_reads == 0 and not s.commands


def test_stack_window_equals_arg3_on_the_same_kernel(tmp_path):
    """6.12 recorded the same workload both ways: the bytes KVM read are the same."""
    from gictools.trace import format as F
    from gictools.trace.reader import TraceReader

    def mems(name):
        t = tmp_path / f"{name}.msgpack"
        import_kvm(FIX / name / "record.log.gz", t)
        with TraceReader(t) as r:
            return [(rec[3], bytes(rec[4])) for rec in r if rec[0] == F.MEM]

    a, b = mems("lpi-stress-v1-d1-e16-i10-6.12-window"), mems("lpi-stress-v1-d1-e16-i10-6.12")
    assert len(a) == 67 and a == b


@pytest.mark.parametrize("kernel", ["6.1", "6.12"])
def test_the_kernels_own_cache_tells_the_policies_apart(kernel, tmp_path):
    """17 LPIs cycled by one injector: 6.1's kernel missed every MSI, as lru-v6.8 (16 entries per
    vCPU) does and per-its-v6.10 does not; 6.12's missed each LPI once, as per-its-v6.10 does."""
    t = tmp_path / "t.msgpack"
    s = import_kvm(FIX / f"lpi-stress-v1-d1-e17-i10-{kernel}" / "record.log.gz", t)
    lru, per_its = model_cache_counts(t, "lru-v6.8"), model_cache_counts(t, "per-its-v6.10")
    assert (lru["misses"], per_its["misses"]) == (170, 17)
    mine, other = (lru, per_its) if kernel == "6.1" else (per_its, lru)
    assert s.cache_misses == mine["misses"] != other["misses"]


@pytest.mark.parametrize(
    "old, new, what",
    [
        (
            "gpa=0xfffffc0000 len=32",
            "gpa=0x1fffffffffffffffff len=32",
            r"line \d+: field gpa=.* wider than 64 bits",
        ),
        (
            "gpa=0xfffffc0000 len=32",
            "gpa=0xfffffffffffffff0 len=32",
            r"line \d+: kvm_read_guest of 32 bytes at 0xfffffffffffffff0",
        ),
        (
            "u16=0x60000",
            "u16=0xffffffffffffffff",
            r"the VM the log describes: vm.memory\[1\]: slot ends beyond 2\^64",
        ),
    ],
)
def test_values_out_of_range_are_named(tmp_path, old, new, what):
    text = _text("lpi-stress-v1-d1-e16-i10-6.12")
    assert old in text
    with pytest.raises(ImportFormatError, match=what):
        import_kvm(_write(tmp_path, text.replace(old, new, 1)), tmp_path / "t.msgpack")
    assert not (tmp_path / "t.msgpack").exists()


@pytest.mark.parametrize("name", [n for n in LPI_STRESS if "-6.12" in n])
def test_6_12_shows_each_msis_lpi_and_vcpu(name, tmp_path):
    """Where kprobes take BTF-typed arguments (6.12), vgic_queue_irq_unlock's irq gives each MSI's
    INTID and vCPU; the trace expects them and the replay agrees. The selftest encodes RDbase
    wrongly (before Oct 2025), so the kernel routed every LPI to vCPU 0: gen lpi-stress's
    default --routing as-measured, seen on the real kernel."""
    from gictools.trace import format as F
    from gictools.trace.reader import TraceReader

    _, v, d, e, i = _flags(name)
    t = tmp_path / "t.msgpack"
    s = import_kvm(FIX / name / "record.log.gz", t)
    assert s.msis_with_lpi == s.msis == d * e * i
    last, seen = None, []
    with TraceReader(t) as r:
        for rec in r:
            if rec[0] == F.MSI_BLOCK:
                last = (int(rec[4][-1]), int(rec[5][-1]))
            elif rec[0] == F.EXPECT and rec[3] == "msi":
                seen.append((last, rec[4]["intid"], rec[4]["vcpu"]))
    assert len(seen) == d * e * i
    assert all(intid == 8192 + dev * e + ev for (dev, ev), intid, _ in seen)
    assert {vcpu for _, _, vcpu in seen} == {0}
    (rep,) = replay(t)
    assert rep.failure_count == 0
