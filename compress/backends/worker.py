"""Framework steps that can die natively run in a worker process, so a crash costs one artifact
or candidate, never the run.

The TFLite converter can take the process down with a SIGSEGV (seen calibrating a GRU for full
int8), and tf2onnx, onnxruntime's quantizer and the runtimes' loaders are native code too. Every
recipe build (conversion, calibration, quantization) runs in one spawned worker, reused for the
whole run (TensorFlow is imported there once, while the parent trains), and each built file is
loaded and run once there before the parent opens it. Inputs and results are files: the model as
a `.keras` file, the calibration samples as `.npz`, the artifact at the path the parent chose.
A crash becomes `WorkerCrashed` (the step, the signal and the framework's last log lines); the
next call starts a fresh worker.

The worker's temporary files (TensorFlow's SavedModels and autograph sources, the quantizers'
scratch) go to a temp directory of its own, which the parent removes when the worker stops,
crashes or is killed: a process that dies by a signal runs no cleanup of its own, and its
files would stay in /tmp (hundreds of `compress-savedmodel-*` directories, seen after a day
of runs).
"""

from __future__ import annotations

import atexit
import faulthandler
import multiprocessing
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from compress.core.fileio import SHARED_TEMP_ENV

LOG_TAIL_LINES = 3  # framework log lines quoted in a crash message
# "COMPONENT: PHASE" (e.g. "TFLite converter: conversion"): the worker kills itself with SIGSEGV
# when it reaches that step, as a converter that crashes there would (the tests use it).
FAULT_ENV = "COMPRESS_FAULT_INJECT"

# In the worker: the connection to the parent (None in the parent, where `step` is a no-op).
_conn: Any = None


class WorkerCrashed(RuntimeError):
    """The worker died (a signal or an abort) while running a step: the step's artifact is
    skipped with this message, and the run goes on."""

    self_describing = True  # errors.one_line shows the message without the type name

    def __init__(self, component: str, phase: str, exitcode: int | None, log_tail: list[str]):
        self.component, self.phase, self.exitcode, self.log_tail = (
            component,
            phase,
            exitcode,
            log_tail,
        )
        if exitcode is not None and exitcode < 0:
            try:
                how = signal.Signals(-exitcode).name
            except ValueError:
                how = f"signal {-exitcode}"
        else:
            how = f"exit code {exitcode}"
        message = f"{component} crashed ({how}) during {phase}"
        if log_tail:
            message += "; its last log lines: " + " | ".join(log_tail)
        super().__init__(message)


class ModelTransferError(RuntimeError):
    """A model could not be saved here and loaded in the worker faithfully (tfmot's QAT wrappers
    around a custom layer, seen reloading with mismatched weight shapes)."""


def step(component: str, phase: str) -> None:
    """Name what the worker is about to do (e.g. "TFLite converter", "int8 calibration"), so a
    crash inside it is reported as that step. No-op outside a worker."""
    if _conn is not None:
        _conn.send(("step", (component, phase)))
        if os.environ.get(FAULT_ENV) == f"{component}: {phase}":
            os.kill(os.getpid(), signal.SIGSEGV)  # fault injection, for the tests of this path


class Worker:
    """One spawned process that runs module-level functions for the parent, one call at a time.

    `log`: the file the worker's stdout and stderr (the frameworks' native logs) go to during a
    call (between calls they go nowhere, so a finished run's log does not change); a crash
    message quotes its last lines. Use as a context manager, or call `close()`; `shared()` is
    the process's worker, which the runs of one process take turns on (`begin_run`)."""

    def __init__(self, log: Path | None = None) -> None:
        self.log = Path(log) if log else None
        self.scratch = Path(tempfile.mkdtemp(prefix="compress-worker-"))
        self._proc: Any = None
        self._conn: Any = None
        self._tmp: str | None = None  # the running worker's own temp directory
        self._files: dict[int, tuple[Any, Path]] = {}  # id(object) -> (object kept alive, file)

    def start(self) -> None:
        """Start the worker if it is not running (it imports TensorFlow in the background)."""
        if self._proc is not None and self._proc.is_alive():
            return
        self._remove_tmp()  # a worker that died between calls
        self._tmp = tempfile.mkdtemp(prefix="compress-worker-tmp-")
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=_serve, args=(child, self._tmp), name="compress-worker", daemon=True
        )
        with main_hidden():
            proc.start()
        child.close()
        self._proc, self._conn = proc, parent

    def call(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`func(*args, **kwargs)` in the worker; its exception is raised here. A worker that
        dies raises WorkerCrashed naming the last `step` it announced."""
        self.start()
        offset = self.log.stat().st_size if self.log and self.log.exists() else 0
        current = ("worker", f"{getattr(func, '__name__', 'a call')}")
        try:
            log = str(self.log) if self.log else None
            self._conn.send((func, args, kwargs, log, os.environ.get(FAULT_ENV)))
            while True:
                kind, value = self._conn.recv()
                if kind == "step":
                    current = value
                    continue
                break
        except (EOFError, ConnectionError, OSError):
            code = self._stop()
            crash = WorkerCrashed(*current, code, _tail(self.log, offset))
            self.start()  # warm again (TensorFlow imported) by the next call
            raise crash from None
        except BaseException:  # Ctrl-C or SIGTERM while the worker is mid-call
            self._stop(kill=True)
            raise
        if kind == "ok":
            return value
        raise value

    def _stop(self, kill: bool = False) -> int | None:
        proc, self._proc = self._proc, None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if proc is None:
            self._remove_tmp()
            return None
        if kill:
            proc.kill()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
        self._remove_tmp()
        return proc.exitcode

    def _remove_tmp(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def close(self) -> None:
        """Stop the worker (it holds nothing that needs saving) and remove its files."""
        if self._proc is not None and self._proc.is_alive():
            self._proc.terminate()
        self._stop()
        self._files.clear()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def begin_run(self, log: Path) -> Worker:
        """This worker for one run: its calls log to `log`, its input files go to a fresh
        scratch directory (see end_run)."""
        self.end_run()
        self.log = Path(log)
        self.scratch = Path(tempfile.mkdtemp(prefix="compress-worker-"))
        return self

    def end_run(self) -> None:
        """Forget the run's files (the worker drops models whose files are gone); idempotent."""
        self._files.clear()
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.log = None

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- inputs as files ---------------------------------------------------------------------
    def model_file(
        self, model: Any, save: Callable[[Any, Path], None] | None = None, suffix: str = ".keras"
    ) -> Path:
        """`model` saved once (by `save`; default: keras.model_io.save_model) for the worker to
        load."""
        if id(model) not in self._files:
            from compress.keras.model_io import save_model

            self.scratch.mkdir(parents=True, exist_ok=True)
            # a name never used before: the worker caches loaded models by file name
            path = self.scratch / f"model-{secrets.token_hex(8)}{suffix}"
            (save or save_model)(model, path)
            self._files[id(model)] = (model, path)
        return self._files[id(model)][1]

    def array_file(self, x: Any) -> Path:
        """Model inputs (an array, or a dict by input name) saved once as `.npz`."""
        if id(x) not in self._files:
            self.scratch.mkdir(parents=True, exist_ok=True)
            path = self.scratch / f"arrays-{secrets.token_hex(8)}.npz"
            arrays = x if isinstance(x, dict) else {"__single__": x}
            np.savez(path, **arrays)
            self._files[id(x)] = (x, path)
        return self._files[id(x)][1]


_shared: Worker | None = None


@contextmanager
def main_hidden() -> Iterator[None]:
    """Processes spawned meanwhile do not re-import the parent's main module: they run
    compress's functions only (a script read from stdin cannot be imported again, and one
    without a __main__ guard would run again)."""
    main = sys.modules.get("__main__")
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    try:
        main.__dict__.pop("__file__", None)
        main.__dict__["__spec__"] = None
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def shared() -> Worker:
    """The process's worker: started on first use, reused by every run of this process (one
    TensorFlow import for `run all`, a test session or a tune study), stopped at exit."""
    global _shared
    if _shared is None:
        _shared = Worker()
        atexit.register(_shared.close)
    return _shared


def load_arrays(path: str | Path) -> Any:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return arrays["__single__"] if set(arrays) == {"__single__"} else arrays


_NOISE = re.compile(r"^(I\d{4} |WARNING: All log messages before absl|INFO: Created TensorFlow)")


def _tail(log: Path | None, offset: int) -> list[str]:
    """What the log says about a crash, from `offset` on: faulthandler's "Fatal Python error"
    line with the innermost Python frame, else the last lines (the frameworks' start-up chatter
    left out)."""
    if log is None or not log.exists():
        return []
    with open(log, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not _NOISE.match(line)]
    fatal = next((i for i, line in enumerate(lines) if line.startswith("Fatal Python error")), None)
    if fatal is not None:
        frame = next((line for line in lines[fatal:] if line.startswith("File ")), None)
        return [lines[fatal]] + ([frame] if frame else [])
    return lines[-LOG_TAIL_LINES:]


def _redirect(log: str | None) -> None:
    """Point the worker's stdout and stderr at `log` (None: /dev/null). The frameworks' prints
    must never reach the parent's stdout (--json)."""
    fd = os.open(log or os.devnull, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _serve(conn: Any, tmp: str) -> None:
    """The worker's loop: run each call, send back ("ok", result) or ("error", exception).
    `tmp`: the worker's own temp directory (the parent removes it), set before TensorFlow is
    imported, for Python's tempfile and native code (TMPDIR) alike; files meant to outlive the
    worker go to `fileio.shared_temp()`."""
    global _conn
    os.environ.setdefault(SHARED_TEMP_ENV, tempfile.gettempdir())
    os.environ["TMPDIR"] = tmp
    tempfile.tempdir = tmp
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    _redirect(None)
    faulthandler.enable()  # a native crash prints its Python stack into the log
    _conn = conn
    try:
        from compress.keras import _tf

        _tf.own_process()  # the frameworks' objects out of the garbage collector's way
        _tf.keras()  # the slow imports, done while the parent is busy elsewhere
    except Exception:
        pass
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        func, args, kwargs, log, fault = message
        _redirect(log)
        os.environ.pop(FAULT_ENV, None)
        if fault:
            os.environ[FAULT_ENV] = fault  # the parent's, at the time of the call
        try:
            reply = ("ok", func(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
            reply = ("error", _portable(exc))
        _redirect(None)
        try:
            conn.send(reply)
        except Exception as exc:  # a result that does not pickle
            conn.send(("error", RuntimeError(f"worker result cannot be sent back: {exc}")))
        del reply
        release_free_memory()


def release_free_memory() -> None:
    """Give the heap's free pages back to the system (glibc's `malloc_trim`; elsewhere a no-op).
    A conversion's transient copies of the weights otherwise stay in the worker's resident set
    beside the next call's: at 100M parameters (0.40 GB of weights), 0.43 GB after one TFLite
    conversion. Past 2 GB of weights that is what the next conversion runs out of."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _portable(exc: BaseException) -> BaseException:
    """The exception itself if it survives pickling, else a RuntimeError with its first line
    (framework exceptions often hold unpicklable state)."""
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        from compress.core.errors import one_line

        return RuntimeError(one_line(exc))
