"""Keras (`.keras`): the float model every artifact is compared with. Its recipes are the
float models the training and compression stages save; its runner is the accuracy reference
(its latency is not compared)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from compress.backends.base import Backend, RecipeSpec, Sources
from compress.core.arrays import Inputs, count
from compress.core.state import Artifact
from compress.measure.weights import float_weight_bytes, summarize, tensor_stats

RECIPES = (
    RecipeSpec("trained", "fp32", "float model trained on the training split"),
    RecipeSpec("pruned", "fp32", "magnitude-pruned float model, fine-tuned, wrappers stripped"),
    RecipeSpec("clustered", "fp32", "weight-clustered float model, fine-tuned, wrappers stripped"),
)


class KerasBackend(Backend):
    runtime = "keras"
    format = "keras"
    suffix = ".keras"
    recipes = RECIPES
    reference = True

    def build(self, spec: RecipeSpec, src: Sources, path: Path) -> None:
        from compress.keras.model_io import save_model

        save_model(src.model, path)

    def open_runner(self, path: Path, threads: int = 1, **options: bool) -> KerasRunner:
        return KerasRunner(_load(path))

    def facts(self, path: Path, model: Any = None) -> dict[str, Any]:
        """Also the float32 bytes of all the model's weights: the uncompressed reference every
        artifact's compression ratio is measured against."""
        model = model if model is not None else _load(path)
        return {**super().facts(path, model), "float_weight_bytes": float_weight_bytes(model)}

    def count_weights(self, path: Path, model: Any = None) -> dict[str, Any]:
        model = model if model is not None else _load(path)
        # Keras kernels keep the output channel last (Dense: in x out; Conv2D: h x w x in x out).
        return summarize(
            [tensor_stats(w.name, w.numpy(), -1) for w in model.weights if len(w.shape) >= 2]
        )


def _load(path: Path) -> Any:
    from compress.keras.model_io import load_model

    return load_model(path)


def save_artifact(
    workdir: Path, name: str, model: Any, recipe_id: str, knobs: dict[str, Any]
) -> Artifact:
    """Save a stage's float model into the run directory as a Keras artifact of a recipe."""
    keras = KerasBackend()
    return keras.make(workdir, keras.recipe(recipe_id), Sources(model), name=name, extra=knobs)


class KerasRunner:
    runtime = "keras"

    def __init__(self, model: Any) -> None:
        self.model = model
        self.output_names = list(model.output_names)
        self.input_shapes = {
            n: tuple(t.shape[1:]) for n, t in zip(model.input_names, model.inputs, strict=True)
        }
        self.input_dtypes = {
            n: np.dtype(getattr(t.dtype, "as_numpy_dtype", t.dtype))
            for n, t in zip(model.input_names, model.inputs, strict=True)
        }

    def predict(self, x: Inputs) -> dict[str, np.ndarray]:
        fixed = self.model.inputs[0].shape[0]  # a SavedModel signature exported at batch 1
        if fixed is not None and count(x) % fixed:
            raise ValueError(f"the model takes batches of exactly {fixed} samples; got {count(x)}")
        out = self.model.predict(x, batch_size=fixed or 32, verbose=0)
        if isinstance(out, dict):
            out = [out[n] for n in self.output_names]
        elif not isinstance(out, list | tuple):
            out = [out]
        return {
            n: np.asarray(a, dtype=np.float32) for n, a in zip(self.output_names, out, strict=True)
        }

    def timed_call(self, x: Inputs, batch: int) -> Callable[[], object] | None:
        return None  # Keras is the accuracy reference; its latency is not compared
