"""Greedy generation with an artifact that takes a fixed-length context: how a language model's
generation speed and its agreement with the float model are measured (verify and bench)."""

from __future__ import annotations

from typing import Any

import numpy as np

from compress.measure.heads import match_heads
from compress.measure.timing import NO_LOCK, TimingLock, measure_interleaved

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


def generation_speed(
    runners: dict[str, Any],
    fp32: str | None,
    prompt: Any,
    head: str,
    new_tokens: int,
    budget_s: float,
    lock: TimingLock = NO_LOCK,
) -> dict[str, dict[str, float | None]]:
    """One runtime's artifacts generating `new_tokens` from `prompt`, timed in interleaved
    rounds: per artifact name, ms per new token, tokens/s and the speedup against the fp32
    artifact's generation (None where a timing is missing)."""
    calls = {m: (lambda r=r: generate(r, prompt, head, new_tokens)) for m, r in runners.items()}
    timings = measure_interleaved(calls, warmup=1, budget_s=budget_s, min_calls=3, lock=lock)
    base = timings.get(fp32) if fp32 else None
    out: dict[str, dict[str, float | None]] = {}
    for m in runners:
        t = timings.get(m)
        out[m] = {
            "ms_per_token": t.p50_ms / new_tokens if t else None,
            "tokens_per_s": 1000.0 * new_tokens / t.p50_ms if t else None,
            "speedup": base.p50_ms / t.p50_ms if (t and base) else None,
        }
    return out
