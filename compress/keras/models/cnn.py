"""The design's CNN: Conv2D(32, 3x3, relu) on 64x64x3 -> MaxPool(2) -> Flatten -> Dense(128, relu)
-> Dense(10, softmax). 3.9 M parameters, almost all in the Dense(128)."""

from __future__ import annotations

from typing import Any

from compress.keras import _tf
from compress.keras.models.base import ModelSpec


def build() -> Any:
    keras = _tf.keras()
    layers = keras.layers
    inputs = keras.Input(shape=(64, 64, 3), name="input")
    x = layers.Conv2D(32, (3, 3), activation="relu", name="conv")(inputs)
    x = layers.MaxPooling2D((2, 2), name="pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(128, activation="relu", name="dense")(x)
    outputs = layers.Dense(10, activation="softmax", name="digit")(x)
    return keras.Model(inputs, outputs, name="cnn")


SPEC = ModelSpec(
    name="cnn",
    description="Conv2D 32 3x3 -> MaxPool 2 -> Dense 128 -> Dense 10 on digits resized to 64x64x3",
    layout="image64",
    build=build,
)
