"""Runs the float Keras model: the reference every artifact is compared with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from compress.arrays import Inputs


class KerasRunner:
    runtime = "keras"

    def __init__(self, model: Any) -> None:
        self.model = model
        self.output_names = list(model.output_names)

    def predict(self, x: Inputs) -> dict[str, np.ndarray]:
        out = self.model.predict(x, batch_size=32, verbose=0)
        if isinstance(out, dict):
            out = [out[n] for n in self.output_names]
        elif not isinstance(out, list | tuple):
            out = [out]
        return {
            n: np.asarray(a, dtype=np.float32) for n, a in zip(self.output_names, out, strict=True)
        }

    def timed_call(self, x: Inputs, batch: int) -> Callable[[], object] | None:
        return None  # Keras is the accuracy reference; its latency is not compared
