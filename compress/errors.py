"""Exception hierarchy. Each error carries its exit code; only the CLI turns them into exits.

Messages are one line and name the thing that is wrong and what was expected.
"""

from __future__ import annotations


class CompressError(Exception):
    """Base class: a failure the user should see as one line, never as a traceback."""

    exit_code: int = 1


class UsageError(CompressError):
    """A bad flag, option value or config key (exit 2)."""

    exit_code = 2


class InputError(CompressError):
    """A bad input file or data set (exit 2)."""

    exit_code = 2


class StageError(CompressError):
    """A stage failed while running (exit 1)."""

    exit_code = 1


class GateFailed(CompressError):
    """A verification gate (drift, speedup) failed; the run's report was still written (exit 1)."""

    exit_code = 1

    def __init__(self, failures: list[str], run_dir: str | None = None) -> None:
        self.failures = failures
        self.run_dir = run_dir
        super().__init__("; ".join(failures))
