"""A backend's builds and per-layer inspections in the run's worker process (backends.worker):
a converter, quantizer or runtime that dies natively fails one recipe, not the run. The sources
travel as files (models saved, samples as .npz); the worker keeps what they share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from compress.backends import worker as isolate
from compress.backends.base import Backend, RecipeSpec, Sources
from compress.core.arrays import Inputs
from compress.core.state import Artifact
from compress.keras.qat import load_qat_model, save_qat_model


@dataclass(frozen=True)
class SourceFiles:
    """Sources as files, for the worker process: the models saved, the samples as .npz."""

    model: str
    x_calib: str | None
    fp32: Artifact | None
    qat_model: str | None
    qat_left_float: tuple[str, ...]
    opset: int | None
    token: str


def build_isolated(backend: Backend, spec: RecipeSpec, src: Sources, path: Path) -> dict[str, Any]:
    """`build` in the sources' worker process, then the file loaded and run there once on
    two samples: a converter, quantizer or runtime that dies natively raises
    isolate.WorkerCrashed here instead of ending the run. Without a worker, `build`."""
    if src.worker is None:
        return backend.build(spec, src, path) or {}
    shared = backend.shared_step(spec, src)
    if shared and f"crashed:{shared}" in src.memo:
        raise src.memo[f"crashed:{shared}"]  # the same shared work would crash the same way
    worker = src.worker
    try:
        qat = None if src.qat_model is None else str(
                worker.model_file(src.qat_model, save=save_qat_model, suffix=".h5"))  # fmt: skip
    except Exception:  # a QAT model that cannot be saved: built here, not isolated
        return backend.build(spec, src, path) or {}
    files = SourceFiles(
            model=str(worker.model_file(src.model)),
            x_calib=None if src.x_calib is None else str(worker.array_file(src.x_calib)),
            fp32=src.fp32,
            qat_model=qat,
            qat_left_float=src.qat_left_float,
            opset=src.opset,
            token=src.token,
        )  # fmt: skip
    probe = probe_sample(src)
    options = backend.runner_options(src.model)
    try:
        return worker.call(build_in_worker, backend, spec, files, str(path), probe, options)
    except isolate.WorkerCrashed as crash:
        if shared and crash.phase == shared:
            src.memo[f"crashed:{shared}"] = crash
        raise
    except isolate.ModelTransferError:
        # the worker cannot rebuild this QAT model faithfully: built here, not isolated
        return backend.build(spec, src, path) or {}


def layer_errors_isolated(
    backend: Backend, path: Path, src: Sources, x: Inputs
) -> list[dict[str, Any]] | None:
    """`layer_errors` of `path` against `src.fp32`, in the sources' worker process."""
    options = src.fp32.options
    if src.worker is None:
        return backend.layer_errors(path, src.fp32.path, x, **options)
    return src.worker.call(_layer_errors, backend, path, src.fp32.path, x, options)


def builder(backend: Backend, spec: RecipeSpec, src: Sources) -> Callable[[Path], dict[str, Any]]:
    """`build_isolated` of `spec` as a `Backend.make(build=...)` step."""
    return partial(build_isolated, backend, spec, src)


def probe_sample(src: Sources) -> Inputs:
    """Two samples to run a built file on: calibration samples, else zeros of the model's input
    shapes and dtypes (an integer input's zeros are valid ids)."""
    from compress.core.arrays import rows

    if src.x_calib is not None:
        return rows(src.x_calib, 0, 2)
    arrays = {
        name: np.zeros((2, *(d or 1 for d in t.shape[1:])), dtype=t.dtype.as_numpy_dtype)
        for name, t in zip(src.model.input_names, src.model.inputs, strict=True)
    }
    return next(iter(arrays.values())) if len(arrays) == 1 else arrays


_WORKER_MODELS: dict[str, Any] = {}  # in the worker: file -> loaded model
_WORKER_MEMOS: dict[str, dict[str, Any]] = {}  # in the worker: Sources.token -> memo


def build_in_worker(
    backend: Backend,
    spec: RecipeSpec,
    files: SourceFiles,
    path: str,
    probe: Inputs,
    options: dict[str, bool],
) -> dict[str, Any]:
    """Runs in the worker: rebuild the Sources from files, build, then load and run the file."""
    from compress.core.errors import one_line
    from compress.keras.model_io import load_model

    def _qat(file: str | None) -> Any:
        try:
            return model(file, load_qat_model)
        except Exception as exc:
            raise isolate.ModelTransferError(one_line(exc)) from None

    def model(file: str | None, loader: Callable[[str], Any]) -> Any:
        if file is None:
            return None
        if file not in _WORKER_MODELS:
            _WORKER_MODELS[file] = loader(file)
        return _WORKER_MODELS[file]

    for gone in [f for f in _WORKER_MODELS if not Path(f).exists()]:
        del _WORKER_MODELS[gone]  # an earlier run's model: its scratch directory is removed
    if files.token not in _WORKER_MEMOS and len(_WORKER_MEMOS) >= 4:
        _WORKER_MEMOS.pop(next(iter(_WORKER_MEMOS)))
    src = Sources(
        model=model(files.model, load_model),
        x_calib=None if files.x_calib is None else isolate.load_arrays(files.x_calib),
        fp32=files.fp32,
        qat_model=_qat(files.qat_model),
        qat_left_float=files.qat_left_float,
        opset=files.opset,
        memo=_WORKER_MEMOS.setdefault(files.token, {}),
    )
    decided = backend.build(spec, src, Path(path)) or {}
    isolate.step(backend.loader_name, f"loading and running {Path(path).name}")
    backend.open_runner(Path(path), 1, **options).predict(probe)
    return decided


def _layer_errors(
    backend: Backend, path: Path, fp32_path: Path, x: Inputs, options: dict[str, bool]
) -> list[dict[str, Any]] | None:
    isolate.step(backend.loader_name, f"per-layer inspection of {Path(path).name}")
    return backend.layer_errors(path, fp32_path, x, **options)
