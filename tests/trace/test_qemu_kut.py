"""gictools import qemu on kvm-unit-tests ITS captures: the two real ones in fixtures/kut
(introspection: register-only; pending-migration: a live migration), and synthetic captures in
QEMU 7.2's format mimicking its-trigger, its-migration and its-migrate-unmapped-collection
(arm/gic.c): INT without MSIs, LPI bytes and pending bits stored without a trace event, INV and
INVALL, a device unmap, a collection mapped only on the destination."""

import gzip
import json

import msgpack
import pytest
from captures import FIXTURES, capture_inputs
from typer.testing import CliRunner

from gictools import regs as R
from gictools.cli import app
from gictools.cmdlayout import encode_command
from gictools.replay import replay
from gictools.trace import format as F
from gictools.trace.qemu import convert, import_qemu, write_trace
from gictools.trace.reader import TraceReader

KUT = FIXTURES / "kut"
POLICIES = ["none", "lru-v6.8", "usage-v2", "per-its-v6.10"]
runner = CliRunner()


def kut(name):
    return capture_inputs(KUT, name)


def migration_inputs():
    src, dst = kut("its-pending-migration-src"), kut("its-pending-migration-dst")
    return dict(
        log=KUT / "its-pending-migration-src.trace.log.gz",
        migrate_to=KUT / "its-pending-migration-dst.trace.log.gz",
        **src,
        **{f"dst_{k}": v for k, v in dst.items()},
    )


def replay_clean(path, n_acks=None):
    reports = replay(path, policies=POLICIES)
    for r in reports:
        assert r.failure_count == 0, (r.policy, r.failures)
        assert not r.msi_errors, r.policy
    return reports


# --- the real captures ---------------------------------------------------------------------


def test_introspection_register_only(tmp_path):
    out = tmp_path / "intro.msgpack"
    ins = kut("its-introspection")
    del ins["lpiprop"]
    s = import_qemu(KUT / "its-introspection.trace.log.gz", out, **ins)
    m = s["metadata"]
    # the six guest_errors lines, two of them shaped like an event name
    assert m["skipped_lines"] == {"qemu: gicv3_its_write:": 3, "qemu: its_writel:": 3}
    assert s["vm"]["vcpus"] == 4  # -smp 4: no redistributor event names a vCPU
    e = m["emitted"]
    assert e["expect_its_reg"] == 14 and "commands" not in e and s["msis"] == 0
    # QEMU refuses the 32-bit GITS_TYPER writes, KVM takes and ignores them: replayed
    assert m["qemu_only_semantics_and_anomalies"] == {"its_access_qemu_refused_kvm_accepts": 3}
    d = m["register_reads_qemu_vs_kvm"]
    assert {"GITS_IIDR", "GITS_TYPER", "GITS_BASER0", "GITS_BASER1"} <= set(d)
    assert "ProductID" in d["GITS_IIDR"]["not_compared"]
    assert (d["GITS_IIDR"]["qemu"], d["GITS_IIDR"]["kvm"]) == (0x43B, 0x4B00043B)
    assert (d["GITS_TYPER"]["qemu"], d["GITS_TYPER"]["kvm"]) == (0x1F0001EFB1, 0x1EF71)
    writes = [r for r in TraceReader(out) if r[0] == F.REG and r[8]]
    assert sum(w[5] == R.GITS_IIDR for w in writes) == 3
    assert sum(w[5] == R.GITS_TYPER and w[6] == 4 for w in writes) == 3
    replay_clean(out)


def test_introspection_expectations_can_fail(tmp_path):
    """An its_reg expectation on IIDR with QEMU's whole value fails on KVM's model: the mask
    is what keeps the by-design ProductID difference out."""
    vm, meta, recs = convert(KUT / "its-introspection.trace.log.gz")
    for r in recs:
        if r[0] == "expect" and r[3] == "its_reg" and r[4]["offset"] == R.GITS_IIDR:
            r[4] = dict(r[4], mask=0xFFFF_FFFF)
    out = tmp_path / "bad.msgpack"
    write_trace(out, vm, meta, recs, "test")
    (r,) = replay(out, policies=["none"])
    assert r.failure_count == 4  # four IIDR reads


@pytest.fixture(scope="module")
def migrated(tmp_path_factory):
    out = tmp_path_factory.mktemp("kut") / "pending-migration.msgpack"
    ins = migration_inputs()
    return out, import_qemu(ins.pop("log"), out, **ins)


def test_pending_migration_clean(migrated):
    out, s = migrated
    m = s["metadata"]
    rec = m["reconstructed"]
    # 256 pending bits stored by the guest, read by KVM at EnableLPIs 0->1 on PE 3 and PE 2
    assert rec["pending_bits_by_reason"] == {"before_enable": 256}
    assert sorted(p["vcpu"] for p in rec["pending_bits"]) == [2, 3]
    assert all(len(p["intids_and_ack_lines"]) == 128 for p in rec["pending_bits"])
    assert len(rec["lpi_config_bytes"]) == 256 and rec["lpi_config_bytes"][0]["line"] > 0
    assert rec["lpi_config_bytes_by_reason"] == {"delivered_after_invall": 256}
    assert m["unexplained_acks"]["count"] == 0
    assert m["qemu_only_semantics_and_anomalies"] == {}
    mg = m["migration"]
    assert mg["lpis_carried"] == 256 and mg["pending_after_restore"] == 0
    assert [x["lines"] for x in mg["sides"]] == [1868, 0]  # the destination logged nothing
    e = m["emitted"]
    assert e["acks"] == 256 and e["commands"] == 261 == e["commands_from_cmdq"]
    assert e["expect_lpi"] == 512 and e["expect_pending_after_restore"] == 256
    exp = [r for r in TraceReader(out) if r[0] == F.EXPECT]
    assert sum(r[3] == "lpi" for r in exp) == 512 + 256  # the dumps, and after the restore
    reports = replay_clean(out)
    assert all(r.commands == 261 and not r.command_errors for r in reports)


def test_pending_migration_records(migrated):
    """Save on the source, a fresh VM, redistributors, CBASER first, RESTORE_TABLES, CTLR last."""
    out, _ = migrated
    recs = list(TraceReader(out))
    i = next(k for k, r in enumerate(recs) if r[0] == F.CTRL)
    ops = [(r[3], r[4], r[5]) for r in recs[i : i + 3]]
    assert ops == [("save_pending_tables", None, 0), ("save_tables", 0, 0), ("migrate", None, None)]
    rest = recs[i + 3 :]
    j = next(k for k, r in enumerate(rest) if r[0] == F.CTRL)
    assert rest[j][3:6] == ("restore_tables", 0, 0)
    regs = [(r[3], r[5]) for r in rest[:j]]
    redist = [o for f, o in regs if f == "redist"]
    assert redist[-2:] == [R.GICR_CTLR, R.GICR_CTLR] and R.GICR_PENDBASER in redist
    its = [o for f, o in regs if f == "its-user"]
    assert its[0] == R.GITS_CBASER and its[-2:] == [R.GITS_CREADR, R.GITS_CWRITER]
    assert rest[j + 1][3:6] == ("its-user", 0, R.GITS_CTLR)


def _strip(src, dst, drop):
    with open(src, "rb") as f, open(dst, "wb") as g:
        for obj in msgpack.Unpacker(f, raw=False, strict_map_key=False):
            if not (isinstance(obj, list) and drop(obj)):
                g.write(msgpack.packb(obj, use_bin_type=True))


def test_pending_migration_reconstruction_and_save_matter(migrated, tmp_path):
    out, s = migrated
    tables = {p["table"] for p in s["metadata"]["reconstructed"]["pending_bits"]}
    nobits = tmp_path / "nobits.msgpack"
    _strip(out, nobits, lambda o: o[0] == F.MEM and o[3] - o[3] % 0x10000 in tables)
    (r,) = replay(nobits, policies=["none"])
    assert r.failure_count == 256  # every acknowledge fails without the pending bits
    nosave = tmp_path / "nosave.msgpack"
    _strip(out, nosave, lambda o: o[0] == F.CTRL and o[3] == "save_pending_tables")
    (r,) = replay(nosave, policies=["lru-v6.8"])
    # the stale bits would make the destination deliver 256 LPIs QEMU's never delivered
    assert r.failure_count == 256


def test_cli_migration_json(tmp_path):
    ins = migration_inputs()
    out = tmp_path / "m.msgpack"
    args = ["import", "qemu", str(ins.pop("log")), "-o", str(out), "--json"]
    for k, v in ins.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    j = json.loads(r.output)
    assert j["out"] == str(out) and j["records"] > 0 and j["msis"] == 0
    assert j["expectations"]["pending_after_restore"] == 256
    assert j["reconstructions"]["pending_bits"] == 256 and j["unexplained_acks"] == 0
    assert j["migration"]["lpis_carried"] == 256 and j["warnings"] == {}
    r = runner.invoke(
        app,
        [
            "import",
            "qemu",
            str(KUT / "its-introspection.trace.log.gz"),
            "-o",
            str(tmp_path / "x"),
            "--dst-cmdq",
            "y",
        ],
    )
    assert r.exit_code == 2 and "need --migrate-to" in r.output


# --- synthetic kvm-unit-tests captures ---------------------------------------------------------


class FakeQemu:
    """QEMU 7.2 `log` lines for a kvm-unit-tests-like guest; the queue dump of what it sent."""

    def __init__(self, vcpus=4, t0=0):
        self.lines, self.t, self.slot, self.cmdq, self.vcpus = [], t0, 0, {}, vcpus
        self.prop = {}  # INTID -> config byte the guest stored

    def destination(self):
        """The migration's destination, 10 ms later, with the guest's memory carried over
        (stored config bytes, command queue and its write slot)."""
        d = FakeQemu(self.vcpus, t0=self.t + 10_000)
        d.prop, d.slot, d.cmdq = dict(self.prop), self.slot, dict(self.cmdq)
        return d

    def ev(self, name, text, tid=900):
        self.t += 7
        sec, usec = divmod(self.t, 1_000_000)
        self.lines.append(f"{tid}@{1_800_000_000 + sec}.{usec:06d}:{name} {text}\n")

    def its_write(self, off, data, size=8):
        self.ev("gicv3_its_write", f"GICv3 ITS write: offset {off:#x} data {data:#x} size {size}")

    def redist(self, cpu, off, data, size=8):
        self.ev(
            "gicv3_redist_write",
            f"GICv3 redistributor {cpu:#x} write: offset {off:#x} data {data:#x} "
            f"size {size} secure 0",
        )

    def boot(self):
        """its_enable_defaults: tables, queue, LPIs on every PE, ITS on (as in the capture)."""
        self.its_write(0x100, 0x8107000040230200)
        self.its_write(0x108, 0x8407000040240200)
        self.its_write(0x80, 0x800000004025000F)
        for cpu in range(self.vcpus):
            self.redist(cpu, R.GICR_PROPBASER, 0x4027000D)
            self.redist(cpu, R.GICR_PENDBASER, 0x40280000 + 0x10000 * cpu)
        for cpu in range(self.vcpus):
            self.redist(cpu, R.GICR_CTLR, 3, 4)
        self.its_write(0, 1, 4)
        return self

    def cmd(self, name, text, **fields):
        op = R.COMMAND_OPCODES[name]
        self.ev(
            "gicv3_its_process_command",
            f"GICv3 ITS: processing command at offset {self.slot:#x}: {op:#x}",
        )
        self.ev(f"gicv3_its_cmd_{name.lower()}", "GICv3 ITS: command " + text)
        if name == "MAPC" and fields["RDbase"] < self.vcpus:
            self.ev(
                "gicv3_its_cte_write",
                f"GICv3 ITS: Collection Table write for ICID {fields['ICID']:#x}: valid "
                f"{fields['V']} RDBase {fields['RDbase']:#x}",
            )
        self.cmdq[self.slot] = encode_command(name, **fields)
        self.slot += 1
        self.its_write(0x88, self.slot * 32)

    def mapd(self, dev, itt, valid=True):
        self.cmd(
            "MAPD",
            f"MAPD DeviceID {dev:#x} Size 0x7 ITT_addr {itt >> 8:#x} V {int(valid)}",
            DeviceID=dev,
            Size=7,
            ITT_addr=itt >> 8,
            V=int(valid),
        )

    def mapc(self, icid, pe):
        self.cmd("MAPC", f"MAPC ICID {icid:#x} RDbase {pe:#x} V 1", ICID=icid, RDbase=pe, V=1)

    def mapti(self, dev, ev, icid, intid):
        self.cmd(
            "MAPTI",
            f"MAPTI DeviceID {dev:#x} EventID {ev:#x} ICID {icid:#x} pINTID {intid:#x}",
            DeviceID=dev,
            EventID=ev,
            ICID=icid,
            pINTID=intid,
        )

    def int_(self, dev, ev, ok=True):
        self.cmd("INT", f"INT DeviceID {dev:#x} EventID {ev:#x}", DeviceID=dev, EventID=ev)
        if not ok:  # -d guest_errors, unprefixed
            self.lines.append(f"process_its_cmd: invalid command attributes: devid {dev} ...\n")

    def inv(self, dev, ev):
        self.cmd("INV", f"INV DeviceID {dev:#x} EventID {ev:#x}", DeviceID=dev, EventID=ev)

    def invall(self, icid):
        self.cmd("INVALL", "INVALL", ICID=icid)

    def ack(self, cpu, intid):
        self.ev(
            "gicv3_icc_iar1_read",
            f"GICv3 ICC_IAR1 read cpu {cpu:#x} value {intid:#x}",
            tid=1000 + cpu,
        )

    def deliver(self, dev, ev, cpu, intid):
        """INT, and the guest on cpu acknowledges the LPI it made pending."""
        self.int_(dev, ev)
        self.ack(cpu, intid)

    def set_config(self, intid, byte=0xA3):
        self.prop[intid] = byte  # a plain store: no trace event

    def write(self, d, name):
        (d / f"{name}.trace.log").write_text("".join(self.lines))
        (d / f"{name}.cmdq.txt").write_text(
            "# slot dw0 dw1 dw2 dw3\n"
            + "".join(
                f"{s:#06x} "
                + " ".join(
                    f"{int.from_bytes(raw[i : i + 8], 'little'):016x}" for i in (0, 8, 16, 24)
                )
                + "\n"
                for s, raw in sorted(self.cmdq.items())
            )
        )
        (d / f"{name}.lpiprop.txt").write_text(
            "# entries equal to the most common value 0x00 are omitted\n"
            + "".join(f"{i:#x} {b:#04x}\n" for i, b in sorted(self.prop.items()))
        )
        (d / f"{name}.cmdline.txt").write_text(f"qemu-system-aarch64 -smp {self.vcpus} -m 128\n")
        return {k: d / f"{name}.{k}.txt" for k in ("cmdq", "lpiprop", "cmdline")}


def setup1(q):
    """its_setup1: devices 2 and 7, collections 3 -> PE 3 and 2 -> PE 2, LPIs 8195/8196."""
    q.set_config(8195)
    q.set_config(8196)
    q.mapd(2, 0x4026A000)
    q.mapd(7, 0x4026B000)
    q.mapc(3, 3)
    q.mapc(2, 2)
    q.invall(2)
    q.invall(3)
    q.mapti(2, 20, 3, 8195)
    q.mapti(7, 255, 2, 8196)


def _import(tmp_path, q, name, dst=None):
    ins = q.write(tmp_path, name)
    kw = {}
    if dst is not None:
        d = dst.write(tmp_path, name + "-dst")
        kw = dict(
            migrate_to=tmp_path / f"{name}-dst.trace.log", **{f"dst_{k}": v for k, v in d.items()}
        )
    out = tmp_path / f"{name}.msgpack"
    s = import_qemu(tmp_path / f"{name}.trace.log", out, **ins, **kw)
    assert s["metadata"]["unexplained_acks"]["count"] == 0
    return out, s


def test_synthetic_its_trigger(tmp_path):
    q = FakeQemu().boot()
    setup1(q)
    q.deliver(2, 20, 3, 8195)
    q.deliver(7, 255, 2, 8196)
    q.set_config(8195, 0xA2)  # disable, INV: the INT does not trigger
    q.inv(2, 20)
    q.int_(2, 20)
    q.set_config(8195, 0xA3)  # re-enable without INV: QEMU delivers at once, KVM at INVALL
    q.deliver(2, 20, 3, 8195)
    q.invall(3)
    q.deliver(2, 20, 3, 8195)
    q.mapd(2, 0x4026A000, valid=False)
    q.int_(2, 20, ok=False)  # no LPI after device unmap
    out, s = _import(tmp_path, q, "its-trigger")
    m = s["metadata"]
    why = m["reconstructed"]["lpi_config_bytes_by_reason"]
    assert why["int_not_delivered"] == 1 and why["delivered_after_map"] == 2
    assert why["delivered_after_invall"] == 1
    q_ = m["qemu_only_semantics_and_anomalies"]
    assert q_["acks_deferred_to_config_load"] == 1 and q_["int_unmapped"] == 1
    assert "acks_of_disabled_lpi" not in q_
    assert m["skipped_lines"] == {"qemu: process_its_cmd:": 1}
    reports = replay_clean(out)
    for r in reports:
        assert r.command_errors == {R.E_ITS_INT_UNMAPPED_INTERRUPT: 1}, r.policy
    # the deferred acknowledge sits right after the INVALL that enabled the LPI in KVM
    recs = list(TraceReader(out))
    k = [i for i, r in enumerate(recs) if r[0] == F.COMMAND and r[4][0] == R.GITS_CMD_INVALL][-1]
    assert recs[k + 1][0] == F.ACK and recs[k + 1][3:] == (3, 8195)


def test_synthetic_its_migration(tmp_path):
    q = FakeQemu().boot()
    setup1(q)
    d = q.destination()
    d.deliver(2, 20, 3, 8195)
    d.deliver(7, 255, 2, 8196)
    out, s = _import(tmp_path, q, "its-migration", dst=d)
    m = s["metadata"]
    assert m["migration"]["lpis_carried"] == 2 and m["migration"]["pending_after_restore"] == 0
    # the bytes were stored before MAPTI; the deliveries after migration prove them enabled
    assert m["reconstructed"]["lpi_config_bytes_by_reason"] == {"delivered_after_map": 2}
    reports = replay_clean(out)
    assert all(not r.command_errors for r in reports)


def test_synthetic_its_migrate_unmapped_collection(tmp_path):
    q = FakeQemu().boot()
    setup1(q)
    q.mapti(2, 0, 0, 8192)  # collection 0 was never mapped: KVM creates it unmapped
    q.set_config(8192)
    d = q.destination()
    d.mapc(0, 0)
    d.invall(0)
    d.deliver(7, 255, 2, 8196)
    d.deliver(2, 0, 0, 8192)
    out, s = _import(tmp_path, q, "its-migrate-unmapped-collection", dst=d)
    m = s["metadata"]
    assert m["migration"]["lpis_carried"] == 3
    # 8192 and 8195 are never delivered on the source: their bytes come from its final table
    why = m["reconstructed"]["lpi_config_bytes_by_reason"]
    assert why == {"final_table_map": 2, "delivered_after_map": 1}
    reports = replay_clean(out)
    assert all(not r.command_errors and r.commands > 0 for r in reports)


def test_synthetic_pending_bit_without_enable_is_unexplained(tmp_path):
    """An acknowledge nothing explains (no MSI, no INT, no pending load since) is counted and
    fails in replay: the importer invents nothing without evidence."""
    q = FakeQemu().boot()
    setup1(q)
    q.deliver(2, 20, 3, 8195)
    q.ack(3, 8195)  # a second delivery with no trigger and no EnableLPIs write
    q.write(tmp_path, "x")
    _, meta, _ = convert(
        tmp_path / "x.trace.log",
        **{k: tmp_path / f"x.{k}.txt" for k in ("cmdq", "lpiprop", "cmdline")},
    )
    assert meta["unexplained_acks"]["count"] == 1
    assert meta["unexplained_acks"]["examples"][0]["intid"] == 8195


def test_never_delivered_lpi_gets_the_final_byte(tmp_path):
    """An LPI configured and mapped but never triggered: its byte comes from --lpiprop, so the
    final `lpi` expectation (priority, enabled) holds."""
    q = FakeQemu().boot()
    setup1(q)
    q.set_config(8196, 0x53)  # priority 0x50, enabled; never delivered
    out, s = _import(tmp_path, q, "never")
    assert s["metadata"]["reconstructed"]["lpi_config_bytes_by_reason"] == {"final_table_map": 2}
    replay_clean(out)
    exp = [r[4] for r in TraceReader(out) if r[0] == F.EXPECT and r[3] == "lpi"]
    assert {"intid": 8196, "exists": True, "priority": 0x50, "enabled": True} in exp


def test_gz_destination_with_no_lines_is_valid(tmp_path):
    q = FakeQemu().boot()
    setup1(q)
    ins = q.write(tmp_path, "s")
    empty = tmp_path / "d.trace.log.gz"
    empty.write_bytes(gzip.compress(b""))
    out = tmp_path / "o.msgpack"
    s = import_qemu(tmp_path / "s.trace.log", out, **ins, migrate_to=empty)
    assert s["metadata"]["migration"]["sides"][1]["lines"] == 0
    replay_clean(out)


def test_line_shapes_event_or_qemu_message(tmp_path):
    """QEMU's own messages begin with a word and a colon, even an event's name; an event is
    `[stamp:]name text`. Only the latter is parsed; an unknown gicv3_its_* event is an error."""
    q = FakeQemu().boot()
    q.lines.insert(1, "gicv3_its_cmd_mapd: invalid command attributes: dte.valid 0\n")
    q.lines.insert(2, "gicv3_its_write: invalid guest write at offset 0000000000000008 size 4\n")
    q.lines.insert(3, "some other text\n")
    q.lines.insert(4, "\n")
    q.write(tmp_path, "shapes")
    _, meta, _ = convert(tmp_path / "shapes.trace.log")
    assert meta["skipped_lines"] == {
        "qemu: gicv3_its_cmd_mapd:": 1,
        "qemu: gicv3_its_write:": 1,
        "some": 1,  # without stamps, `name text` of an event this importer does not handle
        "(not an event)": 1,
    }
    q.lines.insert(5, "7@1800000000.000001:gicv3_its_cmd_vsgi GICv3 ITS: command VSGI\n")
    q.write(tmp_path, "shapes2")
    with pytest.raises(Exception, match=r"line 6: unknown ITS trace event 'gicv3_its_cmd_vsgi'"):
        convert(tmp_path / "shapes2.trace.log")


def test_synthetic_register_only_without_command_line(tmp_path):
    """Reads and writes of ITS registers only: one vCPU, the reads checked on what KVM shares."""
    q = FakeQemu()
    q.ev("gicv3_its_read", "GICv3 ITS read: offset 0x8 data 0x1f0001efb1 size 8")
    q.its_write(0x4, 0xFFFFFFFF, 4)
    q.ev("gicv3_its_read", "GICv3 ITS read: offset 0x4 data 0x43b size 4")
    q.its_write(0x100, 0x8107000040230200)
    q.ev("gicv3_its_read", "GICv3 ITS read: offset 0x100 data 0x8107000040230200 size 8")
    q.ev("gicv3_its_read", "GICv3 ITS read: offset 0xffe8 data 0x3b size 4")
    log = tmp_path / "r.trace.log"
    log.write_text("".join(q.lines))
    out = tmp_path / "r.msgpack"
    s = import_qemu(log, out)
    assert s["vm"]["vcpus"] == 1 and s["metadata"]["emitted"]["expect_its_reg"] == 4
    replay_clean(out)


def test_synthetic_error_cases_replay_as_kvm_answers(tmp_path):
    """A MAPC to a processor the VM lacks, an INVALL of a collection never mapped and an INT
    of an unmapped event: QEMU refuses each one (no table write, a guest_errors line); KVM
    returns its E_ITS_* code. The trace keeps the commands, the replay gives KVM's answers."""
    q = FakeQemu().boot()
    setup1(q)
    q.mapc(5, 7)  # PE 7 on a 4-vCPU VM
    q.invall(9)  # collection 9 never mapped
    q.int_(2, 21, ok=False)  # event 21 of device 2 never mapped
    q.deliver(2, 20, 3, 8195)
    out, s = _import(tmp_path, q, "errors")
    assert s["vm"]["vcpus"] == 4
    flags = s["metadata"]["qemu_only_semantics_and_anomalies"]
    assert flags["mapc_procnum_oor"] == 1 and flags["invall_unmapped_collection"] == 1
    assert flags["int_unmapped"] == 1
    for r in replay_clean(out):
        assert r.command_errors == {
            R.E_ITS_MAPC_PROCNUM_OOR: 1,
            R.E_ITS_INVALL_UNMAPPED_COLLECTION: 1,
            R.E_ITS_INT_UNMAPPED_INTERRUPT: 1,
        }, r.policy
