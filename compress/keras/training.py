"""Fine-tuning on the training split, and the layer surgery the compression algorithms share
(which layers hold the weights, wrapping chosen layers in a clone)."""

from __future__ import annotations

from typing import Any

import numpy as np

from compress.keras import _tf
from compress.keras.data import Dataset


def loss_for(task: str) -> Any:
    """The training loss of a head: cross-entropy on class ids (from logits for a language
    model's next-token head), mean squared error on numbers."""
    if task == "lm":
        return _tf.keras().losses.SparseCategoricalCrossentropy(from_logits=True)
    return "sparse_categorical_crossentropy" if task == "classify" else "mse"


def layer_weight_counts(model: Any) -> dict[str, int]:
    """Trainable weight elements per top-level layer."""
    return {
        layer.name: int(sum(np.prod(w.shape) for w in layer.trainable_weights))
        for layer in model.layers
        if layer.trainable_weights
    }


def wrap_layers(
    model: Any, targets: list[str], wrapper: Any, tolerate: bool = True
) -> tuple[Any, dict[str, str]]:
    """Clone `model` with `wrapper(layer)` in place of each target layer. With `tolerate`, a
    layer the wrapper refuses (ValueError, TypeError) stays as it is and is returned, with the
    reason, in the second value; otherwise the error propagates."""
    keras = _tf.keras()
    refused: dict[str, str] = {}

    def clone(layer):
        if layer.name not in targets:
            return layer
        try:
            return wrapper(layer)
        except (ValueError, TypeError) as exc:
            if not tolerate:
                raise
            refused[layer.name] = str(exc).strip().splitlines()[0]
            return layer

    return keras.models.clone_model(model, clone_function=clone), refused


def fine_tune(
    model: Any,
    data: Dataset,
    params: Any,
    heads: list[str],
    callbacks: list | None = None,
) -> None:
    """Fit a wrapped model with `params`' epochs, batch_size, learning_rate and seed. tfmot's
    wrappers rename layers (and so outputs), so labels and losses go by position, in the order
    of `heads` (the unwrapped model's output names)."""
    keras = _tf.keras()
    keras.utils.set_random_seed(params.seed)
    model.compile(
        optimizer=keras.optimizers.Adam(params.learning_rate),
        loss=[loss_for(data.task(h)) for h in heads],
    )
    labels = [data.y_train[h] for h in heads]
    model.fit(
        data.x_train,
        labels if len(labels) > 1 else labels[0],
        epochs=params.epochs,
        batch_size=params.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=callbacks or [],
    )
