"""The sweep's fork server starts with SIGINT blocked, so that each worker it forks holds a
Ctrl-C from its fork until supervise._bootstrap ignores it: a Ctrl-C to the process group
while a worker was starting raised KeyboardInterrupt in it (exit 1, its cell recorded as
failed in an interrupted sweep; seen in test_ctrl_c_on_the_command_line)."""

import subprocess
import sys
import textwrap

SIGINT_BIT = 1 << (2 - 1)  # /proc/PID/status SigBlk: bit signum-1

SCRIPT = textwrap.dedent(
    """
    from multiprocessing import forkserver

    from gictools.sweep.run import _start_fork_server

    def blocked(pid):
        with open(f"/proc/{pid}/status") as f:
            return next(ln for ln in f if ln.startswith("SigBlk:")).split()[1]  # hex

    _start_fork_server()
    print(blocked(forkserver._forkserver._forkserver_pid), blocked("self"))
    """
)


def test_fork_server_holds_sigint_for_its_workers():
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    server, driver = (int(w, 16) for w in r.stdout.split())
    assert server & SIGINT_BIT  # each fork starts with it held
    assert not driver & SIGINT_BIT  # the driver's own mask is restored
