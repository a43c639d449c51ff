"""build: the float model and its data set with the held-out split.

A reference model (see `compress list`) is built untrained with the digits data; a user's
`.keras` file is loaded with safe_mode (no code from the file runs) with its `.npz` data.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from compress.core.arrays import count, pick
from compress.core.errors import InputError, StageError, UsageError, one_line
from compress.core.state import RunState
from compress.keras import _tf, models
from compress.keras.data import load_digits, load_npz
from compress.keras.model_io import load_keras_model
from compress.measure.heads import TaskChoice, output_activation
from compress.stages.base import Stage, StageParams


class BuildParams(StageParams):
    model: str = Field(min_length=1)
    data: str | None = None
    seed: int = Field(0, ge=0)
    test_size: float = Field(0.2, gt=0.0, lt=1.0)
    calibration_samples: int = Field(200, ge=1)
    train_samples: int | None = Field(
        None, ge=1, description="use only this many training samples (quick trials, tests)"
    )
    size: str | None = Field(
        None, description="a reference model's size, for models that come in sizes (lm: "
        "tiny | small | gpt2-small); None: its default"
    )  # fmt: skip
    task: TaskChoice | dict[str, TaskChoice] = Field(
        "auto", description="set from verify.task: each head's task (classify | regress), "
        "or auto: inferred from the output and its labels",
        json_schema_extra={"from": "verify.task"},
    )  # fmt: skip


def is_reference(model: str) -> bool:
    return model in models.REGISTRY


def _model_io(
    model: Any,
) -> tuple[dict[str, tuple[int | None, ...]], dict[str, str], dict[str, dict[str, Any]]]:
    """Each input's shape and dtype, and each output's shape and activation (what the data file
    is checked against and a head's task inferred from)."""
    shapes = {
        name: tuple(t.shape[1:]) for name, t in zip(model.input_names, model.inputs, strict=True)
    }
    dtypes = {name: t.dtype.name for name, t in zip(model.input_names, model.inputs, strict=True)}
    heads = {}
    for name, tensor in zip(model.output_names, model.outputs, strict=True):
        if tensor.shape.rank is None or tensor.shape.rank < 2:
            raise InputError(
                f"output {name!r} has shape {tuple(tensor.shape)}; compress expects a batch "
                "axis and at least one more: (batch, classes) or (batch, values...)"
            )
        heads[name] = {"shape": tuple(tensor.shape[1:]),
                       "activation": output_activation(model, name)}  # fmt: skip
    return shapes, dtypes, heads


class Build(Stage):
    name = "build"
    Params = BuildParams
    cacheable = False  # cheap, and its inputs are hashed into every later stage's key
    produces_model = True

    def run(self, state: RunState) -> RunState:
        p = self.params
        translation = None  # a Keras 3 file's proven translation to tf_keras
        savedmodel = None  # a SavedModel run through its serving signature
        if is_reference(p.model):
            if p.data is not None:
                raise UsageError(models.data_for_files(p.model), key="data")
            spec = models.get(p.model)
            own = "lm" if spec.load is not None else "classify"
            forced = set(p.task.values()) if isinstance(p.task, dict) else {p.task}
            if forced - {"auto", own}:
                what = "a language model" if own == "lm" else "a classifier"
                raise UsageError(
                    f"verify.task: reference model {p.model!r} is {what}; other tasks are for "
                    "your own models", key="verify.task",
                )  # fmt: skip
            size = _size(spec, p.size)
            if spec.load is not None:
                data = spec.load(
                    size.context, seed=p.seed, calibration_samples=p.calibration_samples
                )
            else:
                data = load_digits(
                    spec.layout,
                    spec.targets,
                    seed=p.seed,
                    test_size=p.test_size,
                    calibration_samples=p.calibration_samples,
                )
            # Built when a stage needs it: a rerun whose stages are all cached imports no Keras.
            loader = partial(build_reference, spec, data.heads, p.seed, p.size)
            model_name, model = spec.name, None
        else:
            if p.size is not None:
                raise UsageError(
                    f"build.size is for reference models that come in sizes; model file "
                    f"'{Path(p.model).name}' has its own", key="build.size",
                )  # fmt: skip
            if p.data is None:
                message = f"data is required: model file '{p.model}' needs an .npz"
                raise UsageError(message, key="data")
            _tf.keras().utils.set_random_seed(p.seed)
            model, original = load_keras_model(Path(p.model))
            input_shapes, input_dtypes, heads = _model_io(model)
            tasks = _tasks(p.task, list(heads))
            data = load_npz(
                p.data,
                input_shapes=input_shapes,
                input_dtypes=input_dtypes,
                heads=heads,
                tasks=tasks,
                seed=p.seed,
                test_size=p.test_size,
                calibration_samples=p.calibration_samples,
            )
            model_name, loader = Path(p.model).stem, None
            if original is not None:
                translation = prove_translation(original, model, data.x_test, p.model)
            savedmodel = signature_record(model)
        if p.train_samples is not None and p.train_samples < count(data.x_train):
            keep = np.random.default_rng(p.seed).permutation(count(data.x_train))
            keep = np.sort(keep[: p.train_samples])
            data = dataclasses.replace(
                data,
                x_train=pick(data.x_train, keep),
                y_train={h: y[keep] for h, y in data.y_train.items()},
            )
        state = state.replace(model_name=model_name, model=model, model_loader=loader, data=data)
        info = {"model": model_name, "dataset": data.name}
        if is_reference(p.model) and models.get(p.model).sizes:
            info["size"] = p.size or models.get(p.model).default_size
        if data.source and data.source.get("kind") == "text":
            from compress.keras.text import unigram_perplexity

            # what a model that ignores context scores: the baseline an LM's perplexity beats
            info["unigram_perplexity"] = unigram_perplexity(data)
        if translation:
            info["keras3"] = translation
        if savedmodel:
            info["savedmodel"] = savedmodel
        return state.with_info("build", info)


def prove_translation(original: Any, model: Any, x: Any, where: str) -> dict[str, Any]:
    """The Keras 3 model and its tf_keras twin agree on the user's held-out samples within
    keras3.TOLERANCE before any stage uses the twin; the difference goes in the report."""
    from compress.keras import keras3, signature

    exported = signature.directory(model) is not None  # no tf_keras twin: its own export
    twin = "SavedModel export" if exported else "tf_keras translation"
    samples = pick(x, np.arange(min(count(x), 256)))
    diff = keras3.max_difference(original, model, samples)
    if not diff <= keras3.TOLERANCE:
        raise InputError(
            f"model file '{Path(where).name}' (Keras 3): its {twin} differs by "
            f"{diff:.3g} on the data (tolerance {keras3.TOLERANCE:g}): refused"
        )
    return {
        "keras_version": keras3.keras3().__version__,
        "translated_to": (
            "its own SavedModel export" if exported else "tf_keras " + _tf.keras().__version__
        ),
        "samples": count(samples),
        "max_abs_difference": diff,
        "tolerance": keras3.TOLERANCE,
    }


def signature_record(model: Any) -> dict[str, Any] | None:
    """For a SavedModel's signature (see keras/signature.py): where it came from, its inputs
    and outputs, for the report (None for a Keras model)."""
    from compress.keras import signature

    where = signature.directory(model)
    if where is None:
        return None
    reason = signature.why_exported(model)
    return {
        "directory": Path(where).name,
        **({"reason": reason} if reason else {}),
        "signature": signature.SIGNATURE,
        "inputs": list(model.input_names),
        "outputs": list(model.output_names),
    }


def _tasks(task: str | dict[str, str], heads: list[str]) -> dict[str, str]:
    """verify.task as head -> task for the heads it forces ("auto" forces nothing)."""
    if isinstance(task, str):
        return {} if task == "auto" else dict.fromkeys(heads, task)
    unknown = sorted(set(task) - set(heads))
    if unknown:
        raise UsageError(
            f"verify.task names {unknown}, which the model does not output. Expected heads: "
            f"{', '.join(heads)}", key="verify.task",
        )  # fmt: skip
    return {h: t for h, t in task.items() if t != "auto"}


def _size(spec: models.ModelSpec, size: str | None) -> Any:
    """The reference model's Size (None for a model without sizes), or a one-line refusal."""
    if size is not None and size not in spec.sizes:
        expected = ", ".join(spec.sizes) if spec.sizes else "none (it has one size)"
        raise UsageError(
            f"build.size {size!r} is not a size of reference model {spec.name!r}. Expected: "
            f"{expected}", key="build.size",
        )  # fmt: skip
    return spec.size(size)


def build_reference(
    spec: models.ModelSpec, heads: list[str], seed: int, size: str | None = None
) -> Any:
    """A reference model (of `size`, for a model with sizes), untrained, its weights
    initialized from `seed`."""
    _tf.keras().utils.set_random_seed(seed)
    try:
        model = spec.build_model(size)
    except Exception as exc:  # built lazily, by a later stage: name the stage it belongs to
        raise StageError(f"stage 'build' failed: {one_line(exc)}") from exc
    missing = set(heads) - set(model.output_names)
    if missing:
        raise StageError(f"model {spec.name!r} has no output named {sorted(missing)}")
    return model
