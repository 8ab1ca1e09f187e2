"""The CLI's inputs and outputs: globs, `-` for stdin/stdout, spooling, output checks made
before any work."""

import contextlib
import glob
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from gictools.cli.kit import STDIO, fail, stdout_failed


def expand_inputs(paths: list[Path]) -> list[Path]:
    """Shell globs the shell left alone (quoted, or no match) expanded here; `-` kept.
    A pattern that matches nothing stays as given, so the open names it in the error."""
    out: list[Path] = []
    for p in paths:
        s = os.fspath(p)
        if s != STDIO and glob.has_magic(s) and not os.path.exists(s):
            hits = sorted(glob.glob(s))
            if hits:
                out.extend(Path(h) for h in hits)
                continue
        out.append(p)
    if sum(os.fspath(p) == STDIO for p in out) > 1:
        fail("stdin (-) can be read only once")
    return out


def input_source(path: Path | str):
    """What a reader takes: the path, or stdin's binary stream for `-` (not a terminal:
    a trace is binary, and waiting for one typed in helps nobody)."""
    if os.fspath(path) != STDIO:
        return path
    if isatty(sys.stdin):
        fail("refusing to read a trace from a terminal (pipe or redirect one into `-`)")
    return sys.stdin.buffer


def input_name(path: Path | str) -> str:
    return "<stdin>" if os.fspath(path) == STDIO else os.fspath(path)


def output_target(path: Path | str):
    """What a writer takes: the path, or stdout's binary stream for `-o -`."""
    return stdout_binary() if os.fspath(path) == STDIO else path


def stdout_binary():
    """stdout's binary stream; exit 2 with one line when there is none (`>&-`)."""
    out = getattr(sys.stdout, "buffer", None)
    if out is None:
        fail("stdout is closed: nowhere to write")
    return out


@contextlib.contextmanager
def spooled_inputs(paths: list[Path]) -> Iterator[tuple[list[Path], list[str]]]:
    """(paths, names) with `-` replaced by a temporary copy of stdin, named "<stdin>".

    For verbs that need a trace twice (a replay's SHA-256 goes into the Parquet schema
    metadata, which is fixed when the writer opens; parallel policies reopen the trace):
    stdin is checked, then copied (bounded) to $TMPDIR, removed on exit: gictools.streams."""
    from gictools.errors import GictoolsError
    from gictools.streams import spooled_stdin

    with contextlib.ExitStack() as stack:
        out = []
        for p in paths:
            if os.fspath(p) == STDIO:
                try:
                    p = Path(stack.enter_context(spooled_stdin(input_source(p))))
                except GictoolsError as e:  # not a trace, too long, $TMPDIR full
                    fail(e)
            out.append(p)
        yield out, [input_name(p) if os.fspath(p) == STDIO else os.fspath(p) for p in paths]


@contextlib.contextmanager
def spooled_output(path: Path | None) -> Iterator[Path | None]:
    """A path to write to: `path` itself, or for `-o -` a temporary file copied to stdout
    once the verb succeeded (a failed run writes nothing, as for a file; Parquet and the
    parallel splice then need no seekable stdout)."""
    if path is None or os.fspath(path) != STDIO:
        yield path
        return
    import shutil
    import tempfile

    d = tempfile.mkdtemp(prefix="gictools-out-")
    tmp = Path(d) / "out"
    try:
        yield tmp
        dest = stdout_binary()
        try:
            with open(tmp, "rb") as f:
                shutil.copyfileobj(f, dest, 1 << 20)
            dest.flush()
        except OSError as e:  # a closed pipe ends quietly; a full disk is one line, exit 2
            stdout_failed(e)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def isatty(stream) -> bool:
    """stream is an open terminal (False for None, a closed or detached stream)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def check_outputs(outs, inputs=(), *, binary: bool = True) -> None:
    """Run before any work: every output must be writable where it is going, and none may be
    one of the inputs. Exits 2 at once with the reason (a directory, a missing or read-only
    directory, the same file as an input, binary data for `-` when stdout is a terminal)."""
    for out in outs:
        if out is not None and os.fspath(out) == STDIO:
            if binary and isatty(sys.stdout):
                fail("refusing to write binary data to a terminal (redirect or pipe `-o -`)")
            continue
        if out is not None:
            _check_file_output(Path(out), inputs)


def _check_file_output(p: Path, inputs) -> None:
    """gictools.outputs.check_output's rules (one owner: a directory, a block device, a
    socket, a missing directory, an input's inode), then what only a CLI can say before any
    work: the file or its directory not writable by this user."""
    from gictools.errors import OutputError
    from gictools.outputs import check_output

    try:
        check_output(p, [i for i in inputs if i is not None and os.fspath(i) != STDIO])
    except OutputError as e:
        fail(e)
    parent = p.parent if str(p.parent) else Path(".")
    if p.exists() and not os.access(p, os.W_OK) and not os.access(parent, os.W_OK):
        fail(f"{p}: not writable")
    if not os.access(parent, os.W_OK | os.X_OK):
        fail(f"{p}: directory {parent} is not writable")


# what a file's first bytes say it is (a hint when a verb is given the wrong kind of file)
_KINDS = (
    (b"GICTIMG\0", "image"),  # gictools.image.MAGIC
    (b"PAR1", "parquet"),
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)


def sniff(path: Path | str) -> str | None:
    """ "image", "trace" (a msgpack map naming the trace format), "compressed" (gzip, zstd),
    "parquet", "text", "binary", or None when path is `-`, not a regular file or unreadable
    (the verb's own open reports it)."""
    if os.fspath(path) == STDIO or not os.path.isfile(path):
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return None
    for magic, kind in _KINDS:
        if head.startswith(magic):
            return "compressed" if kind in ("gzip", "zstd") else kind
    is_map = head[:1] and (0x80 <= head[0] <= 0x8F or head[0] in (0xDE, 0xDF))
    if is_map and b"gictools-trace" in head:  # gictools.trace.format.FORMAT_NAME
        return "trace"
    if b"\0" in head:
        return "binary"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:  # not a character cut at the end of the sample
            return "binary"
    return "text"


def refuse_kind(path: Path | str, kinds: dict[str, str]) -> None:
    """Exit 2 with `PATH: WHAT` when the file's first bytes say it is one of kinds."""
    kind = sniff(path)
    if kind in kinds:
        fail(f"{path}: {kinds[kind]}")
