"""gictools import qemu: the three real captures replay cleanly; what is reconstructed is
what delivery needs; malformed input fails at a named line with exit 2 and no output."""

import gzip
import re

import pytest
from captures import FIXTURES, capture_inputs
from typer.testing import CliRunner

from gictools.cli import app
from gictools.errors import ImportFormatError
from gictools.replay import replay
from gictools.trace import format as F
from gictools.trace.qemu import EVENTS, PARSERS, Importer, convert, import_qemu
from gictools.trace.reader import TraceReader

FIX = FIXTURES / "qemu"
CAPTURES = ["smp2-traffic-affinity", "smp4-hotplug", "smp2-rebind"]
POLICIES = ["none", "lru-v6.8", "usage-v2", "per-its-v6.10"]
runner = CliRunner()


def inputs(name):
    return capture_inputs(FIX, name)


def log_lines(name):
    with gzip.open(FIX / f"{name}.trace.log.gz", "rt") as f:
        return f.read().splitlines(keepends=True)


@pytest.fixture(scope="module", params=CAPTURES)
def imported(request, tmp_path_factory):
    name = request.param
    out = tmp_path_factory.mktemp("qemu") / f"{name}.msgpack"
    s = import_qemu(FIX / f"{name}.trace.log.gz", out, **inputs(name))
    return name, out, s


# --- the captures ------------------------------------------------------------------------


def test_captures_replay_clean_for_every_policy(imported):
    name, out, s = imported
    reports = replay(out, policies=POLICIES)
    assert [r.policy for r in reports] == POLICIES
    for r in reports:
        assert r.failure_count == 0, (name, r.policy, r.failures)
        assert not r.command_errors, (name, r.policy, r.command_errors)
        assert not r.msi_errors and r.delivered == r.msis == s["msis"]
    cached = [r for r in reports if r.policy != "none"]
    assert all(r.hit_rate is not None and r.hit_rate > 0.99 for r in cached)


def test_capture_counts_match_the_capture(imported):
    """README's tables: commands, translations, and acks == translations (exactly)."""
    name, out, s = imported
    want = {
        "smp2-traffic-affinity": (61, 2186),
        "smp4-hotplug": (325, 12674),
        "smp2-rebind": (87, 3277),
    }[name]
    m = s["metadata"]
    e = m["emitted"]
    assert (e["commands"], s["msis"]) == want
    assert e["acks"] == s["msis"] == e["expect_msi"]
    assert m["skipped_lines"] == {"qemu: gicv3_dist_read:": 1}  # a -d guest_errors line
    assert m["qemu_only_semantics_and_anomalies"] == {}
    assert s["vm"]["vcpus"] == (4 if "smp4" in name else 2)
    assert s["vm"]["memory"] == [[0x4000_0000, 512 << 20]]
    # every command before the queue dump came from the raw slot (SYNC/INVALL operands)
    assert e["commands_from_cmdq"] == want[0] - (21 if name == "smp4-hotplug" else 0)
    assert len(m["reconstructed"]["device_table_level2"]) == 1
    assert e["expect_lpi"] > 0


def test_trace_records(imported):
    name, out, s = imported
    rd = TraceReader(out)
    tags = {}
    first = None
    for rec in rd:
        tags[rec[0]] = tags.get(rec[0], 0) + 1
        if rec[0] == F.REG and first is None:
            first = rec
    assert rd.header["vm"]["itses"] == [{"base": 0x0808_0000}]
    assert {F.COMMAND, F.REG, F.MEM, F.EXPECT, F.ACK} <= set(tags)
    # timestamps are the trace's clock in ns, the injector its thread id
    line = next(ln for ln in log_lines(name) if "@" in ln.split(":")[0])
    tid, sec, usec = re.match(r"(\d+)@(\d+)\.(\d+):", line).groups()
    assert first[1] == int(sec) * 10**9 + int(usec) * 1000 and first[2] == int(tid)


def _reg_writes(path):
    return [(r[3], r[4], r[5], r[7]) for r in TraceReader(path) if r[0] == F.REG and r[8]]


def test_cwriter_suppressed_other_registers_kept(imported):
    name, out, s = imported
    writes = _reg_writes(out)
    assert not [w for w in writes if w[0] == "its" and w[2] & ~7 == 0x88]
    assert ("its", 0, 0x0, 0x8000_0001) in writes  # GITS_CTLR enable
    for v in range(s["vm"]["vcpus"]):
        assert any(w[:3] == ("redist", v, 0x0) and w[3] & 1 for w in writes)  # EnableLPIs
    assert s["metadata"]["emitted"]["cwriter_writes_suppressed"] > 0


def test_reconstruction_is_what_delivery_needs(imported, tmp_path):
    """Without the reconstructed config bytes the vCPUs would take disabled LPIs."""
    name, out, s = imported
    import msgpack

    stripped = tmp_path / "stripped.msgpack"
    with open(out, "rb") as f, open(stripped, "wb") as g:
        for obj in msgpack.Unpacker(f, raw=False, strict_map_key=False):
            if isinstance(obj, list) and obj[0] == F.MEM and len(obj[4]) == 1:
                continue
            g.write(msgpack.packb(obj, use_bin_type=True))
    (r,) = replay(stripped, policies=["per-its-v6.10"])
    assert r.failure_count > 0


def test_inference_without_dumps_agrees_with_dumps(tmp_path):
    """The config bytes inferred from deliveries alone equal those checked against the final
    table; SYNC RDbase / INVALL ICID inferred from the driver's pattern equal the raw slots."""
    for name in CAPTURES:
        log = FIX / f"{name}.trace.log.gz"
        _, _, full = convert(log, **inputs(name))
        _, meta, bare = convert(log, cmdline=FIX / f"{name}.cmdline.txt")

        def pick(recs):
            return (
                [r[3:] for r in recs if r[0] == "mem" and len(r[4]) == 1],
                [r[4] for r in recs if r[0] == "command"],
            )

        assert pick(bare) == pick(full), name
        assert meta["emitted"]["sync_rdbase_inferred"] > 0
        out = tmp_path / f"{name}.msgpack"
        import_qemu(log, out)
        (r,) = replay(out, policies=["lru-v6.8"])
        assert r.failure_count == 0 and not r.command_errors


def test_log_without_timestamp_prefix(tmp_path):
    name = "smp2-rebind"
    plain = tmp_path / "plain.log"
    plain.write_text("".join(re.sub(r"^\d+@\d+\.\d+:", "", ln) for ln in log_lines(name)))
    _, _, with_prefix = convert(FIX / f"{name}.trace.log.gz", **inputs(name))
    _, meta, without = convert(plain, **inputs(name))
    assert [r[:1] + r[3:] for r in without] == [r[:1] + r[3:] for r in with_prefix]
    assert all(r[1] is None and r[2] is None for r in without if r[0] != "expect")
    assert meta["t0_ns"] is None


def test_cli_import_then_replay(tmp_path):
    name = "smp2-traffic-affinity"
    out = tmp_path / "t.msgpack"
    args = ["import", "qemu", str(FIX / f"{name}.trace.log.gz"), "-o", str(out)]
    for k, v in inputs(name).items():
        args += [f"--{k}", str(v)]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "MSIs 2,186" in r.output
    r = runner.invoke(app, ["replay", str(out), "--cache", "lru-v6.8", "--cache", "none"])
    assert r.exit_code == 0, r.output
    assert "hit rate" in r.output


# --- the parsers -------------------------------------------------------------------------


def _example(fmt):
    """A line for fmt with the values 1, 2, 3 ...; and those values."""
    vals = []

    def sub(m):
        vals.append(len(vals) + 1)
        return f"{vals[-1]:x}" if m.group(1) in ("x", "lx") else str(vals[-1])

    return re.sub(r"%(lx|x|d|u)", sub, fmt), tuple(vals)


def test_one_parser_per_event_in_declaration_order():
    assert sum(n.startswith("gicv3_its_") for n in EVENTS) == 38
    for name, fmt in EVENTS.items():
        text, vals = _example(fmt)
        assert PARSERS[name].parse(text) == vals, name
        assert PARSERS[name].parse(text + " extra") is None, name
    assert PARSERS["gicv3_its_cmd_mapd"].parse(
        "GICv3 ITS: command MAPD DeviceID 0x300 Size 0x4 ITT_addr 0x4371e4 V 1"
    ) == (0x300, 4, 0x4371E4, 1)


# --- synthetic logs ----------------------------------------------------------------------


def _log(*events, tid=7):
    """Prefixed lines from (event, text) pairs, 1 µs apart."""
    return [f"{tid}@1000.{i:06d}:{ev} {text}\n" for i, (ev, text) in enumerate(events)]


def _cmd(slot, opcode, ev, text):
    return [
        (
            "gicv3_its_process_command",
            f"GICv3 ITS: processing command at offset {slot:#x}: {opcode:#x}",
        ),
        (ev, "GICv3 ITS: command " + text),
    ]


BOOT = [
    ("gicv3_its_write", "GICv3 ITS write: offset 0x100 data 0xf907000042590600 size 8"),
    ("gicv3_its_write", "GICv3 ITS write: offset 0x108 data 0xbc070000425a0600 size 8"),
    ("gicv3_its_write", "GICv3 ITS write: offset 0x80 data 0xb80000004258040f size 8"),
    ("gicv3_its_write", "GICv3 ITS write: offset 0x0 data 0x80000001 size 4"),
    (
        "gicv3_redist_write",
        "GICv3 redistributor 0x0 write: offset 0x70 data 0x425b078f size 8 secure 0",
    ),
    (
        "gicv3_redist_write",
        "GICv3 redistributor 0x0 write: offset 0x78 data 0x425c0780 size 8 secure 0",
    ),
    ("gicv3_redist_write", "GICv3 redistributor 0x0 write: offset 0x0 data 0x3 size 4 secure 0"),
    *_cmd(0, 9, "gicv3_its_cmd_mapc", "MAPC ICID 0x0 RDbase 0x0 V 1"),
    *_cmd(1, 8, "gicv3_its_cmd_mapd", "MAPD DeviceID 0x10 Size 0x1 ITT_addr 0x427990 V 1"),
    *_cmd(2, 0xA, "gicv3_its_cmd_mapti", "MAPTI DeviceID 0x10 EventID 0x0 ICID 0x0 pINTID 0x2000"),
]


def _feed(lines):
    imp = Importer(path="x.log")
    for ln in lines:
        imp.feed(ln)
    return imp.finish()


def test_qemu_only_semantics_are_flagged():
    _, meta, _ = _feed(
        _log(
            *BOOT,
            *_cmd(
                3,
                0xA,
                "gicv3_its_cmd_mapti",
                "MAPTI DeviceID 0x10 EventID 0x0 ICID 0x0 pINTID 0x2001",
            ),
            *_cmd(4, 8, "gicv3_its_cmd_mapd", "MAPD DeviceID 0x10 Size 0x1 ITT_addr 0x427990 V 1"),
            *_cmd(5, 9, "gicv3_its_cmd_mapc", "MAPC ICID 0x0 RDbase 0x0 V 0"),
            *_cmd(6, 0xE, "gicv3_its_cmd_movall", "MOVALL RDbase1 0x0 RDbase2 0x0"),
        )
    )
    q = meta["qemu_only_semantics_and_anomalies"]
    assert q["mapti_over_existing_ite"] == 1 and q["mapd_remap_with_ites"] == 1
    assert q["mapc_unmap"] == 1 and q["movall"] == 1


def test_msi_expectation_from_qemu_lookups(tmp_path):
    vm, meta, recs = _feed(
        _log(
            *BOOT,
            (
                "gicv3_its_translation_write",
                "GICv3 ITS TRANSLATER write: offset 0x40 data 0x0 size 4 requester_id 0x10",
            ),
            (
                "gicv3_its_dte_read",
                "GICv3 ITS: Device Table read for DeviceID 0x10: valid 1 size 0x1 "
                "ITTaddr 0x42799000",
            ),
            (
                "gicv3_its_ite_read",
                "GICv3 ITS: Interrupt Table read for ITTaddr 0x42799000 EventID 0x0: "
                "valid 1 inttype 1 intid 0x2000 ICID 0x0 vPEID 0x0 doorbell 0x3ff",
            ),
            (
                "gicv3_its_cte_read",
                "GICv3 ITS: Collection Table read for ICID 0x0: valid 1 RDBase 0x0",
            ),
            ("gicv3_icc_iar1_read", "GICv3 ICC_IAR1 read cpu 0x0 value 0x2000"),
            ("gicv3_icc_iar1_read", "GICv3 ICC_IAR1 read cpu 0x0 value 0x1b"),
        )
    )
    kinds = [r[0] for r in recs]
    i = kinds.index("msi")
    assert recs[i][3:] == [0, 0x10, 0]
    assert recs[i + 1][3:] == ["msi", {"ret": 1, "intid": 0x2000, "vcpu": 0}]
    assert kinds.count("ack") == 1 and vm["vcpus"] == 1
    # the LPI was delivered, so the byte Linux wrote before enabling it must be "enabled"
    assert ["mem", 0x425B0000, b"\xa3"] in [[r[0], r[3], r[4]] for r in recs]
    from gictools.trace.qemu import write_trace

    out = tmp_path / "s.msgpack"
    write_trace(out, vm, meta, recs, "synthetic")
    (r,) = replay(out, policies=["lru-v6.8"])
    assert r.failure_count == 0 and r.delivered == 1


# --- bad input: a line number, exit code 2, no output ----------------------------------------


def _bad_inputs(tmp_path):
    lines = log_lines("smp2-rebind")
    raw = (FIX / "smp2-rebind.trace.log.gz").read_bytes()
    cases = {}
    p = tmp_path / "trunc.log.gz"
    p.write_bytes(raw[: len(raw) // 3])
    cases["truncated gzip"] = (p, r"damaged gzip stream")
    p = tmp_path / "empty.log"
    p.write_bytes(b"")
    cases["empty"] = (p, r"line 1: empty file")
    p = tmp_path / "empty.log.gz"
    p.write_bytes(gzip.compress(b""))
    cases["empty gzip"] = (p, r"line 1: empty file")
    n = max(i for i, ln in enumerate(lines[:3000]) if "process_command" in ln)
    p = tmp_path / "cut.log"
    p.write_text("".join(lines[: n + 1]))
    cases["cut in a command"] = (p, rf"line {n + 1}: the capture ends inside a command")
    p = tmp_path / "cutline.log"
    p.write_text("".join(lines[:200]) + lines[200][:-12])
    cases["cut line"] = (p, r"line 201: .*does not match QEMU 7.2.s format")
    p = tmp_path / "cutname.log"
    p.write_text("".join(lines[:200]) + lines[200].split(":gicv3")[0] + ":gicv3_icc_ia")
    cases["cut event name"] = (p, r"line 201: the capture ends in the middle of this line")
    k = next(i for i, ln in enumerate(lines) if "gicv3_its_cmd_mapti" in ln)
    newer = list(lines)
    newer[k] = newer[k].replace("pINTID", "pINTID_new")
    p = tmp_path / "newfmt.log"
    p.write_text("".join(newer))
    cases["changed format"] = (p, rf"line {k + 1}: gicv3_its_cmd_mapti: .*a different QEMU")
    newer = list(lines)
    newer.insert(k, lines[k].split(":gicv3")[0] + ":gicv3_its_cmd_vsgi GICv3 ITS: command VSGI\n")
    p = tmp_path / "newevent.log"
    p.write_text("".join(newer))
    cases["unknown ITS event"] = (p, rf"line {k + 1}: unknown ITS trace event 'gicv3_its_cmd_vsgi'")
    p = tmp_path / "other.log"
    p.write_text("hello\nworld\n")
    cases["not a QEMU ITS trace"] = (p, r"line 2: no GICv3 ITS")
    return cases


def test_bad_input_exit_2_line_number_no_output(tmp_path):
    for what, (path, pattern) in _bad_inputs(tmp_path).items():
        out = tmp_path / f"{path.name}.msgpack"
        r = runner.invoke(app, ["import", "qemu", str(path), "-o", str(out)])
        assert r.exit_code == 2, (what, r.output)
        assert re.search(pattern, r.output), (what, r.output)
        assert not out.exists() and not list(tmp_path.glob(f"{out.name}.tmp*")), what


def test_bad_dump_files(tmp_path):
    log = FIX / "smp2-rebind.trace.log.gz"
    with pytest.raises(ImportFormatError, match=r"not the same capture"):
        convert(log, cmdq=FIX / "smp2-traffic-affinity.cmdq.txt")
    bad = tmp_path / "bad.cmdq.txt"
    bad.write_text("# header\n0x0000 0000000000000009 zz\n")
    with pytest.raises(ImportFormatError, match=r"bad.cmdq.txt: line 2"):
        convert(log, cmdq=bad)
    bad = tmp_path / "bad.lpiprop.txt"
    bad.write_text("0x2000 0xa3\n0x10 0xa3\n")
    with pytest.raises(ImportFormatError, match=r"bad.lpiprop.txt: line 2"):
        convert(log, lpiprop=bad)
