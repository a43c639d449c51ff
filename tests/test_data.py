from __future__ import annotations

import numpy as np
import pytest

from compress.keras.data import digits_layout, load_digits
from compress.keras.models.base import digit_target


def _load(seed=0):
    return load_digits("image64", digit_target, seed=seed, test_size=0.2, calibration_samples=50)


def test_split_is_seeded_stratified_and_disjoint():
    a, b, c = _load(0), _load(0), _load(1)
    assert np.array_equal(a.test_indices, b.test_indices)
    assert not np.array_equal(a.test_indices, c.test_indices)
    assert len(a.x_test) == 359 and len(a.x_train) == 1438  # round(20%) of each class
    counts = np.bincount(a.y_test["digit"], minlength=10)
    assert counts.min() >= 35


def test_calibration_samples_come_from_the_training_split_only():
    d = _load(0)
    train = {x.tobytes() for x in d.x_train}
    test = {x.tobytes() for x in d.x_test}
    assert len(d.x_calib) == 50
    assert all(x.tobytes() in train for x in d.x_calib)
    assert not any(x.tobytes() in test and x.tobytes() not in train for x in d.x_calib)


@pytest.mark.parametrize(
    ("layout", "shape"), [("image64", (2, 64, 64, 3)), ("sequence", (2, 8, 8)), ("flat", (2, 64))]
)
def test_layouts(layout, shape):
    imgs = np.arange(128, dtype=np.float64).reshape(2, 8, 8) % 17
    x = digits_layout(imgs, layout)
    assert x.shape == shape and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    if layout == "image64":
        assert x[0, 8, 16, 2] == pytest.approx(imgs[0, 1, 2] / 16)
