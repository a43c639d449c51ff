"""Model inputs are one array, or a dict of arrays keyed by input name for multi-input models.
These helpers slice and count both alike."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Inputs = np.ndarray | dict[str, np.ndarray]


def count(x: Inputs) -> int:
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def rows(x: Inputs, start: int, stop: int) -> Inputs:
    if isinstance(x, dict):
        return {k: v[start:stop] for k, v in x.items()}
    return x[start:stop]


def pick(x: Inputs, index: np.ndarray) -> Inputs:
    if isinstance(x, dict):
        return {k: v[index] for k, v in x.items()}
    return x[index]


def take_batch(x: Inputs, batch: int) -> Inputs:
    """The first `batch` samples of x, repeated cyclically if x has fewer."""
    return pick(x, np.arange(batch) % count(x))


def batched(x: Inputs, batch: int) -> list[Inputs]:
    return [rows(x, i, i + batch) for i in range(0, count(x), batch)]


def as_feed(x: Inputs, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Inputs keyed by the runtime's input names (a single array goes to the only input)."""
    if isinstance(x, dict):
        missing = [n for n in names if n not in x]
        if missing:
            raise ValueError(f"no data for input(s) {missing}; have {sorted(x)}")
        return {n: np.ascontiguousarray(x[n]) for n in names}
    if len(names) != 1:
        raise ValueError(f"model has {len(names)} inputs {list(names)}; got one array")
    return {names[0]: np.ascontiguousarray(x)}
