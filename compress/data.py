"""Data sets: scikit-learn's digits (ships with the package, no download) in the layouts the
reference models take, with a seeded, stratified held-out split.

The test split is never used for training or calibration: calibration samples are drawn from the
training split only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Targets = Callable[[np.ndarray], dict[str, np.ndarray]]
DIGIT_LAYOUTS = ("image64", "sequence", "flat")


@dataclass(frozen=True)
class Dataset:
    """Arrays for one run. Labels are keyed by model output (head) name."""

    name: str
    x_train: np.ndarray
    y_train: dict[str, np.ndarray]
    x_test: np.ndarray
    y_test: dict[str, np.ndarray]
    x_calib: np.ndarray
    test_indices: np.ndarray  # indices into the source data set, for re-evaluation

    @property
    def heads(self) -> list[str]:
        return list(self.y_test)


def digits_layout(images: np.ndarray, layout: str) -> np.ndarray:
    """Turn (n, 8, 8) digit images (0..16) into the float32 layout a model takes, scaled to [0, 1].

    image64: (n, 64, 64, 3), each pixel repeated 8x8 (nearest neighbour) on three channels.
    sequence: (n, 8, 8), 8 timesteps (rows) of 8 features.
    flat: (n, 64).
    """
    x = (np.asarray(images, dtype=np.float32) / 16.0).astype(np.float32)
    if layout == "image64":
        big = np.repeat(np.repeat(x, 8, axis=1), 8, axis=2)
        return np.ascontiguousarray(np.repeat(big[..., None], 3, axis=-1))
    if layout == "sequence":
        return np.ascontiguousarray(x)
    if layout == "flat":
        return np.ascontiguousarray(x.reshape(len(x), 64))
    raise ValueError(f"digits layout must be one of {DIGIT_LAYOUTS}. Got {layout!r} instead.")


def split_indices(labels: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/test indices, the same for the same labels, test_size and seed."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    train, test = train_test_split(
        idx, test_size=test_size, random_state=seed, stratify=labels, shuffle=True
    )
    return np.sort(train), np.sort(test)


def load_digits(
    layout: str, targets: Targets, *, seed: int, test_size: float, calibration_samples: int
) -> Dataset:
    from sklearn.datasets import load_digits as sk_load_digits

    raw = sk_load_digits()
    x = digits_layout(raw.images, layout)
    y = raw.target.astype(np.int64)
    train, test = split_indices(y, test_size, seed)
    rng = np.random.default_rng(seed)
    calib = rng.permutation(train)[: min(calibration_samples, len(train))]
    return Dataset(
        name=f"digits/{layout}",
        x_train=x[train],
        y_train=targets(y[train]),
        x_test=x[test],
        y_test=targets(y[test]),
        x_calib=x[calib],
        test_indices=test,
    )
