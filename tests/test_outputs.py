"""gictools.outputs: every output whole or not at all, never over an input or a device node."""

import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
from contextlib import contextmanager

import pytest

from gictools.errors import OutputError
from gictools.outputs import AtomicOutput, check_output, remove_stale_temps, write_atomic
from gictools.trace.gen_lpi_stress import generate
from gictools.trace.reader import TraceReader
from gictools.trace.writer import TraceWriter

VM1 = {"vcpus": 1, "itses": [{"base": 0x8080000}]}


def temps(d):
    return sorted(n for n in os.listdir(d) if n.endswith(".tmp"))


@contextmanager
def fifo_read(path):
    """A FIFO at path and a thread reading it to its end; yields the list that its bytes are
    appended to once the writer closes it (complete when the with-block has left)."""
    os.mkfifo(path)
    got: list[bytes] = []

    def reader():
        with open(path, "rb") as f:
            got.append(f.read())

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        yield got
    finally:
        t.join(10)


@pytest.fixture
def trace(tmp_path):
    p = tmp_path / "t.msgpack"
    generate(p, 1, 1, 4, 2, "as-measured")
    return p


def test_two_writers_to_one_path_in_one_process(tmp_path):
    out = tmp_path / "o.bin"
    a, b = AtomicOutput(out), AtomicOutput(out)
    assert a.tmp != b.tmp
    a.file.write(b"A" * 5000)
    b.file.write(b"B" * 7000)
    a.commit()
    assert out.read_bytes() == b"A" * 5000
    b.commit()
    assert out.read_bytes() == b"B" * 7000
    assert temps(tmp_path) == []


def test_two_trace_writers_to_one_path(tmp_path):
    out = tmp_path / "t.msgpack"
    w1, w2 = TraceWriter(out, vm=VM1), TraceWriter(out, vm=VM1)
    w1.msi(0, 1, 2)
    w2.msi(0, 3, 4)
    w2.msi(0, 5, 6)
    w1.close()
    w2.close()
    assert TraceReader(out).header["vm"]["vcpus"] == 1
    assert sum(len(r[3]) if r[0] == 1 else 1 for r in TraceReader(out)) == 2
    assert temps(tmp_path) == []


def test_exception_leaves_nothing_and_keeps_the_old_file(tmp_path):
    out = tmp_path / "o.bin"
    out.write_bytes(b"old")
    with pytest.raises(RuntimeError), AtomicOutput(out) as o:
        o.file.write(b"new" * 100000)
        raise RuntimeError("boom")
    assert out.read_bytes() == b"old" and temps(tmp_path) == []


def test_mode_honours_umask_and_keeps_an_existing_files_bits(tmp_path):
    old = os.umask(0o027)
    try:
        write_atomic(tmp_path / "new", [b"x"])
        assert stat.S_IMODE(os.stat(tmp_path / "new").st_mode) == 0o640
        os.umask(0o022)
        write_atomic(tmp_path / "new2", [b"x"])
        assert stat.S_IMODE(os.stat(tmp_path / "new2").st_mode) == 0o644
        os.chmod(tmp_path / "new", 0o600)
        write_atomic(tmp_path / "new", [b"y"])
        assert stat.S_IMODE(os.stat(tmp_path / "new").st_mode) == 0o600
    finally:
        os.umask(old)


def test_image_mode_is_that_of_a_normal_file(tmp_path, trace):
    from gictools.saverestore import save_trace

    old = os.umask(0o022)
    try:
        save_trace(trace, tmp_path / "img")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "img").st_mode) == 0o644


def test_symlink_target_replaced_link_kept(tmp_path):
    (tmp_path / "real").write_bytes(b"old")
    os.symlink("real", tmp_path / "link")
    write_atomic(tmp_path / "link", [b"new"])
    assert os.path.islink(tmp_path / "link") and (tmp_path / "real").read_bytes() == b"new"


def test_fifo_is_written_directly_not_replaced(tmp_path):
    fifo = tmp_path / "fifo"
    with fifo_read(fifo) as got:
        write_atomic(fifo, [b"abc", b"def"])
    assert got == [b"abcdef"] and stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert temps(tmp_path) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_char_device_node_is_written_not_replaced(tmp_path, trace):
    from gictools.replay import Replayer
    from gictools.saverestore import save_trace

    node = tmp_path / "null"
    os.mknod(node, stat.S_IFCHR | 0o644, os.makedev(1, 3))
    save_trace(trace, node)
    Replayer(trace, out=node).run()
    generate(node, 1, 1, 2, 2, "as-measured")
    st = os.stat(node)
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert temps(tmp_path) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_block_device_refused(tmp_path):
    node = tmp_path / "blk"
    os.mknod(node, stat.S_IFBLK | 0o600, os.makedev(7, 200))
    with pytest.raises(OutputError, match="block device"):
        AtomicOutput(node)
    assert stat.S_ISBLK(os.stat(node).st_mode)


def test_write_error_names_the_users_path(tmp_path):
    with pytest.raises(OSError) as ei, AtomicOutput("/dev/full") as o:
        o.file.write(b"x" * (2 << 20))
    assert ei.value.filename == "/dev/full"


def test_file_size_limit_error_names_the_users_path_and_leaves_nothing(tmp_path):
    code = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100000, 100000))
        from gictools.outputs import write_atomic
        try:
            write_atomic({str(tmp_path / "out")!r}, [b"x" * 300000])
        except OSError as e:
            print(e.filename, e.errno)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == [str(tmp_path / "out"), "27"]  # EFBIG
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("how", ["same", "hardlink", "symlink"])
def test_same_file_as_input_refused_before_any_work(tmp_path, trace, how):
    from gictools.replay import Replayer
    from gictools.saverestore import save_trace

    before = trace.read_bytes()
    out = trace
    if how == "hardlink":
        out = tmp_path / "h"
        os.link(trace, out)
    elif how == "symlink":
        out = tmp_path / "s"
        os.symlink(trace, out)
    with pytest.raises(OutputError, match="same file as the input"):
        Replayer(trace, out=out)
    with pytest.raises(OutputError, match="same file as the input"):
        save_trace(trace, out)
    assert trace.read_bytes() == before and temps(tmp_path) == []


def test_import_refuses_to_overwrite_its_log(tmp_path):
    from gictools.trace.qemu import import_qemu

    log = tmp_path / "x.trace.log"
    log.write_text("garbage\n")
    with pytest.raises(OutputError, match="same file"):
        import_qemu(log, log)
    assert log.read_text() == "garbage\n"


def test_check_output_refusals(tmp_path):
    with pytest.raises(OutputError, match="is a directory"):
        check_output(tmp_path)
    with pytest.raises(OutputError, match="does not exist"):
        check_output(tmp_path / "nodir" / "x")
    assert check_output(tmp_path / "x") == "file"
    assert check_output("/dev/null") == "stream"


_CHILD = """
import sys, time
from gictools.outputs import AtomicOutput
o = AtomicOutput(sys.argv[1])
o.file.write(b"x" * 100)
o.file.flush()
print(o.tmp, flush=True)
time.sleep(60)
"""


def _default_signals():
    # a caller under nohup (SIGHUP ignored) hands that on; the writer rightly keeps an
    # ignored signal ignored, so the child starts from the default dispositions
    for s in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_DFL)


def _child_with_temp(out):
    p = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(out)],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_default_signals,
    )
    tmp = p.stdout.readline().strip()
    p.stdout.close()
    assert os.path.exists(tmp) and f"-{p.pid}-" in os.path.basename(tmp)
    return p, tmp


def test_sigkilled_writer_temp_is_removed_by_the_next_run(tmp_path):
    out = tmp_path / "o.bin"
    p, tmp = _child_with_temp(out)
    assert remove_stale_temps(tmp_path) == []  # a live writer's temp is kept
    p.kill()
    p.wait()
    assert os.path.exists(tmp)
    # the next run (a new process) sweeps the directory on its first write there
    subprocess.run(
        [
            sys.executable,
            "-c",
            f"from gictools.outputs import write_atomic; write_atomic({str(out)!r}, [b'ok'])",
        ],
        check=True,
        timeout=60,
    )
    assert not os.path.exists(tmp) and out.read_bytes() == b"ok"
    assert temps(tmp_path) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signal_removes_the_temp_and_writes_nothing(tmp_path, sig):
    out = tmp_path / "o.bin"
    p, tmp = _child_with_temp(out)
    p.send_signal(sig)
    try:
        rc = p.wait(30)
    finally:
        p.kill()
        p.wait()
    assert rc == -sig  # died by the signal (KeyboardInterrupt re-raises SIGINT at exit)
    assert os.listdir(tmp_path) == []


def test_atomic_path_for_writers_that_need_a_name(tmp_path):
    from gictools.outputs import atomic_path

    out = tmp_path / "o.bin"
    out.write_bytes(b"old")
    with atomic_path(out) as p:
        assert os.path.dirname(p) == str(tmp_path) and p != str(out)
        with open(p, "wb") as f:
            f.write(b"new")
        assert out.read_bytes() == b"old"
    assert out.read_bytes() == b"new" and temps(tmp_path) == []
    with pytest.raises(RuntimeError), atomic_path(out) as p:
        with open(p, "wb") as f:
            f.write(b"partial")
        raise RuntimeError
    assert out.read_bytes() == b"new" and temps(tmp_path) == []


def test_atomic_path_into_a_stream_copies_the_bytes(tmp_path):
    from gictools.outputs import atomic_path

    fifo = tmp_path / "fifo"
    with fifo_read(fifo) as got, atomic_path(fifo) as p, open(p, "wb") as f:
        f.write(b"x" * 100000)
    assert got == [b"x" * 100000] and stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_scratch_path_is_removed(tmp_path):
    from gictools.outputs import scratch_path

    with scratch_path(tmp_path, "part0") as p:
        with open(p, "wb") as f:
            f.write(b"x")
        assert temps(tmp_path) == [os.path.basename(p)]
    assert temps(tmp_path) == []
