"""The interface every runtime runner offers: batched prediction keyed by output name, and a
zero-argument call on a fixed batch for timing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from compress.arrays import Inputs


class Runner(Protocol):
    runtime: str
    output_names: list[str]

    def predict(self, x: Inputs) -> dict[str, np.ndarray]:
        """Outputs for all of `x`, keyed by the model's output (head) names."""
        ...

    def timed_call(self, x: Inputs, batch: int) -> Callable[[], object] | None:
        """One inference on a batch of `batch` samples of `x`; None if the artifact cannot take
        that batch size (for example a model converted with a fixed batch of 1)."""
        ...
