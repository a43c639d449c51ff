"""The interface every runtime runner offers: batched prediction keyed by output name, and a
zero-argument call on a fixed batch for timing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np


class Runner(Protocol):
    runtime: str
    output_names: list[str]

    def predict(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs for all of `x`, keyed by the model's output (head) names."""
        ...

    def timed_call(self, x: np.ndarray, batch: int) -> Callable[[], object] | None:
        """One inference on a batch of `batch` samples of `x`; None if the artifact cannot take
        that batch size (for example a model converted with a fixed batch of 1)."""
        ...


def take_batch(x: np.ndarray, batch: int) -> np.ndarray:
    """The first `batch` samples of x, repeated if x has fewer."""
    reps = -(-batch // len(x))
    return np.ascontiguousarray(np.concatenate([x] * reps)[:batch]) if reps > 1 else x[:batch]


def batched(x: np.ndarray, batch: int) -> list[np.ndarray]:
    return [x[i : i + batch] for i in range(0, len(x), batch)]
