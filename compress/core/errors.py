"""Exception hierarchy and message formatting. Each error carries its exit code; only the CLI
turns them into exits.

Messages are one line and name the thing that is wrong and what was expected, in library terms
(config keys such as `verify.max_drift`); the CLI spells the flags the user typed.
"""

from __future__ import annotations

from typing import Any


class CompressError(Exception):
    """Base class: a failure the user should see as one line, never as a traceback."""

    exit_code: int = 1


class UsageError(CompressError):
    """A bad option value, config key or override (exit 2). `key` is the config key the message
    starts with (`verify.max_drift`, `data`), so the CLI can name the flag that set it."""

    exit_code = 2

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


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


def one_line(exc: BaseException) -> str:
    """`TypeName: first line of the message`, for one-line reports of a library's failure."""
    text = str(exc).strip()
    if getattr(exc, "self_describing", False):  # e.g. "TFLite converter crashed (SIGSEGV) ..."
        return text.splitlines()[0]
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


_SIMPLE = {
    "greater_than_equal": ("must be >= {}", "ge"),
    "greater_than": ("must be > {}", "gt"),
    "less_than_equal": ("must be <= {}", "le"),
    "less_than": ("must be < {}", "lt"),
    "literal_error": ("must be one of {}", "expected"),
    "string_too_short": ("must have at least {} character(s)", "min_length"),
}
_KINDS = {
    ("int_parsing", "int_type", "int_from_float"): "must be an integer",
    ("float_parsing", "float_type", "finite_number"): "must be a finite number",
    ("string_type",): "must be a string",
    ("dict_type", "model_type"): "must be a table",
    ("bool_type", "bool_parsing"): "must be true or false",
    ("extra_forbidden",): "is not a known setting",
    ("missing",): "is required",
}


def _describe(err: dict[str, Any]) -> str:
    ctx = err.get("ctx") or {}
    kind = err["type"]
    if kind in _SIMPLE:
        text, field = _SIMPLE[kind]
        return text.format(ctx[field])
    for kinds, text in _KINDS.items():
        if kind in kinds:
            return text
    if kind == "value_error":
        return str(ctx.get("error", err["msg"])).rstrip(".")
    return str(err["msg"]).rstrip(".").lower()


def validation_error(exc: Any, prefix: str = "") -> UsageError:
    """A pydantic ValidationError as one line for its first problem, keyed by the config key:
    `verify.max_drift must be >= 0.0. Got -1 instead.`"""
    err = exc.errors()[0]
    key = prefix + (".".join(str(p) for p in err["loc"]) or "config")
    line = f"{key} {_describe(err)}."
    if err["type"] != "missing":
        line += f" Got {err['input']!r} instead."
    return UsageError(line, key=key)
