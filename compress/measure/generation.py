"""Greedy generation with an artifact that takes a fixed-length context: how a language model's
generation speed and its agreement with the float model are measured (verify and bench)."""

from __future__ import annotations

from typing import Any

import numpy as np

from compress.measure.heads import match_heads

GENERATION_METHOD = (
    "greedy; the artifact takes a fixed-length context and has no KV-cache signature, so each "
    "new token recomputes the whole context window (the oldest token drops out)"
)


def token_input(prompt: Any) -> str | None:
    """Which input of a multi-input language model holds the token ids (KerasHub's
    `token_ids` beside its `padding_mask`): the one named for tokens, else the first; None for
    a single-input model."""
    if not isinstance(prompt, dict):
        return None
    return next((k for k in prompt if "token" in k), next(iter(prompt)))


def generate(runner: Any, prompt: Any, head: str, new_tokens: int) -> np.ndarray:
    """Greedy continuation of one context (1, T) by `new_tokens` tokens: each step runs the
    whole window and appends the argmax of the last position's logits, dropping the oldest
    token (other inputs, such as a full window's padding mask, stay as they are). Returns the
    new token ids."""
    key = token_input(prompt)
    feed = {k: np.array(v, copy=True) for k, v in prompt.items()} if key else None
    window = feed[key] if key else np.array(prompt, copy=True)
    made = np.empty(new_tokens, dtype=np.int64)
    for i in range(new_tokens):
        if key:
            feed[key] = window
        logits = match_heads("generation", runner.predict(feed if key else window), [head])[head]
        made[i] = int(logits[0, -1].argmax())
        window = np.concatenate([window[:, 1:], made[i : i + 1][None].astype(window.dtype)], 1)
    return made
