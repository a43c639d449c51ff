"""SIGINT and SIGTERM during a run: raised as exceptions so every `finally` and cleanup runs, and
remembered, because a framework can swallow what a signal handler raises (tf2onnx wraps per-node
helpers in bare `except: pass`; a Ctrl-C landing there would be lost and the run would finish as
if nothing happened). `check()` raises a remembered signal again; the pipeline calls it after
every stage, before the stage's result is cached or used."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Terminated(BaseException):
    """SIGTERM, raised like KeyboardInterrupt so every `finally` and cleanup runs."""


_pending: type[BaseException] | None = None


def _on_signal(signum: int, frame: FrameType | None) -> None:
    global _pending
    _pending = KeyboardInterrupt if signum == signal.SIGINT else Terminated
    raise _pending()


@contextmanager
def handled() -> Iterator[None]:
    """Handle SIGINT and SIGTERM as above for the duration (main thread only)."""
    global _pending
    _pending = None
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _pending = None


def check() -> None:
    """Raise the signal received during the run, if something swallowed it."""
    if _pending is not None:
        raise _pending()
