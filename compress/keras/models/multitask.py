"""Input(64) -> Dense(128, relu) -> two heads: `digit` Dense(10, softmax) and `pair`
Dense(5, softmax), where pair = digit // 2 ({0,1} -> 0, {2,3} -> 1, ...)."""

from __future__ import annotations

from typing import Any

import numpy as np

from compress.keras import _tf
from compress.keras.models.base import ModelSpec


def build() -> Any:
    keras = _tf.keras()
    inputs = keras.Input(shape=(64,), name="input")
    x = keras.layers.Dense(128, activation="relu", name="dense")(inputs)
    digit = keras.layers.Dense(10, activation="softmax", name="digit")(x)
    pair = keras.layers.Dense(5, activation="softmax", name="pair")(x)
    return keras.Model(inputs, [digit, pair], name="multitask")


def targets(labels: np.ndarray) -> dict[str, np.ndarray]:
    return {"digit": labels, "pair": labels // 2}


SPEC = ModelSpec(
    name="multitask",
    description="Dense 128 -> heads digit (Dense 10) and pair = digit // 2 (Dense 5) on 64 pixels",
    layout="flat",
    build=build,
    targets=targets,
    epochs=30,
)
