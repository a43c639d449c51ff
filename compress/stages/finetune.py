"""What the compression stages share: their fine-tuning parameters, which layers a per-layer
policy selects, and the float model's accuracy before compression (the baseline). The Keras
side (fitting, wrapping layers) is compress.keras.training."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from compress.core.state import RunState
from compress.keras.data import Dataset
from compress.keras.model_io import copy_model
from compress.keras.training import layer_weight_counts
from compress.stages.base import StageParams


class FineTuneParams(StageParams):
    """Parameters every fine-tuning compression stage takes."""

    layers: list[str] | None = Field(
        None, description="layer names to compress; None: every layer holding at least "
        "min_weight_fraction of the model's weights"
    )  # fmt: skip
    min_weight_fraction: float = Field(0.05, ge=0.0, le=1.0)
    epochs: int = Field(2, ge=1, le=1000, description="fine-tuning epochs (at least 1)")
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(5e-4, gt=0.0, le=1.0)
    seed: int = Field(0, ge=0)


def select_layers(model: Any, params: FineTuneParams, stage: str) -> list[str]:
    from compress.core.errors import UsageError

    counts = layer_weight_counts(model)
    if params.layers is not None:
        unknown = [n for n in params.layers if n not in counts]
        if unknown:
            raise UsageError(
                f"{stage}.layers names {unknown}, which the model has no weighted layer for. "
                f"Expected some of: {', '.join(counts)}"
            )
        return list(params.layers)
    total = sum(counts.values()) or 1
    return [n for n, c in counts.items() if c / total >= params.min_weight_fraction]


def steps_per_epoch(data: Dataset, batch_size: int) -> int:
    from compress.core.arrays import count

    return -(-count(data.x_train) // batch_size)


def begin(stage: Any, state: RunState) -> tuple[RunState, Dataset, Any, list[str]]:
    """What every compression stage does first: record the baseline accuracy, take a fresh copy
    of the model (tfmot's wrappers mutate the layers they wrap) and choose the layers to
    compress. Returns (state, data, the copy, the layer names)."""
    data, model = stage.data(state), stage.model(state)
    state = with_baseline(state, model, data)
    fresh = copy_model(model)
    return state, data, fresh, select_layers(fresh, stage.params, stage.name)


def with_baseline(state: RunState, model: Any, data: Dataset) -> RunState:
    """Record the uncompressed float model's held-out accuracy (a language model head: its
    perplexity) once, before the first compression stage changes it: drift (the perplexity
    increase) is reported against it as well."""
    if "baseline_accuracy" in state.info:
        return state
    from compress.backends.keras import KerasRunner
    from compress.measure.heads import nll

    # The model in hand's held-out outputs, when the pipeline already has them (after train).
    out = state.reference_outputs
    if out is None:
        out = KerasRunner(model).predict(data.x_test)
    acc = {
        h: float((out[h].argmax(-1) == y).mean() * 100)
        for h, y in data.y_test.items() if data.task(h) == "classify"
    }  # fmt: skip
    ppl = {h: float(np.exp(nll(out[h], y))) for h, y in data.y_test.items() if data.task(h) == "lm"}
    state = state.with_info("baseline_accuracy", acc)
    return state.with_info("baseline_perplexity", ppl) if ppl else state
