"""A stop signal while a worker is being started (Supervisor._start) waits until the worker
is on the books, even when the kernel delivers it to another thread: the sweep's Ctrl-C
flake (test_ctrl_c_on_the_command_line), where a worker forked during a Ctrl-C ran on
unsupervised and left an empty partition directory after the driver had cleaned up."""

import contextlib
import os
import signal
import threading
import time

import pytest

from gictools.outputs import AtomicOutput
from gictools.supervise import Supervisor


def _sleeper(tmpdir):
    """Hold a temp file in tmpdir and sleep until stopped."""
    out = AtomicOutput(os.path.join(tmpdir, f"out-{os.getpid()}"))
    out.file.write(b"half")
    out.file.flush()
    time.sleep(60)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _ctrl_c_on_another_thread_after_fork(sup, started):
    """Wrap sup's process starts: once the worker is forked (before the supervisor records
    it), SIGINT goes to a helper thread that does not block it, as the kernel may deliver a
    terminal's Ctrl-C to a library's thread; its Python handler then runs in the main thread
    at the next bytecode, inside _start."""
    helper = threading.Thread(target=threading.Event().wait, args=(30,), daemon=True)
    helper.start()  # from here, with the stop signals unblocked
    ctx = sup.ctx

    class Ctx:
        Pipe = staticmethod(ctx.Pipe)

        @staticmethod
        def Process(**kw):
            p = ctx.Process(**kw)
            start = p.start

            def start_then_signal():
                start()
                started.append(p.pid)
                signal.pthread_kill(helper.ident, signal.SIGINT)
                for _ in range(30):  # the handler runs between these calls
                    time.sleep(0.01)

            p.start = start_then_signal
            return p

    sup.ctx = Ctx


def test_ctrl_c_on_another_thread_while_starting_stops_the_worker(tmp_path):
    started: list[int] = []
    sup = Supervisor(_sleeper, [(str(tmp_path),)], jobs=1)
    _ctrl_c_on_another_thread_after_fork(sup, started)
    try:
        with pytest.raises(KeyboardInterrupt), sup:  # Stopped, once the worker is booked
            for _ in sup.results():
                pass
        assert len(started) == 1
        deadline = time.monotonic() + 2
        while _alive(started[0]) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _alive(started[0]), "the worker outlived its supervisor's stop"
        assert [n for n in os.listdir(tmp_path) if ".gictools-" in n] == []
    finally:
        for pid in started:  # without the fix it sleeps on: do not leak it
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)


def test_signal_outside_a_start_still_raises_at_once():
    """The hold is only around the start: a Ctrl-C while waiting for results still
    raises there (KeyboardInterrupt), and stops the worker."""
    sup = Supervisor(time.sleep, [(60,)], jobs=1)
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt), sup:
        for ev in sup.results(timeout=0.05):
            if ev is None:
                os.kill(os.getpid(), signal.SIGINT)
    assert time.monotonic() - t0 < 5 and sup.running == 0


class _Finalizer:
    """Delivers SIGINT from __del__, where Python prints an exception as "Exception
    ignored" and drops it: the handler runs inside whatever code is executing, a
    Connection's __del__ included (seen in the sweep's Ctrl-C test: the sweep went on)."""

    def __del__(self):
        signal.raise_signal(signal.SIGINT)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the lost one
def test_a_stop_swallowed_by_a_finalizer_still_stops():
    sup = Supervisor(time.sleep, [(60,), (60,)], jobs=1)
    polls = 0
    with pytest.raises(KeyboardInterrupt), sup:
        for _ in sup.results(timeout=0.05):
            polls += 1
            if polls == 1:
                _Finalizer()  # dropped at once: the Stopped raised in __del__ is lost
            assert polls < 20, "the Ctrl-C was lost: the workers run on"
    assert polls == 1 and sup.running == 0
