"""Progress bars on stderr: drawn only on a terminal and without --quiet; cheap to call per
event (rich is told only every ~0.1 % of the total)."""

import contextlib
from typing import Any

from gictools.cli.files import isatty


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
    import sys

    return not quiet and isatty(sys.stderr)


@contextlib.contextmanager
def progress(label: str, total: int | None = None, *, quiet: bool = False, unit: str = "events"):
    """A progress bar on stderr counted in `unit` (events/s), drawn only when stderr is a
    terminal and not quiet; total None draws an indeterminate bar that still counts.
    Yields an object with advance(n), update(completed) and set_total(total)."""
    if not progress_shown(quiet):
        yield _NoBar()
        return
    prog = _rich_progress(unit)
    task = prog.add_task(label, total=total)
    with prog:
        bar = _Bar(prog, task, total)
        yield bar
        bar._send()


def _rich_progress(unit: str):
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

    return Progress(
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


class StagedProgress:
    """A progress callback (stage, done, total) drawing one progress bar per stage:
    "replay" counts events, "write"/"restore" count bytes."""

    UNITS = {"replay": "events"}

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.stack = contextlib.ExitStack()
        self.stage: str | None = None
        self.bar: Any = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stack.close()

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if stage != self.stage:
            self.stack.close()
            self.stage = stage
            self.bar = self.stack.enter_context(
                progress(stage, total, quiet=self.quiet, unit=self.UNITS.get(stage, "bytes"))
            )
        self.bar.update(done)
