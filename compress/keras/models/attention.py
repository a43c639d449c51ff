"""LSTM(64, return_sequences) -> AttentionLayer(32) -> Dense(10, softmax).

The attention layer alone reaches only ~64% on digits; behind an LSTM it learns which rows
(timesteps) matter.
"""

from __future__ import annotations

from typing import Any

from compress.keras import _tf
from compress.keras.models.base import ModelSpec


def build() -> Any:
    keras = _tf.keras()
    from compress.keras.layers import AttentionLayer

    inputs = keras.Input(shape=(8, 8), name="input")
    x = keras.layers.LSTM(64, return_sequences=True, name="lstm")(inputs)
    x = AttentionLayer(32, name="attention")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="digit")(x)
    return keras.Model(inputs, outputs, name="attention")


SPEC = ModelSpec(
    name="attention",
    description="LSTM 64 (sequences) -> AttentionLayer 32 -> Dense 10 on digits as 8x8 sequences",
    layout="sequence",
    build=build,
    epochs=30,
    learning_rate=3e-3,
)
