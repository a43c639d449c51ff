"""What a reference model declares: how to build it and which data it trains on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compress.keras.data import Targets


def digit_target(labels: np.ndarray) -> dict[str, np.ndarray]:
    """A single head named `digit` predicting the digit 0-9."""
    return {"digit": labels}


@dataclass(frozen=True)
class Size:
    """One size of a model that comes in sizes: its context (sequence length, which its data
    is cut to), the rest of its build arguments, and the epochs it trains by default."""

    context: int
    knobs: dict[str, Any]
    epochs: int


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    layout: str  # digits layout the model takes (see compress.keras.data.digits_layout)
    build: Callable[..., Any]  # returns an uncompiled tf_keras Model with named outputs
    targets: Targets = digit_target
    epochs: int = 5  # default training epochs: enough to reach the model's accuracy goal
    learning_rate: float = 1e-3  # Adam
    # models that come in sizes (build.size): name -> Size; the default size's name
    sizes: dict[str, Size] = field(default_factory=dict)
    default_size: str | None = None
    # data other than digits: load(context, seed=, calibration_samples=) -> Dataset
    load: Callable[..., Any] | None = None

    def size(self, name: str | None) -> Size | None:
        """The named size (None: the default), or None for a model without sizes."""
        if not self.sizes:
            return None
        return self.sizes[name or self.default_size]

    def build_model(self, size: str | None = None) -> Any:
        chosen = self.size(size)
        if chosen is None:
            return self.build()
        return self.build(context=chosen.context, **chosen.knobs)
