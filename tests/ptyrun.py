"""Run gictools as a user at a terminal does: stdin, stdout and stderr on a pseudo-terminal
(what isatty() decides on: progress bars, colours, the "Try --help" line)."""

import os
import pty
import sys


def on_a_terminal(args, env=None, cwd=None) -> tuple[int, str]:
    """`python -m gictools ARGS` on a pseudo-terminal, env added to this process's; (exit
    code, everything it wrote, decoded: \\r and ANSI codes left in)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: its stdin/stdout/stderr are the pty
        try:
            if cwd:
                os.chdir(cwd)
            argv = [sys.executable, "-m", "gictools", *args]
            os.execve(sys.executable, argv, dict(os.environ, **(env or {})))
        finally:
            os._exit(127)  # never return into pytest in the forked child
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except OSError:  # EIO: the child is gone and the terminal closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace")
