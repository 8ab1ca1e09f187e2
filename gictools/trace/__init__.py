"""Trace format v1: format (tags, header), reader (streaming), writer (streaming), Recorder.

See docs/trace-format.md. TraceReader, TraceWriter and Recorder are importable from here;
they load on first use, so importing a submodule pulls in nothing else. The importer of
QEMU logs is the package gictools.trace.qemu (docs/import-qemu.md).
"""

_EXPORTS = {
    "TraceReader": "gictools.trace.reader",
    "TraceWriter": "gictools.trace.writer",
    "Recorder": "gictools.trace.recorder",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'gictools.trace' has no attribute {name!r}")
