"""Every file gictools writes goes through here, so that it appears whole or not at all.

    with AtomicOutput(path, inputs=[trace]) as out:   # refused up front: OutputError
        out.file.write(data)                          # an exception here: nothing written
    # committed: path holds the whole file

A regular (or not yet existing) output is written to a temporary file next to it,
``.NAME.gictools-PID-RANDOM.tmp``, created O_EXCL with mode 0666 (so the kernel applies
the umask, as for any new file; an existing file's permission bits are kept), then
flushed, fsync'ed and renamed onto NAME. Symlinks are followed: the link's target is
replaced, the link stays. A FIFO or a character device (/dev/null, a pipe or terminal
named as /dev/stdout) is written directly and never renamed over, since it is a stream:
there "whole or nothing" cannot hold, and abort only closes it. Directories, block
devices, sockets and an output that is the same file (st_dev, st_ino) as one of the
inputs are refused before any work, with OutputError.

Temporary files never outlive their writer:
- an exception (KeyboardInterrupt from SIGINT included) aborts the writer, removing it;
- SIGTERM and SIGHUP, while a temporary file is open and nobody else handles those
  signals, remove every temporary file of this process, then end it by the same signal;
- atexit removes any temporary file never committed;
- SIGKILL cannot be caught: each writer holds a flock on its temporary file, and the
  first writer in a directory (per process) removes temporary files whose PID is dead
  and whose lock is free (remove_stale_temps).

I/O errors while writing (disk full, EIO) are OSErrors naming the user's path, never
the temporary file's.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import io
import os
import re
import secrets
import shutil
import signal
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Self

from gictools.errors import OutputError, StrPath

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

_TEMP_RE = re.compile(r"^\..+\.gictools-(\d+)-[0-9a-f]+\.tmp$")
_CLEANUP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
_live: dict[str, int] = {}  # temporary path -> owner PID (a forked child must not touch them)
_lock = threading.Lock()
_scanned: set[str] = set()  # directories already swept of stale temps by this process
_handlers_installed = _atexit_registered = False


# --- checks ------------------------------------------------------------------------------------


def check_output(path: StrPath, inputs: Iterable[StrPath | None] = ()) -> str:
    """Refuse an output path that cannot be written safely; returns "file" or "stream".

    Call it before any work: a directory, a block device, a socket, a missing parent
    directory, or the same file as one of `inputs` (None entries ignored) raise OutputError.
    """
    p = os.fspath(path)
    if not p:
        raise OutputError("empty output path", path=p)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise OutputError(f"cannot use as an output: {e.strerror}", path=p) from None
    if st is None:
        d = os.path.dirname(os.path.realpath(p))
        if not os.path.isdir(d):
            raise OutputError(f"directory {d} does not exist", path=p)
        return "file"
    m = st.st_mode
    if stat.S_ISDIR(m):
        raise OutputError("is a directory", path=p)
    if stat.S_ISBLK(m):
        raise OutputError(
            "is a block device; refusing to write to it "
            "(give a regular file, a FIFO or a character device such as /dev/null)",
            path=p,
        )
    if stat.S_ISSOCK(m):
        raise OutputError("is a socket; cannot write to it", path=p)
    for inp in inputs:
        if inp is None:
            continue
        try:
            ist = os.stat(inp)
        except OSError:
            continue  # a missing input is reported by whoever reads it
        if (ist.st_dev, ist.st_ino) == (st.st_dev, st.st_ino):
            raise OutputError(
                f"is the same file as the input {os.fspath(inp)}; refusing to overwrite an input",
                path=p,
            )
    return "file" if stat.S_ISREG(m) else "stream"


# --- stale temporary files ---------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def remove_stale_temps(directory: StrPath) -> list[str]:
    """Remove gictools temporary files in directory left by dead writers; returns their paths.

    Stale means: the PID in the name is not a live process here and nobody holds the
    file's lock (a writer in another PID namespace keeps its lock, so keeps its file)."""
    d = os.fspath(directory)
    removed: list[str] = []
    try:
        entries = list(os.scandir(d))
    except OSError:
        return removed
    for e in entries:
        m = _TEMP_RE.match(e.name)
        if not m or int(m.group(1)) == os.getpid() or _pid_alive(int(m.group(1))):
            continue
        try:
            fd = os.open(e.path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # a live writer holds it
        try:
            os.unlink(e.path)
            removed.append(e.path)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


# --- signals and exit --------------------------------------------------------------------------


def _remove_live_temps() -> None:
    me = os.getpid()
    for tmp, owner in list(_live.items()):
        if owner == me:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            _live.pop(tmp, None)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _remove_live_temps()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)  # die by the signal, as without the handler


def _install_handlers() -> None:
    """Clean up at exit, and on SIGTERM/SIGHUP where nobody else handles them (signal
    handlers can only be set from the main thread)."""
    global _handlers_installed, _atexit_registered
    if not _atexit_registered:
        _atexit_registered = True
        atexit.register(_remove_live_temps)
    if _handlers_installed or threading.current_thread() is not threading.main_thread():
        return
    _handlers_installed = True
    for sig in _CLEANUP_SIGNALS:
        try:
            if signal.getsignal(sig) == signal.SIG_DFL:
                signal.signal(sig, _on_signal)
        except (ValueError, OSError):
            pass


# --- the writer --------------------------------------------------------------------------------


class _Raw(io.FileIO):
    """The raw file under the buffer: write errors name the user's path, not the temp file."""

    def __init__(self, fd: int, user_path: str):
        super().__init__(fd, "wb", closefd=True)
        self._user_path = user_path

    def write(self, b: ReadableBuffer, /) -> int:
        try:
            return super().write(b)
        except OSError as e:
            raise OSError(e.errno, f"cannot write: {e.strerror}", self._user_path) from None


def _named(e: OSError, what: str, path: str) -> OSError:
    return OSError(e.errno, f"{what}: {e.strerror}", path)


def temp_path(path: StrPath) -> str:
    """A fresh temporary name next to path, ``.NAME.gictools-PID-RANDOM.tmp``: hidden (so
    pyarrow.dataset and globs skip it) and known to remove_stale_temps."""
    d, name = os.path.split(os.fspath(path))
    return os.path.join(d, f".{name}.gictools-{os.getpid()}-{secrets.token_hex(4)}.tmp")


class WholeOrNothing:
    """A writer used as a context manager: a normal exit commits its output, an exception
    aborts it, so a ``with`` block leaves the whole output or none (one rule for every writer)."""

    def commit(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class AtomicOutput(WholeOrNothing):
    """One output file, written whole or not at all (see the module doc).

    `file` is a buffered binary file object; commit() publishes it, abort() drops it.
    As a context manager: commit on normal exit, abort on an exception."""

    def __init__(
        self, path: StrPath, *, inputs: Iterable[StrPath | None] = (), buffering: int = 1 << 20
    ) -> None:
        self.path = os.fspath(path)
        self.kind = check_output(self.path, inputs)
        self.tmp: str | None = None
        self._done = False
        if self.kind == "stream":
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NOCTTY)
            except OSError as e:
                raise _named(e, "cannot open", self.path) from None
            if stat.S_ISREG(os.fstat(fd).st_mode):  # replaced by a file since the check
                os.close(fd)
                self.kind = "file"
        if self.kind == "file":
            fd = self._create_temp()
        raw = None
        try:  # nothing may leak when set-up fails here (MemoryError for the buffer)
            raw = _Raw(fd, self.path)
            self.file = io.BufferedWriter(raw, buffering)
        except BaseException:
            if raw is None:
                os.close(fd)
            else:
                raw.close()
            if self.tmp is not None:
                self._drop_temp()
            raise

    def _create_temp(self) -> int:
        self.target = os.path.realpath(self.path)
        d, name = os.path.split(self.target)
        with _lock:
            if d not in _scanned:
                _scanned.add(d)
                remove_stale_temps(d)
            _install_handlers()
        try:
            mode = stat.S_IMODE(os.stat(self.target).st_mode) & 0o777
        except OSError:
            mode = None  # a new file: 0666 & ~umask, applied by the kernel
        while True:
            tmp = temp_path(self.target)
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
            except FileExistsError:
                continue
            except OSError as e:
                raise _named(
                    e,
                    "cannot create the temporary file in its directory (needed to write "
                    "it whole or not at all)",
                    self.path,
                ) from None
            break
        with _lock:
            _live[tmp] = os.getpid()
        self.tmp = tmp
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pass  # a filesystem without flock: the PID alone marks the file as ours
        if mode is not None:
            try:
                os.fchmod(fd, mode)
            except OSError as e:
                os.close(fd)
                self._drop_temp()
                raise _named(e, "cannot set the mode of the file next to it", self.path) from None
        return fd

    def _drop_temp(self) -> None:
        assert self.tmp is not None
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass
        with _lock:
            _live.pop(self.tmp, None)

    def commit(self) -> None:
        """Flush, fsync and rename onto the path (a stream: flush and close)."""
        if self._done:
            return
        try:
            self.file.flush()
            if self.tmp is not None:
                try:
                    os.fsync(self.file.fileno())
                except OSError as e:
                    raise _named(e, "cannot write", self.path) from None
            self.file.close()
            if self.tmp is not None:
                try:
                    os.replace(self.tmp, self.target)
                except OSError as e:
                    raise _named(e, "cannot rename the finished file onto it", self.path) from None
                with _lock:
                    _live.pop(self.tmp, None)
                _fsync_dir(os.path.dirname(self.target))
        except BaseException:
            self.abort()
            raise
        self._done = True

    def abort(self) -> None:
        """Drop what was written: remove the temporary file (a stream is only closed)."""
        if self._done:
            return
        self._done = True
        try:
            if self.tmp is not None:
                self._drop_temp()
        finally:
            try:
                self.file.close()
            except OSError:
                pass  # flushing into the dropped file failed: nothing to keep


def _fsync_dir(d: str) -> None:
    """Make the rename durable; some filesystems cannot fsync a directory, which is fine."""
    try:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(
    path: StrPath, chunks: Iterable[bytes], *, inputs: Iterable[StrPath | None] = ()
) -> int:
    """Write an iterable of bytes to path whole or not at all; returns the bytes written."""
    n = 0
    with AtomicOutput(path, inputs=inputs) as out:
        for c in chunks:
            out.file.write(c)
            n += len(c)
    return n


_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def user_error(e: OSError, temps: dict[str, str]) -> OSError:
    """e as the user should read it: a temporary or scratch path in it (a key of temps) is
    replaced by the output it stands for; a full-disk error that names no file at all
    (pyarrow's "Error writing bytes to file") names the output. Any other error (about an
    input, say) is returned unchanged."""
    text = e.strerror if e.strerror is not None else str(e)
    filename = e.filename if isinstance(e.filename, str) else None
    hit = None
    for tmp, user in temps.items():
        if (filename and tmp in filename) or tmp in text:
            hit = user
            text = text.replace(tmp, user)
            filename = filename.replace(tmp, user) if filename else None
    if hit is None:
        if filename is not None or e.errno not in _WRITE_ERRNOS or not temps:
            return e
        hit = next(iter(temps.values()))
    if not text.startswith("cannot "):
        text = f"cannot write: {text}"
    return OSError(e.errno, text, filename or hit)


@contextlib.contextmanager
def atomic_path(path: StrPath, *, inputs: Iterable[StrPath | None] = ()) -> Iterator[str]:
    """For writers that need a file name (pyarrow paths, splicing parts...): yields a path to
    write, which becomes `path` whole on a normal exit and disappears on an exception.

    For a regular output the yielded path is the temporary file next to it (held, swept and
    cleaned up as AtomicOutput's); for a stream output it is a scratch file whose bytes are
    copied into the stream on exit."""
    out = AtomicOutput(path, inputs=inputs)
    scratch = None
    try:
        if out.tmp is not None:
            yield out.tmp
        else:
            with scratch_path(tempfile.gettempdir(), os.path.basename(out.path)) as scratch:
                yield scratch
                with open(scratch, "rb") as f:
                    shutil.copyfileobj(f, out.file, 1 << 20)
    except OSError as e:  # a full disk names the output, not the file standing in for it
        out.abort()
        raise user_error(e, {t: out.path for t in (out.tmp, scratch) if t}) from None
    except BaseException:
        out.abort()
        raise
    out.commit()


@contextlib.contextmanager
def scratch_path(directory: StrPath, name: str = "scratch") -> Iterator[str]:
    """A temporary file name in directory for intermediate data (e.g. parts to be joined):
    named, swept and removed on signals and at exit like AtomicOutput's, and removed when
    the block ends."""
    d = os.fspath(directory)
    with _lock:
        if d not in _scanned:
            _scanned.add(d)
            remove_stale_temps(d)
        _install_handlers()
    while True:
        tmp = temp_path(os.path.join(d, name))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
            break
        except FileExistsError:
            continue
    with _lock:
        _live[tmp] = os.getpid()
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield tmp
    finally:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        with _lock:
            _live.pop(tmp, None)
