"""Exceptions for errors in the user's files and arguments.

Errors a guest can cause are never exceptions: they are KVM's return values
(0, a positive E_ITS_* code or a negative errno), see gictools.model.
"""


class GictoolsError(Exception):
    """Base of every error gictools reports to the user as one line."""


class TraceFormatError(GictoolsError):
    """A trace file is malformed; says which record, where, and what."""

    def __init__(self, what, *, record=None, offset=None, field=None, path=None):
        self.what, self.record, self.offset, self.field, self.path = (
            what,
            record,
            offset,
            field,
            path,
        )
        where = []
        if path is not None:
            where.append(str(path))
        if record is not None:
            where.append(f"record {record}")
        if offset is not None:
            where.append(f"byte offset {offset}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{': '.join(where)}: {what}" if where else what)


class ImageError(GictoolsError):
    """An image could not be loaded or restored; carries the restore step and KVM's errno."""

    def __init__(self, what, *, step=None, errno=None, offset=None, path=None):
        self.what, self.step, self.errno, self.offset, self.path = what, step, errno, offset, path
        parts = [str(path)] if path is not None else []
        if step is not None:
            parts.append(f"step {step}")
        if offset is not None:
            parts.append(f"byte offset {offset}")
        msg = f"{': '.join(parts)}: {what}" if parts else what
        if errno is not None:
            msg += f" (errno {errno})"
        super().__init__(msg)


class ImportFormatError(GictoolsError):
    """An input to an importer (e.g. a QEMU trace log) is malformed at a named line."""

    def __init__(self, what, *, line=None, path=None):
        self.what, self.line, self.path = what, line, path
        parts = [str(path)] if path is not None else []
        if line is not None:
            parts.append(f"line {line}")
        super().__init__(f"{': '.join(parts)}: {what}" if parts else what)


class ConfigError(GictoolsError):
    """A bad argument or configuration (unknown policy, preset, kernel version...)."""
