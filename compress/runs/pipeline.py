"""Runs named stages in order into a run directory that appears only when complete.

The run is written into `OUT/<model>/.tmp-<run-id>/` and renamed to `OUT/<model>/<run-id>/`
after the report and manifest are written; any failure removes the temporary directory.
A gate failure still completes the run directory: the report is the evidence.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compress.backends import worker as isolate
from compress.core import interrupt
from compress.core.arrays import count
from compress.core.errors import CompressError, StageError, UsageError, one_line
from compress.core.fileio import sha256_file, write_json_atomic, write_text_atomic
from compress.core.progress import Progress, adapt
from compress.core.state import RunState
from compress.core.versions import environment, package_versions
from compress.keras import models
from compress.measure.timing import NO_LOCK
from compress.report.fields import FIELDS
from compress.report.page import run_page
from compress.report.text import render_markdown
from compress.runs.cache import StageCache, code_fingerprint, input_fingerprint, stage_key
from compress.runs.config import PipelineConfig, resolve_stages
from compress.stages.base import Stage, materialize, with_reference_outputs

_RESOURCE_ERRORS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT, errno.EPERM}
LOG_FILE = "log.txt"  # native (C++) log lines of the stages


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    report: dict[str, Any]

    @property
    def failures(self) -> list[str]:
        return list(self.report["verification"]["failures"])

    @property
    def passed(self) -> bool:
        return not self.failures


class Pipeline:
    """An ordered list of stages with unique names."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        names = [s.name for s in stages]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise UsageError(f"pipeline stage names must be unique. Got {dupes} more than once.")
        self.stages = list(stages)

    def describe(self) -> list[dict[str, Any]]:
        """Each stage's name and validated parameters, in order (recorded in the report)."""
        return [{"stage": s.name, "params": s.params.model_dump(mode="json")} for s in self.stages]

    @classmethod
    def from_config(cls, config: PipelineConfig) -> Pipeline:
        from compress.stages import REGISTRY

        return cls([REGISTRY[name](**params) for name, params in resolve_stages(config)])

    def run(
        self,
        out: str | Path,
        name: str,
        config: dict[str, Any] | None = None,
        progress: Progress | Callable[[str], None] | None = None,
        cache: StageCache | None = None,
        inputs: Sequence[str | None] = (),
        command: str | None = None,
        timing_lock: Any = None,
    ) -> RunResult:
        """Run every stage into OUT/NAME/RUN_ID. `inputs` are the input files whose content keys
        the cache (a user's model and data); `cache` None runs every stage; `command` is the
        command line that ran it (recorded in the report to reproduce it); `timing_lock` the
        measure.timing.TimingLock every timing holds (a tune's trials)."""
        run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
        parent = Path(out) / name
        # The pid in the name tells a later run whether this one is still alive.
        tmp = parent / f"{TMP_PREFIX}{run_id}.{os.getpid()}"
        report_to = adapt(progress)
        try:
            parent.mkdir(parents=True, exist_ok=True)
            for stale in remove_stale_tmp(parent):
                report_to.line(f"{name}: removed {stale} (left by a run that ended without "
                               "cleaning up)")  # fmt: skip
            tmp.mkdir()
        except OSError as exc:
            raise UsageError(
                f"output directory '{out}' is not writable: {exc.strerror or exc}"
            ) from None
        worker = isolate.shared().begin_run(tmp / LOG_FILE)
        try:
            state = RunState(
                workdir=tmp, worker=worker, progress=report_to, timing_lock=timing_lock
            )
            seconds: dict[str, float] = {}
            cached: dict[str, str] = {}
            versions = package_versions()
            key = input_fingerprint(list(inputs))
            # waiting for another run's stage is not building: a tune trial's share of the
            # timing lock is given up meanwhile (its holder may be waiting to time)
            waiting = (timing_lock or NO_LOCK).released
            for stage in self.stages:
                code = code_fingerprint(type(stage).__module__)
                params = stage.params.model_dump(mode="json")
                keyed = {k: v for k, v in params.items() if k not in stage.cache_ignores}
                key = stage_key(key, stage.name, keyed, {**versions, "compress_code": code})
                t0 = time.perf_counter()
                claim = cache.claim(key, waiting) if cache and stage.cacheable else nullcontext()
                with claim:  # a concurrent run making the same stage: wait for it, then reuse
                    state, cached[stage.name] = _step(stage, state, key, cache, name, report_to)
                seconds[stage.name] = round(time.perf_counter() - t0, 3)
                # a stage's transient copies of the weights (loading, saving, converting) are
                # freed heap that glibc keeps; past 2 GB of weights, the next stage's room
                isolate.release_free_memory()
                if cached[stage.name] != "hit":
                    report_to.stage_end(name, stage.name, seconds[stage.name])
            worker.end_run()  # before the manifest: nothing more goes to log.txt
            state = state.replace(worker=None, progress=None)
            if state.verification is None:
                raise StageError("pipeline has no verify stage: nothing to report")
            report = build_report(state, run_id, config or {}, seconds, self.describe())
            report["cache"] = cached
            report["command"] = command
            final = parent / run_id
            try:
                write_json_atomic(tmp / "report.json", report)
                write_text_atomic(tmp / "report.md", render_markdown(report))
                write_text_atomic(tmp / "report.html", run_page(report))
                write_json_atomic(tmp / "manifest.json", build_manifest(tmp, report))
                os.replace(tmp, final)
            except OSError as exc:
                raise StageError(
                    f"cannot write the run directory '{final}': {exc.strerror}"
                ) from exc
        except BaseException:
            worker.end_run()
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return RunResult(run_dir=final, report=report)


TMP_PREFIX = ".tmp-"
STALE_UNOWNED_S = 3600  # a temporary directory with no pid in its name is stale after this


def remove_stale_tmp(parent: Path) -> list[str]:
    """Remove the temporary run directories under `parent` whose run is gone (a process killed
    by a signal nothing can catch, SIGKILL or a native crash, cannot remove its own). Returns
    their names."""
    removed = []
    for entry in sorted(parent.glob(f"{TMP_PREFIX}*")):
        if not entry.is_dir():
            continue
        _, _, pid = entry.name.rpartition(".")
        if pid.isdigit():
            if _alive(int(pid)):
                continue
        elif time.time() - entry.stat().st_mtime < STALE_UNOWNED_S:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        if not entry.exists():
            removed.append(entry.name)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


@contextmanager
def native_output_to(path: Path) -> Iterator[None]:
    """Send file descriptor 2 (where TensorFlow, the converter and LiteRT print their C++ logs)
    to a log file in the run directory while a stage runs, so the terminal shows only ours."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "ab") as log:
            os.dup2(log.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _step(
    stage: Stage, state: RunState, key: str, cache: StageCache | None, name: str, report_to: Any
) -> tuple[RunState, str]:
    """One stage: its cached result restored, or the stage run (and stored). Returns the new
    state and what the cache did: hit, stored, not writable, off (no cache) or never."""
    record = cache.load(key) if cache and stage.cacheable else None
    if record is not None and not stage.reuses(record["info"].get(stage.name, {})):
        cache.discard(key)  # made for another budget: rebuilt and stored anew
        record = None
    if record is not None:
        return StageCache.restore(record, state), "hit"
    if stage.cacheable and state.worker is not None:  # the worker imports TensorFlow meanwhile
        state.worker.start()
    report_to.stage_start(name, stage.name)
    with native_output_to(state.workdir / LOG_FILE):
        before = state
        state = _run_stage(stage, before)
        interrupt.check()  # a signal a framework swallowed: not cached, not used
        if stage.produces_model and stage.cacheable:
            state = with_reference_outputs(state)
        if cache and stage.cacheable:
            saved = cache.save(key, stage, before, state)
            return state, "stored" if saved else "not writable"
        return state, "off" if stage.cacheable else "never"


def _run_stage(stage: Stage, state: RunState) -> RunState:
    try:
        return stage.run(materialize(state) if stage.needs_model else state)
    except CompressError:
        raise
    except OSError as exc:
        if exc.errno in _RESOURCE_ERRORS:
            where = f"'{exc.filename}'" if exc.filename else "the run directory"
            raise StageError(f"stage {stage.name!r} cannot write {where}: {exc.strerror}") from exc
        raise StageError(f"stage {stage.name!r} failed: {one_line(exc)}") from exc
    except Exception as exc:  # a library failure inside a stage: name the stage, one line
        raise StageError(f"stage {stage.name!r} failed: {one_line(exc)}") from exc


def build_report(
    state: RunState,
    run_id: str,
    config: dict[str, Any],
    seconds: dict[str, float],
    pipeline: list[dict[str, Any]],
) -> dict[str, Any]:
    data = state.data
    return {
        "model": state.model_name,
        "run_id": run_id,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "passed": not state.verification["failures"],
        "config": config,
        "pipeline": pipeline,
        "data": None
        if data is None
        else {
            "name": data.name,
            "train_samples": count(data.x_train),
            "test_samples": count(data.x_test),
            "calibration_samples": count(data.x_calib),
            "test_indices": [int(i) for i in data.test_indices],
            **({"source": data.source} if data.source else {}),
        },
        "environment": environment(),
        "verification": state.verification,
        "skipped": [s.__dict__ for s in state.skipped],
        "stages": state.info,
        "stage_seconds": seconds,
        "fields": FIELDS,
    }


def _seed(report: dict[str, Any]) -> int | None:
    if "seed" in report["config"]:
        return report["config"]["seed"]
    seeds = [s["params"]["seed"] for s in report["pipeline"] if "seed" in s["params"]]
    return seeds[0] if seeds else None


def build_manifest(run_dir: Path, report: dict[str, Any]) -> dict[str, Any]:
    """sha256 and size of every file in the run directory, with versions, config and seed."""
    files = {
        p.name: {"sha256": sha256_file(p), "size_bytes": p.stat().st_size}
        for p in sorted(run_dir.iterdir())
        if p.is_file() and p.name != "manifest.json"
    }
    return {
        "run_id": report["run_id"],
        "model": report["model"],
        "created": report["created"],
        "seed": _seed(report),
        "config": report["config"],
        "pipeline": report["pipeline"],
        "packages": report["environment"]["packages"],
        "files": files,
    }


def output_name(model: str) -> str:
    """The folder under OUT for a model: its reference name, or the .keras file's stem."""
    return model if model in models.REGISTRY else Path(model).stem


def run(
    config: PipelineConfig,
    progress: Progress | Callable[[str], None] | None = None,
    cache: StageCache | None = None,
    command: str | None = None,
    timing_lock: Any = None,
) -> RunResult:
    """Run a pipeline config (what `compress run` does). Pass `cache=StageCache(dir)` to reuse
    finished stages of earlier runs."""
    inputs = [] if config.model in models.REGISTRY else [config.model, config.data]
    return Pipeline.from_config(config).run(
        config.out, output_name(config.model), config.model_dump(mode="json"), progress, cache,
        inputs, command, timing_lock,
    )  # fmt: skip


def run_model(
    model: Any,
    data: dict[str, Any] | tuple[Any, Any],
    overrides: dict[str, Any] | None = None,
    name: str | None = None,
    out: str | Path = "artifacts",
    progress: Progress | Callable[[str], None] | None = None,
    cache: StageCache | None = None,
) -> RunResult:
    """Run the standard pipeline on a model in memory (tf_keras or Keras 3) and its arrays:
    `data` is `(x, y)` or the `.npz` layout as a dict (`x`/`x_<input>`, `y`/`y_<head>`).
    `overrides` as in PipelineConfig.for_model (`{"quantize.mode": "int8"}`). The model goes
    through the same checks as a file (it is saved once into a private temporary folder that is
    removed afterwards), so what runs is exactly what `compress run m.keras` would run."""
    import tempfile

    import numpy as np

    arrays = {"x": data[0], "y": data[1]} if isinstance(data, tuple) else dict(data)
    bad = sorted(k for k in arrays if not (k in ("x", "y") or k.startswith(("x_", "y_"))))
    if bad:
        raise UsageError(f"data keys {bad} are not x, y, x_<input> or y_<head>", key="data")
    name = name or getattr(model, "name", None) or "model"
    with tempfile.TemporaryDirectory(prefix="compress-model-") as tmp:
        path, npz = Path(tmp) / f"{name}.keras", Path(tmp) / f"{name}.npz"
        if type(model).__module__.startswith("keras."):  # Keras 3
            model.save(str(path))
        else:
            from compress.keras.model_io import save_model

            save_model(model, path)
        np.savez(npz, **{k: np.asarray(v) for k, v in arrays.items()})
        config = PipelineConfig.for_model(str(path), {"data": str(npz), "out": str(out),
                                                      **(overrides or {})})  # fmt: skip
        return run(config, progress, cache)
