"""What a reference model declares: how to build it and which data it trains on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from compress.keras.data import Targets


def digit_target(labels: np.ndarray) -> dict[str, np.ndarray]:
    """A single head named `digit` predicting the digit 0-9."""
    return {"digit": labels}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    layout: str  # digits layout the model takes (see compress.keras.data.digits_layout)
    build: Callable[[], Any]  # returns an uncompiled tf_keras Model with named outputs
    targets: Targets = digit_target
    epochs: int = 5  # default training epochs: enough to reach the model's accuracy goal
    learning_rate: float = 1e-3  # Adam
