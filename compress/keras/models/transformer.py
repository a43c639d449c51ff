"""A small transformer encoder on digits as sequences (8 rows of 8 pixels as tokens).

Dense projection to d_model 32 plus a learned position embedding, two encoder blocks
(self-attention with 2 heads, residual + LayerNormalization, a feed-forward block of 64,
residual + LayerNormalization), global average pooling over time, Dense 10 softmax.
"""

from __future__ import annotations

from typing import Any

from compress.keras import _tf
from compress.keras.models.base import ModelSpec

D_MODEL, HEADS, FEED_FORWARD, BLOCKS = 32, 2, 64, 2


def build(
    sequence: int = 8,
    features: int = 8,
    d_model: int = D_MODEL,
    blocks: int = BLOCKS,
    heads: int = HEADS,
    feed_forward: int = FEED_FORWARD,
    classes: int = 10,
) -> Any:
    keras = _tf.keras()
    from compress.keras.layers import PositionEmbedding, SelfAttention

    inputs = keras.Input(shape=(sequence, features), name="input")
    x = keras.layers.Dense(d_model, name="embed")(inputs)
    x = PositionEmbedding(name="position")(x)
    for i in range(blocks):
        a = SelfAttention(num_heads=heads, key_dim=d_model // heads, name=f"attention_{i}")(x)
        x = keras.layers.LayerNormalization(name=f"norm_{i}a")(
            keras.layers.Add(name=f"residual_{i}a")([x, a])
        )
        f = keras.layers.Dense(feed_forward, activation="relu", name=f"ff_{i}_in")(x)
        f = keras.layers.Dense(d_model, name=f"ff_{i}_out")(f)
        x = keras.layers.LayerNormalization(name=f"norm_{i}b")(
            keras.layers.Add(name=f"residual_{i}b")([x, f])
        )
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="digit")(x)
    return keras.Model(inputs, outputs, name="transformer")


SPEC = ModelSpec(
    name="transformer",
    description="Dense 32 + position embedding -> 2 encoder blocks (self-attention 2 heads, "
    "LayerNorm, feed-forward 64) -> average pool -> Dense 10 on digits as 8x8 sequences",
    layout="sequence",
    build=build,
    epochs=40,
    learning_rate=2e-3,
)
