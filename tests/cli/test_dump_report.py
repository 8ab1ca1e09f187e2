"""Issue 25 point 3: dump and info read like `trace-cmd report` on a real capture: times
sec.usec after the first record (absolute with --abs), --from/--to after the first record
too, IDs and INTIDs in hex, EXPECT records as text."""

from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from gictools.cli import app
from gictools.report import Clock, expect_text
from gictools.trace.writer import TraceWriter

runner = CliRunner()
EPOCH = 1_795_541_929_839_425_000  # a QEMU capture's clock: CLOCK_REALTIME in ns


def _capture(path):
    """Shaped like an imported QEMU capture: epoch times, one MSI per block, EXPECTs."""
    with TraceWriter(path, vm={"vcpus": 2, "itses": [{"base": 0x0808_0000}]}) as w:
        w.reg("its", 0, 0x0, 4, 0x80000000, False, t_ns=EPOCH)
        for k in range(3):
            t = EPOCH + (k + 1) * 1_000_000_000 + 1234  # 1, 2, 3 s later
            w.msi(0, 0x18, k, t_ns=t, injector=15785)
            w.expect("msi", {"ret": 1, "intid": 8205 + k, "vcpu": 1}, t_ns=t)
            w.ack(1, 8205 + k, t_ns=t + 151_000)
        w.expect("its_reg", {"its": 0, "offset": 0xFFE8, "size": 4, "value": 48, "mask": 240})
    return path


def _lines(*args):
    r = runner.invoke(app, ["dump", *map(str, args)])
    assert r.exit_code == 0, r.output
    return r.stdout.splitlines(), r.stderr


def test_times_relative_to_the_first_record(tmp_path):
    lines, _ = _lines(_capture(tmp_path / "c.msgpack"))
    times = [ln.split(": ")[0].split()[-1] for ln in lines]
    assert times[:4] == ["0.000000", "1.000001", "1.000001", "1.000152"]
    lines, _ = _lines(_capture(tmp_path / "c.msgpack"), "--abs", "-n", "1")
    assert lines[0].split(": ")[0].split()[-1] == "1795541929.839425"


def test_from_and_to_count_from_the_first_record(tmp_path):
    """Today's bug: `--from 1s` on a capture printed nothing (its times are epoch ns)."""
    p = _capture(tmp_path / "c.msgpack")
    lines, _ = _lines(p, "--from", "1s", "--to", "2.1s", "--op", "msi")
    assert [ln.split("EventID=")[1] for ln in lines] == ["0x0", "0x1"]
    lines, note = _lines(p, "--from", "9s")
    assert lines == [] and note == "gictools: note: no record of 11 matches\n"
    lines, _ = _lines(p, "--abs", "--from", f"{EPOCH + 2_500_000_000}", "--op", "msi")
    assert [ln.split("EventID=")[1] for ln in lines] == ["0x2"]


def test_ids_intids_hex_and_expect_as_text(tmp_path):
    lines, _ = _lines(_capture(tmp_path / "c.msgpack"))
    assert lines[1].endswith("MSI       inj=15785 its=0 DeviceID=0x18 EventID=0x0")
    assert lines[2].endswith("EXPECT    msi ret=1 intid=0x200d vcpu=1")
    assert lines[3].endswith("ACK       vCPU 1 acks INTID 0x200d")
    assert lines[-1].endswith("its_reg its=0 offset=0xffe8 size=4 value=0x30 mask=0xf0")
    assert not any("{" in ln for ln in lines)
    assert expect_text("cmd_error", {"error": -22}) == "cmd_error error=-EINVAL"
    assert expect_text("lpi", {"intid": 8192, "enabled": True}) == "lpi intid=0x2000 enabled=true"


def test_clock_text():
    c = Clock()
    c.start((0, 5_000_000_000, None, 0, 0, 0))  # an MSI record (tag 0) at 5 s
    assert c.text(5_000_000_000) == "0.000000" and c.text(6_234_567_891) == "1.234567"
    assert c.text(4_999_999_000) == "-0.000001"  # a record earlier than the first
    assert Clock(nsec=True, absolute=True).text(6_234_567_891) == "6.234567891"


def test_info_says_the_duration_and_where_the_clock_starts(tmp_path):
    r = runner.invoke(app, ["info", str(_capture(tmp_path / "c.msgpack"))])
    assert r.exit_code == 0
    assert "duration   3.000152 s (first record at 1795541929.839425 s" in r.stdout
    assert "DeviceIDs  0x18..0x18" in r.stdout


def test_ctrl_without_a_recorded_result(tmp_path):
    """A CTRL record may carry no result (ret nil): dump prints none (was a TypeError)."""
    p = tmp_path / "c.msgpack"
    with TraceWriter(p, vm={"vcpus": 1, "itses": [{"base": 0x0808_0000}]}) as w:
        w.ctrl("save_tables", 0, None, t_ns=0)
        w.ctrl("restore_tables", 0, -22, t_ns=0)
    lines, _ = _lines(p)
    assert lines[0].endswith("CTRL      save_tables its=0")
    assert lines[1].endswith("CTRL      restore_tables its=0 ret=-EINVAL")


OFFSETS = [0x0, 0x4, 0x80, 0x84, 0x88, 0x8C, 0x90, 0x100, 0x108, 0xFFE8]


@st.composite
def _records(draw):
    kind = draw(st.sampled_from(["reg", "mem", "ctrl", "msi"]))
    if kind == "reg":
        frame = draw(st.sampled_from(["its", "its-user", "redist"]))
        size = draw(st.sampled_from([4, 8]))
        value = draw(
            st.one_of(
                st.sampled_from([0, 1, 0x20, 0x40, 0xB80000004002040F]),
                st.integers(0, (1 << 64) - 1),
            )
        ) & ((1 << (8 * size)) - 1)
        index = 0 if frame != "redist" else draw(st.integers(0, 1))
        return (
            "reg",
            frame,
            index,
            draw(st.sampled_from(OFFSETS)),
            size,
            value,
            draw(st.booleans()),
        )
    if kind == "mem":
        gpa = draw(st.sampled_from([0x4000_0000, 0x4002_0000])) + 32 * draw(st.integers(0, 8))
        return ("mem", gpa, draw(st.binary(min_size=1, max_size=64)))
    if kind == "ctrl":
        op = draw(
            st.sampled_from(["save_tables", "restore_tables", "reset", "save_pending_tables"])
        )
        return ("ctrl", op, draw(st.sampled_from([None, 0, -22])))
    return ("msi", draw(st.integers(0, 3)), draw(st.integers(0, 3)))


@settings(deadline=None)  # the first example loads the model
@given(st.lists(_records(), min_size=1, max_size=30))
def test_dump_and_info_never_raise(recs):
    """Register, memory and control records in any order (the queue watch runs them through
    the model): dump and info print, whatever the ITS makes of them."""
    import tempfile
    from pathlib import Path

    from gictools.report import DumpFilter, TraceInfo, dump_lines
    from gictools.trace.reader import TraceReader

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "f.msgpack"
        with TraceWriter(p, vm={"vcpus": 2, "itses": [{"base": 0x0808_0000}]}) as w:
            for r in recs:
                if r[0] == "reg":
                    w.reg(*r[1:])
                elif r[0] == "mem":
                    w.mem(*r[1:])
                elif r[0] == "ctrl":
                    w.ctrl(r[1], 0, r[2])
                else:
                    w.msi(0, *r[1:])
        with TraceReader(p) as rd:
            lines = list(dump_lines(rd, DumpFilter()))
        assert len(lines) >= len(recs) - sum(r[0] == "msi" for r in recs)
        with TraceReader(p) as rd:
            inf = TraceInfo(rd.header)
            for rec in rd:
                inf.add(rec)
