"""Progress a person can follow. A run reports stage starts and ends, and steps of long stages
(training epochs, recipe candidates, tune trials), to a Progress:

- `Plain` (not a terminal: CI, pipes; or any callable given as `progress`): one line per stage
  start and end, with its duration; steps are not printed (a CI log is read after the fact).
- `Live` (a terminal): a rich display, a line per running stage with its elapsed time and a bar
  per step task; each finished stage stays as one line with its duration.

Everything goes to stderr, so `--json` output on stdout stays clean; `--quiet` is no Progress.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TextIO


class Progress:
    """The interface; this base reports nothing."""

    def line(self, text: str) -> None:
        """A message (a stale directory removed, a recipe chosen)."""

    def stage_start(self, run: str, stage: str) -> None:
        pass

    def stage_end(self, run: str, stage: str, seconds: float, note: str = "") -> None:
        pass

    def step(self, task: str, done: int, total: int | None) -> None:
        """`done` of `total` steps of a task (`train: epochs`, `quantize: litert candidates`)."""

    def close(self) -> None:
        pass

    def __call__(self, text: str) -> None:  # a Progress is also a line callback
        self.line(text)


class Plain(Progress):
    """One line per message, stage start and stage end, to a callable (default: stderr)."""

    def __init__(self, write: Callable[[str], None] | None = None) -> None:
        self.write = write or (lambda text: print(text, file=sys.stderr, flush=True))

    def line(self, text: str) -> None:
        self.write(text)

    def stage_start(self, run: str, stage: str) -> None:
        self.write(f"{run}: {stage} ...")

    def stage_end(self, run: str, stage: str, seconds: float, note: str = "") -> None:
        self.write(f"{run}: {stage} done in {seconds:.1f} s" + (f" ({note})" if note else ""))


class Live(Progress):
    """A rich live display on a terminal."""

    def __init__(self, stream: TextIO | None = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.progress import (
            Progress as RichProgress,
        )

        self.console = Console(file=stream or sys.stderr)
        self.bars = RichProgress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.bars.start()
        self.tasks: dict[str, Any] = {}

    def line(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    def stage_start(self, run: str, stage: str) -> None:
        self.tasks[f"{run}: {stage}"] = self.bars.add_task(f"{run}: {stage}", total=None)

    def stage_end(self, run: str, stage: str, seconds: float, note: str = "") -> None:
        key = f"{run}: {stage}"
        if key in self.tasks:
            self.bars.remove_task(self.tasks.pop(key))
        for name in [n for n in self.tasks if n.startswith(f"{stage}: ")]:
            self.bars.remove_task(self.tasks.pop(name))  # the stage's step bars end with it
        self.line(f"{key} done in {seconds:.1f} s" + (f" ({note})" if note else ""))

    def step(self, task: str, done: int, total: int | None) -> None:
        if task not in self.tasks:
            self.tasks[task] = self.bars.add_task(task, total=total)
        self.bars.update(self.tasks[task], completed=done, total=total)

    def close(self) -> None:
        self.bars.stop()


def for_terminal(quiet: bool, stream: TextIO | None = None) -> Progress | None:
    """The CLI's Progress: None when quiet, Live on a terminal, Plain otherwise."""
    if quiet:
        return None
    stream = stream or sys.stderr
    if stream.isatty():
        return Live(stream)
    return Plain(lambda text: print(text, file=stream, flush=True))


def adapt(progress: Progress | Callable[[str], None] | None) -> Progress:
    """What a run reports to: a Progress as it is, a line callable as Plain, None as silence."""
    if progress is None:
        return Progress()
    if isinstance(progress, Progress):
        return progress
    return Plain(progress)
