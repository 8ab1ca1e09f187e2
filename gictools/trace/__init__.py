"""Trace format v1: format (tags, header), reader (streaming), writer (streaming).

See docs/trace-format.md. Import the submodules directly; this package imports nothing.
"""
