"""A trace read from stdin (`replay -`, `save -`), spooled to a file because the verb needs
it twice (the SHA-256 goes into the Parquet metadata before the events; --jobs workers
reopen it). The copy is checked and bounded, never blind:

- the magic and the header are checked on the first bytes, as `info -` does, before
  anything more is copied (`yes | gictools replay -` stops at once, naming what stdin
  looks like), then every record as it is copied (the trace reader reads through the
  copy), so garbage after a valid start stops the copy where it begins;
- the copy stops at MAX_SPOOL_BYTES (documented in docs/outputs.md "A trace on stdin") and at the
  free space of $TMPDIR less FREE_RESERVE_BYTES or 5 % (a spool never fills the disk
  others use), with one line saying which and what to do;
- the spool is a gictools temporary file (gictools.outputs.scratch_path): removed when the
  verb ends, on an exception or Ctrl-C, on SIGTERM/SIGHUP, and swept by the next run if
  SIGKILL left it;
- an I/O error writing it (a full or read-only $TMPDIR) is one line naming $TMPDIR.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from typing import BinaryIO, cast

from gictools.errors import GictoolsError

MAX_SPOOL_BYTES = 64 << 30  # a trace on stdin larger than this: give it as a file
FREE_RESERVE_BYTES = 256 << 20  # left free in $TMPDIR (or 5 % of it, if less)
CHUNK = 1 << 20
STDIN_NAME = "<stdin>"


class StdinError(GictoolsError):
    """stdin could not be spooled (too long, or $TMPDIR full): one line, exit 2."""


class _Tee:
    """What the trace reader reads stdin through: every byte it takes also goes to the
    spool, so the header is checked on the first bytes and nothing is read twice."""

    def __init__(self, src: BinaryIO, dst: BinaryIO, spool: _Spool):
        self.src, self.dst, self.spool = src, dst, spool
        self.name = STDIN_NAME

    def read(self, size: int = -1) -> bytes:
        """The reader wraps what its source raises: a spool failure ends the stream
        here and is raised by spooled_stdin instead."""
        data = self.src.read(CHUNK if size is None or size < 0 else size)
        try:
            self.spool.write(self.dst, data)
        except StdinError as e:
            self.spool.failed = e
            return b""
        return data


class _Spool:
    def __init__(self, tmpdir: str, limit: int | None):
        self.tmpdir, self.n = tmpdir, 0
        self.failed: StdinError | None = None
        self.limit, self.why = _bound(tmpdir, limit)

    def write(self, dst: BinaryIO, data: bytes) -> None:
        self.n += len(data)
        if self.n > self.limit:
            raise StdinError(f"{STDIN_NAME}: {self.why.format(self.limit, self.tmpdir)}")
        view = memoryview(data)
        try:
            while view:  # a raw write may be short (a file size limit, a disk filling up)
                n = dst.write(view)
                if not n:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                view = view[n:]
        except OSError as e:
            raise self.error(e) from None

    def error(self, e: OSError) -> StdinError:
        return StdinError(
            f"{STDIN_NAME}: cannot copy it to $TMPDIR ({self.tmpdir}): {e.strerror}; "
            "set TMPDIR to a directory with room, or give the trace as a file"
        )


_TOO_LONG = "longer than {0:,} bytes (the limit given)"
_NO_ROOM = (
    "does not fit in $TMPDIR ({1}): {0:,} bytes free, keeping some free for others; "
    "set TMPDIR to a directory with room, or give the trace as a file"
)
_MAX = (
    f"longer than {MAX_SPOOL_BYTES:,} bytes, gictools' limit for a trace on stdin; "
    "give the trace as a file"
)


def _bound(tmpdir: str, limit: int | None) -> tuple[int, str]:
    """(bytes the spool may hold, the message when it would hold more)."""
    if limit is not None:
        return limit, _TOO_LONG
    try:
        st = os.statvfs(tmpdir)
    except OSError:
        return MAX_SPOOL_BYTES, _MAX
    reserve = min(FREE_RESERVE_BYTES, st.f_blocks * st.f_frsize // 20)
    free = st.f_bavail * st.f_frsize - reserve
    if free < MAX_SPOOL_BYTES:
        return max(0, free), _NO_ROOM
    return MAX_SPOOL_BYTES, _MAX


@contextlib.contextmanager
def spooled_stdin(src: BinaryIO, *, limit: int | None = None) -> Iterator[str]:
    """The path of a checked, bounded copy of the trace on src (see the module doc); the
    copy is removed when the block ends. Raises TraceFormatError (naming "<stdin>") for a
    stream that is not a trace, StdinError when it cannot be copied whole."""
    from gictools.errors import TraceFormatError
    from gictools.outputs import scratch_path
    from gictools.trace.reader import TraceReader

    d = tempfile.gettempdir()
    spool = _Spool(d, limit)
    with contextlib.ExitStack() as stack:
        try:
            path = stack.enter_context(scratch_path(d, "stdin.trace"))
            dst = stack.enter_context(open(path, "wb", buffering=0))
        except OSError as e:
            raise spool.error(e) from None
        try:
            with TraceReader(cast(BinaryIO, _Tee(src, dst, spool))) as rd:  # checked as copied
                for _ in rd:
                    pass
        except TraceFormatError:
            if spool.failed is not None:
                raise spool.failed from None
            raise
        while True:
            data = src.read(CHUNK)
            if not data:
                break
            spool.write(dst, data)
        dst.close()
        yield path
