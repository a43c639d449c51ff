"""LSTM(50) over digits as 8 timesteps of 8 features -> Dense(10, softmax)."""

from __future__ import annotations

from typing import Any

from compress.keras import _tf
from compress.keras.models.base import ModelSpec


def build() -> Any:
    keras = _tf.keras()
    inputs = keras.Input(shape=(8, 8), name="input")
    x = keras.layers.LSTM(50, name="lstm")(inputs)
    outputs = keras.layers.Dense(10, activation="softmax", name="digit")(x)
    return keras.Model(inputs, outputs, name="rnn")


SPEC = ModelSpec(
    name="rnn",
    description="LSTM 50 -> Dense 10 on digits as 8 timesteps x 8 features",
    layout="sequence",
    build=build,
    epochs=30,
    learning_rate=3e-3,
)
