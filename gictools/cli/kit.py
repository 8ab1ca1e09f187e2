"""What every verb shares for failing and printing: one-line errors, stdout that may close,
JSON documents (docs/cli-json.md).

Light on purpose: `gictools --help` imports this module, so nothing heavy (rich, numpy,
pyarrow, the model) is imported at module level.

    with kit.errors():                      # GictoolsError/OSError -> one line, exit 2
        ...
    kit.echo(text) / kit.print_json(doc)    # stdout; a closed pipe ends quietly (exit 0)
"""

import contextlib
import json
import math
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import typer

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 0, 1, 2
STDIO = "-"  # a trace read from stdin, an output written to stdout
JSON_SCHEMA_VERSION = 1


def need_matplotlib() -> None:
    """--plot: fail before the work, not after, when the plot extra is not installed."""
    from gictools import plotting

    if not plotting.available():
        fail(plotting.MISSING)


def describe(e: Exception | str) -> str:
    """An error as the project words it: `FILE: No such file or directory` for an OSError
    (not Python's `[Errno 2] ...: 'FILE'`), the message of anything else, on one line."""
    if isinstance(e, OSError) and e.strerror:
        where = e.filename if e.filename is not None else None
        text = f"{os.fsdecode(where)}: {e.strerror}" if where is not None else e.strerror
        if e.filename2 is not None:
            text += f" (-> {os.fsdecode(e.filename2)})"
        return text
    return " ".join(str(e).split("\n")) if str(e) else type(e).__name__


def fail(e: Exception | str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """One line on stderr (what, where), no traceback, then exit (2: bad input)."""
    typer.echo(f"gictools: error: {describe(e)}", err=True)
    raise typer.Exit(code)


def _stdout_to_devnull() -> None:
    """Point fd 1 at /dev/null, so that the interpreter's last flush of what is still
    buffered cannot complain (a traceback-like 'Exception ignored' on stderr)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)


def pipe_closed() -> NoReturn:
    """The reader of stdout went away (`| head`): stop quietly with success, as cat does."""
    _stdout_to_devnull()
    raise typer.Exit(EXIT_OK)


def stdout_failed(e: OSError) -> NoReturn:
    """Writing stdout failed (`> /dev/full`: ENOSPC; EIO, EBADF): one line, exit 2."""
    if isinstance(e, BrokenPipeError):
        pipe_closed()
    _stdout_to_devnull()
    fail(f"stdout: {e.strerror or e}")


@contextlib.contextmanager
def errors() -> Iterator[None]:
    """The CLI's one error edge: the user's bad file or argument is one line and exit 2;
    a closed stdout pipe ends quietly with exit 0 (BrokenPipeError is an OSError)."""
    from gictools.errors import GictoolsError

    try:
        yield
    except BrokenPipeError:
        pipe_closed()
    except (GictoolsError, OSError) as e:
        fail(e)


def echo(text: str = "", *, err: bool = False) -> None:
    """A line on stdout (or stderr); a closed stdout pipe ends the program quietly, any other
    failure to write stdout is one line and exit 2."""
    try:
        typer.echo(text, err=err)
    except OSError as e:
        if err:
            raise
        stdout_failed(e)


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):  # numpy scalars and arrays
        return o.tolist()
    if isinstance(o, (bytes, bytearray, memoryview)):
        return bytes(o).hex()
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _finite(o: Any) -> Any:
    """NaN and infinities (a trace's metadata may hold them) as strings: JSON has no such
    numbers, and a consumer must never see Python's non-standard NaN."""
    if isinstance(o, float) and not math.isfinite(o):
        return str(o)
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def to_json(doc: Any, *, compact: bool = False) -> str:
    """doc as the CLI prints JSON: indented (or one line), keys in insertion order,
    numpy/bytes/paths converted (bytes as hex), never NaN."""
    kw = {"separators": (",", ":")} if compact else {"indent": 2}
    try:
        return json.dumps(doc, default=_json_default, allow_nan=False, **kw)
    except ValueError:
        return json.dumps(_finite(doc), default=_json_default, allow_nan=False, **kw)


def print_json(doc: Any) -> None:
    """Print one JSON document on stdout (docs/cli-json.md describes each verb's)."""
    echo(to_json(doc))


def print_result(json_out: bool, doc: Any, text: Callable[[], str], files=()) -> None:
    """A verb's result: doc as JSON (--json) or text() on stdout, then one `wrote FILE` line
    per file written (on stderr with --json, so that stdout stays one JSON document)."""
    if json_out:
        print_json(doc)
    else:
        echo(text())
    for f in files:
        echo(f"wrote {f}", err=json_out)


def print_report(kind: str, path, lines: list[str], json_out: bool, err=False, **extra) -> None:
    """A library report (lines of text): as they are, or as the `lines` of a JSON document."""
    if json_out:
        doc = json_doc(kind, file=os.fspath(path), **extra, report=lines)
        if err:
            echo(to_json(doc), err=True)
        else:
            print_json(doc)
    else:
        echo("\n".join(lines), err=err)


def integer_latencies(doc: Any) -> Any:
    """Every finite float under a key ending in `_ns`, at any depth, as whole ns: the JSON
    documents give times as integers (docs/cli-json.md), whatever the model computed in."""
    if isinstance(doc, dict):
        return {
            k: round(v)
            if isinstance(k, str)
            and k.endswith("_ns")
            and isinstance(v, float)
            and math.isfinite(v)
            else integer_latencies(v)
            for k, v in doc.items()
        }
    if isinstance(doc, (list, tuple)):
        return [integer_latencies(v) for v in doc]
    return doc


def json_doc(kind: str, **fields: Any) -> dict:
    """A top-level JSON object tagged with its schema name and version ("gictools.info/1")."""
    return {"schema": f"gictools.{kind}/{JSON_SCHEMA_VERSION}", **fields}
