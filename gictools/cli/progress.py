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


BAR_WIDTH = 60  # a bar never takes more columns than this (nor than the terminal has)
LABEL_WIDTH = 12
UNRATED = ("cells", "runs")  # units too coarse for a rate


def si(n: float, unit: str = "") -> str:
    """n in at most 4 characters plus a prefix (and B for bytes): 999, 12.3k, 1.23M, 12.3MB."""
    suffix = "B" if unit == "bytes" else ""
    if n < 999.5:
        return f"{n:.0f}{suffix}"
    for scale, p in ((1e3, "k"), (1e6, "M"), (1e9, "G"), (1e12, "T")):
        text = f"{n / scale:.3g}"
        if float(text) < 1000:
            return f"{text}{p}{suffix}"
    return f"{n / 1e12:.0f}T{suffix}"


def _clock(s: float | None) -> str:
    if s is None:
        return "-:--"
    s = int(s)
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


def stats_text(completed: float, total: float | None, speed: float | None, elapsed, unit: str):
    """The text right of the bar: 42% 4.2M/10M 5.1M/s 0:02<0:03 (at most 36 columns)."""
    rate = "" if not speed or unit in UNRATED else f" {si(speed, unit)}/s"
    if not total:
        count = f"{si(completed, unit)}{rate} " if completed else ""
        return f"{count}{_clock(elapsed)}"
    left = (total - completed) / speed if speed else None
    pct = min(100, int(100 * completed / total))
    return (
        f"{pct:3d}% {si(completed, unit)}/{si(total, unit)}{rate} {_clock(elapsed)}<{_clock(left)}"
    )


def _rich_progress(unit: str):
    import shutil

    from rich.console import Console
    from rich.progress import BarColumn, Progress, ProgressColumn
    from rich.table import Column
    from rich.text import Text

    class _Label(ProgressColumn):
        def render(self, task):
            d = str(task.description)
            d = d if len(d) <= LABEL_WIDTH else d[: LABEL_WIDTH - 1] + "…"
            return Text(d.ljust(LABEL_WIDTH))

    class _Stats(ProgressColumn):
        def render(self, task):
            speed = task.finished_speed or task.speed
            text = stats_text(task.completed, task.total, speed, task.elapsed, unit)
            return Text(text, style="progress.data.speed")

    width = min(BAR_WIDTH, shutil.get_terminal_size((BAR_WIDTH, 24)).columns)
    return Progress(
        _Label(table_column=Column(width=LABEL_WIDTH, no_wrap=True)),
        BarColumn(bar_width=None, table_column=Column(ratio=1)),
        _Stats(table_column=Column(no_wrap=True)),
        console=Console(stderr=True, width=width),
        expand=True,
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
