"""Shared CLI helpers: every verb reports, fails, draws progress and prints JSON the same way.

Light on purpose: `gictools --help` imports this module, so nothing heavy (rich, numpy,
pyarrow, the model) is imported at module level.

    with clikit.errors():                       # GictoolsError/OSError -> one line, exit 2
        clikit.check_outputs([out], inputs=[trace])   # before any work
        with clikit.progress("replay", total=rd.events_total, quiet=quiet) as bar:
            for rec in rd: ...; bar.advance(1)
    clikit.echo(text) / clikit.print_json(doc)  # stdout; a closed pipe ends quietly (exit 0)
"""

import contextlib
import glob
import json
import math
import os
import sys
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

import typer

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 0, 1, 2
STDIO = "-"  # a trace read from stdin, an output written to stdout

# --- choices ----------------------------------------------------------------------------------
ROUTINGS = ("as-measured", "fixed")


def _policy_names() -> tuple:
    from gictools.model.cache import policy_names

    return policy_names()


def _kernels() -> tuple:
    from gictools.model.kernel import MILESTONES  # a table, no model import

    return tuple(MILESTONES)


def _kernel_checked(value: str | None) -> str | None:
    """--kernel: X.Y or X.Y.Z (a stable point release), checked before any work."""
    if value is None:
        return None
    from gictools.errors import GictoolsError
    from gictools.model.kernel import parse_version

    try:
        parse_version(value)
    except GictoolsError as e:
        raise typer.BadParameter(str(e)) from None
    return value


def _presets() -> tuple:
    """The bundled latency presets: the TOML files' names (no import of the latency model)."""
    d = Path(__file__).parent / "latency" / "presets"
    return tuple(sorted(p.stem for p in d.glob("*.toml")))


KERNELS = _kernels()
# the cache policies' registry (importing it loads no numpy and no model beyond the policies)
CACHE_POLICIES = _policy_names()
PRESETS = _presets()
# Literal types are typer's choices: listed in --help, completed, case-insensitive below.
# (a repeatable option needs an Enum: typer takes list[Enum], not list[Literal]; its members
# are str, so they pass wherever a policy name does)
CacheName = StrEnum("CacheName", {n: n for n in CACHE_POLICIES})  # type: ignore[misc]
PresetChoice = StrEnum("PresetChoice", {n: n for n in PRESETS})  # type: ignore[misc]
SweepPresetChoice = PresetChoice  # fixed-v0 (no contention) is one of the bundled presets
RoutingName = Literal[ROUTINGS]  # type: ignore[valid-type]
PresetName = Literal[PRESETS]  # type: ignore[valid-type]

CacheOpt = Annotated[
    list[CacheName] | None,
    typer.Option(
        "--cache",
        "-c",
        case_sensitive=False,
        help="cache policy (repeat for several) [default: the trace kernel's own]",
        show_default=False,
    ),
]
KernelOpt = Annotated[
    str | None,
    typer.Option(
        callback=_kernel_checked,
        autocompletion=lambda: list(KERNELS),
        help=f"KVM version to model, X.Y or X.Y.Z ({', '.join(KERNELS)}, or a stable point "
        "release) [default: the trace's, else the newest]",
        show_default=False,
    ),
]


def _kernels_checked(values: list[str] | None) -> list[str] | None:
    for v in values or ():
        _kernel_checked(v)
    return values


KernelsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--kernel",
        callback=_kernels_checked,
        autocompletion=lambda: list(KERNELS),
        help=f"KVM version to model, X.Y or X.Y.Z ({', '.join(KERNELS)}, or a stable point "
        "release); repeat for several [default: the trace's, else the newest]",
        show_default=False,
    ),
]
PresetOpt = Annotated[
    PresetName | None,
    typer.Option(case_sensitive=False, help="latency preset (bundled)"),
]
PresetsOpt = Annotated[
    list[PresetChoice] | None,
    typer.Option(
        "--preset", case_sensitive=False, help="latency preset (bundled; repeat for several)"
    ),
]
SweepPresetsOpt = Annotated[
    list[SweepPresetChoice] | None,
    typer.Option(
        "--preset",
        case_sensitive=False,
        help="latency preset (bundled; fixed-v0: no contention, fixed cost per outcome) (repeat)",
    ),
]
PresetFileOpt = Annotated[Path | None, typer.Option(help="latency preset file (TOML)")]
PresetFilesOpt = Annotated[
    list[Path] | None,
    typer.Option("--preset-file", help="latency preset file (TOML; repeat for several)"),
]
SeedOpt = Annotated[
    int | None,
    typer.Option(help="a stochastic interleaving with this seed [default: lock-step]"),
]
HostCpusOpt = Annotated[
    int | None,
    typer.Option(help="host CPUs for the contention model (default: the preset's)"),
]
PlotOpt = Annotated[
    Path | None, typer.Option(help="write PNG plots into this directory (needs gictools[plot])")
]
RoutingOpt = Annotated[
    RoutingName,
    typer.Option(
        case_sensitive=False,
        help="as-measured: every collection on vCPU 0 (the selftest before Oct 2025); fixed",
        show_default=True,
    ),
]
# vgic_lpi_stress's flags, shared by `gen lpi-stress` and `predict lpi-stress`
VcpusOpt = Annotated[int, typer.Option("--vcpus", "-v", min=1, help="vCPUs", show_default=True)]
DevicesOpt = Annotated[
    int,
    typer.Option("--devices", "-d", min=1, help="devices (one injector each)", show_default=True),
]
EventsOpt = Annotated[
    int, typer.Option("--events", "-e", min=1, help="events per device", show_default=True)
]
IterationsOpt = Annotated[
    int, typer.Option("--iterations", "-i", min=1, help="iterations", show_default=True)
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="print the result as JSON (docs/cli-json.md)")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")]


def need_matplotlib() -> None:
    """--plot: fail before the work, not after, when the plot extra is not installed."""
    from gictools import plotting

    if not plotting.available():
        fail(plotting.MISSING)


# --- failing, printing --------------------------------------------------------------------------
def fail(e: Exception | str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """One line on stderr (what, where), no traceback, then exit (2: bad input)."""
    typer.echo(f"gictools: error: {e}", err=True)
    raise typer.Exit(code)


def pipe_closed() -> NoReturn:
    """The reader of stdout went away (`| head`): stop quietly with success, as cat does.
    stdout is pointed at /dev/null so that the interpreter's last flush cannot complain."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    raise typer.Exit(EXIT_OK)


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
    """A line on stdout (or stderr); a closed stdout pipe ends the program quietly."""
    try:
        typer.echo(text, err=err)
    except BrokenPipeError:
        pipe_closed()


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


def json_doc(kind: str, **fields: Any) -> dict:
    """A top-level JSON object tagged with its schema name and version ("gictools.info/1")."""
    return {"schema": f"gictools.{kind}/{JSON_SCHEMA_VERSION}", **fields}


JSON_SCHEMA_VERSION = 1


# --- inputs and outputs -------------------------------------------------------------------------
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
    if _isatty(sys.stdin):
        fail("refusing to read a trace from a terminal (pipe or redirect one into `-`)")
    return sys.stdin.buffer


def input_name(path: Path | str) -> str:
    return "<stdin>" if os.fspath(path) == STDIO else os.fspath(path)


def output_target(path: Path | str):
    """What a writer takes: the path, or stdout's binary stream for `-o -`."""
    return sys.stdout.buffer if os.fspath(path) == STDIO else path


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
        try:
            with open(tmp, "rb") as f:
                shutil.copyfileobj(f, sys.stdout.buffer, 1 << 20)
            sys.stdout.buffer.flush()
        except BrokenPipeError:
            pipe_closed()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _isatty(stream) -> bool:
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
            if binary and _isatty(sys.stdout):
                fail("refusing to write binary data to a terminal (redirect or pipe `-o -`)")
            continue
        if out is None:
            continue
        p = Path(out)
        if p.is_dir():
            fail(f"{p}: is a directory (give a file name)")
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.is_dir():
            fail(f"{p}: directory {parent} does not exist")
        if p.exists():
            if not os.access(p, os.W_OK) and not os.access(parent, os.W_OK):
                fail(f"{p}: not writable")
            for i in inputs:
                if i is not None and os.fspath(i) != STDIO and os.path.exists(i):
                    with contextlib.suppress(OSError):
                        if os.path.samefile(i, p):
                            fail(f"{p}: the output is the input {i}; choose another name")
        if not os.access(parent, os.W_OK | os.X_OK):
            fail(f"{p}: directory {parent} is not writable")


# --- progress ------------------------------------------------------------------------------------
class _NoBar:
    """The progress object when no bar is drawn (piped, --quiet, --json)."""

    total = None
    completed = 0

    def advance(self, n: int = 1) -> None:
        self.completed += n

    def update(self, completed: int) -> None:
        self.completed = completed

    def set_total(self, total: int | None) -> None:
        self.total = total

    def describe(self, label: str) -> None:
        """A new label, e.g. the stage of a multi-stage verb."""


class _Bar(_NoBar):
    """Calls per event are cheap: rich is told only every _step events (and at the end)."""

    def __init__(self, prog, task, total):
        self._prog, self._task, self._sent = prog, task, 0
        self.set_total(total)

    def _send(self):
        self._sent = self.completed
        self._prog.update(self._task, completed=self.completed)

    def advance(self, n: int = 1) -> None:
        self.completed += n
        if self.completed - self._sent >= self._step:
            self._send()

    def update(self, completed: int) -> None:
        self.completed = completed
        if completed - self._sent >= self._step:
            self._send()

    def set_total(self, total: int | None) -> None:
        self.total = total
        self._step = max(1, (total or 0) // 1000) if total else 1024
        self._prog.update(self._task, total=total)

    def describe(self, label: str) -> None:
        self._prog.update(self._task, description=label)


def track(reader, label: str, *, quiet: bool = False):
    """A TraceReader's records, with a progress bar in events (the trace's own counts give
    the total when it has them)."""
    with progress(label, reader.events_total, quiet=quiet) as bar:
        for rec in reader:
            yield rec
            bar.update(reader.events_read)


def progress_shown(quiet: bool = False) -> bool:
    """Whether a bar would be drawn: stderr is a terminal and not --quiet."""
    return not quiet and _isatty(sys.stderr)


@contextlib.contextmanager
def progress(label: str, total: int | None = None, *, quiet: bool = False, unit: str = "events"):
    """A progress bar on stderr counted in `unit` (events/s), drawn only when stderr is a
    terminal and not quiet; total None draws an indeterminate bar that still counts.
    Yields an object with advance(n), update(completed) and set_total(total)."""
    if not progress_shown(quiet):
        yield _NoBar()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class _Rate(ProgressColumn):
        def render(self, task):
            s = task.finished_speed or task.speed
            return Text("" if s is None else f"{s:,.0f} {unit}/s", style="progress.data.speed")

    prog = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        _Rate(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = prog.add_task(label, total=total)
    with prog:
        bar = _Bar(prog, task, total)
        yield bar
        bar._send()
