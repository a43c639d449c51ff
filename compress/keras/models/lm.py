"""A decoder-only (GPT-style) causal language model over bytes, trained on the sources of a
pinned package (compress.keras.text): token and position embeddings, pre-LayerNorm blocks of
causal multi-head self-attention and an MLP (GELU in GPT-2's tanh form, 4x wide), each added
back to its input, a final LayerNorm and logits over the 256 byte values at every position.

One build parameter sets its size (`build.size`, see SIZES): `tiny` for tests, `small` (the
default: trains in about two minutes on 2 cores) and `gpt2-small` (GPT-2 small's shape: 12
blocks of width 768, 12 heads, a 1024-token context; ~85M parameters with a byte vocabulary),
for scale.
"""

from __future__ import annotations

from typing import Any

from compress.keras import _tf
from compress.keras.models.base import ModelSpec, Size
from compress.keras.text import HEAD, VOCAB, load_text

SIZES = {
    "tiny": Size(context=32, knobs={"d_model": 32, "blocks": 1, "heads": 2}, epochs=2),
    "small": Size(context=64, knobs={"d_model": 96, "blocks": 2, "heads": 4}, epochs=3),
    "gpt2-small": Size(
        context=1024, knobs={"d_model": 768, "blocks": 12, "heads": 12}, epochs=1
    ),  # fmt: skip
}


def build(context: int = 64, d_model: int = 96, blocks: int = 2, heads: int = 4) -> Any:
    keras = _tf.keras()
    from compress.keras.layers import PositionEmbedding, SelfAttention, gelu_tanh

    tokens = keras.Input(shape=(context,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(VOCAB, d_model, name="token_embedding")(tokens)
    x = PositionEmbedding(name="position")(x)
    for i in range(blocks):
        h = keras.layers.LayerNormalization(epsilon=1e-5, name=f"block{i}_norm1")(x)
        h = SelfAttention(num_heads=heads, key_dim=d_model // heads, causal=True,
                          name=f"block{i}_attention")(h)  # fmt: skip
        x = keras.layers.Add(name=f"block{i}_residual1")([x, h])
        h = keras.layers.LayerNormalization(epsilon=1e-5, name=f"block{i}_norm2")(x)
        h = keras.layers.Dense(4 * d_model, activation=gelu_tanh, name=f"block{i}_mlp_in")(h)
        h = keras.layers.Dense(d_model, name=f"block{i}_mlp_out")(h)
        x = keras.layers.Add(name=f"block{i}_residual2")([x, h])
    x = keras.layers.LayerNormalization(epsilon=1e-5, name="final_norm")(x)
    logits = keras.layers.Dense(VOCAB, name=HEAD)(x)
    return keras.Model(tokens, logits, name="lm")


SPEC = ModelSpec(
    name="lm",
    description="decoder-only transformer (byte tokens, causal attention, pre-LayerNorm blocks) "
    "on the sources of a pinned package; sizes: " + ", ".join(SIZES),
    layout="text",
    build=build,
    epochs=SIZES["small"].epochs,
    learning_rate=2e-3,
    sizes=SIZES,
    default_size="small",
    load=load_text,
)
