"""The one error tree of gictools.

    GictoolsError              the user's input is wrong: the CLI prints one line, exit 2
    ├── TraceFormatError       a trace file (record index, byte offset, field)
    ├── ImageError             an image or raw dump (byte offset, or restore step + KVM errno)
    ├── ImportFormatError      an importer's input, e.g. a QEMU log (line number)
    ├── ConfigError            an argument or VM configuration (also a ValueError)
    │   └── KernelVersionError     a --kernel / kernel= value that is malformed or not modelled
    └── OutputError            an output path that cannot be written safely (same file as an
                               input, a directory, a block device, a missing directory)

    GuestFault                 NOT a user error: a guest access outside RAM inside the model,
                               always caught there and turned into KVM's -EFAULT

Errors a guest can cause are never user errors: they are KVM's return values (0, a
positive E_ITS_* code or a negative errno), see gictools.model; GuestFault is only the
model's internal way to unwind to the handler that returns -EFAULT, so one escaping is a
bug, never the user's fault. I/O failures while writing an output (disk full, EIO) are
OSErrors naming the user's path, not the temporary file (gictools.outputs).
Bugs in a caller of the Python API (a bad argument type, an out-of-range field given to a
writer) are plain ValueError/TypeError, not part of this tree.
"""

import os

StrPath = str | os.PathLike[str]
"""A file path as the API takes it."""


class GictoolsError(Exception):
    """Base of every error in the user's input; reported as one line, exit 2."""


def _located(what: str, path: StrPath | None, *where: tuple[str, object]) -> str:
    """'PATH: PLACE: ...: what': the path, then each (format, value) place whose value is
    given (not None), in order; one spelling of where for every error below."""
    parts = [] if path is None else [str(path)]
    parts += [fmt.format(value) for fmt, value in where if value is not None]
    return f"{': '.join(parts)}: {what}" if parts else what


class TraceFormatError(GictoolsError):
    """A trace file is malformed; says which record, where, and what."""

    def __init__(
        self,
        what: str,
        *,
        record: int | None = None,
        offset: int | None = None,
        field: str | None = None,
        path: StrPath | None = None,
    ) -> None:
        self.what, self.record, self.offset, self.field, self.path = (
            what,
            record,
            offset,
            field,
            path,
        )
        super().__init__(
            _located(
                what,
                path,
                ("record {}", record),
                ("byte offset {}", offset),
                ("field {!r}", field),
            )
        )


class ImageError(GictoolsError):
    """An image could not be loaded or restored; carries the restore step and KVM's errno."""

    def __init__(
        self,
        what: str,
        *,
        step: str | None = None,
        errno: int | None = None,
        offset: int | None = None,
        path: StrPath | None = None,
    ) -> None:
        self.what, self.step, self.errno, self.offset, self.path = what, step, errno, offset, path
        msg = _located(what, path, ("step {}", step), ("byte offset {}", offset))
        if errno is not None:
            msg += f" (errno {errno})"
        super().__init__(msg)


class ImportFormatError(GictoolsError):
    """An input to an importer (e.g. a QEMU trace log) is malformed at a named line."""

    def __init__(self, what: str, *, line: int | None = None, path: StrPath | None = None) -> None:
        self.what, self.line, self.path = what, line, path
        super().__init__(_located(what, path, ("line {}", line)))


class ConfigError(GictoolsError, ValueError):
    """A bad argument or configuration (unknown policy, preset, VM shape, RAM slots...).

    Also a ValueError, so callers of the Python API that caught ValueError for a bad
    VM configuration keep working."""


class KernelVersionError(ConfigError):
    """A kernel version that is malformed or not modelled; carries the version given."""

    def __init__(self, what: str, *, version: object = None) -> None:
        self.version = version
        super().__init__(what)


class OutputError(GictoolsError):
    """An output path refused before anything is written; names the path and why."""

    def __init__(self, what: str, *, path: StrPath | None = None) -> None:
        self.what, self.path = what, path
        super().__init__(_located(what, path))


class GuestFault(Exception):
    """A guest-physical access outside guest RAM (KVM: -EFAULT). Not a user error: the
    model raises it from guest-memory accesses and catches it where KVM returns -EFAULT."""

    def __init__(self, gpa: int, size: int) -> None:
        self.gpa, self.size = gpa, size
        super().__init__(f"guest-physical access at {gpa:#x} (+{size}) is outside guest RAM")
