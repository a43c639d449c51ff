"""Data sets: scikit-learn's digits (ships with the package, no download) in the layouts the
reference models take, with a seeded, stratified held-out split.

The test split is never used for training or calibration: calibration samples are drawn from the
training split only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compress.core.arrays import Inputs, count, pick
from compress.core.errors import InputError

Targets = Callable[[np.ndarray], dict[str, np.ndarray]]
DIGIT_LAYOUTS = ("image64", "sequence", "flat")


@dataclass(frozen=True)
class Dataset:
    """Arrays for one run. Labels are keyed by model output (head) name."""

    name: str
    x_train: Inputs  # one array, or a dict by input name (multi-input models)
    y_train: dict[str, np.ndarray]
    x_test: Inputs
    y_test: dict[str, np.ndarray]
    x_calib: Inputs
    test_indices: np.ndarray  # indices into the source data set, for re-evaluation
    # head -> "classify" | "regress" | "lm" (see heads.infer_task); a head not named classifies
    tasks: dict[str, str] = field(default_factory=dict)
    # where the samples came from, for anyone recomputing the split (text: files and windows)
    source: dict[str, Any] | None = None

    @property
    def heads(self) -> list[str]:
        return list(self.y_test)

    def task(self, head: str) -> str:
        return self.tasks.get(head, "classify")


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
    """Stratified train/test indices: each class contributes round(test_size * its count) samples,
    chosen by a seeded permutation. The same labels, test_size and seed give the same split."""
    rng = np.random.default_rng(seed)
    test = [
        rng.permutation(members)[: int(round(len(members) * test_size))]
        for members in (np.flatnonzero(labels == c) for c in np.unique(labels))
    ]
    test_idx = np.sort(np.concatenate(test)) if test else np.array([], dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    return train_idx, test_idx


def digits_raw() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits (1797 8x8 images, values 0..16, and labels), read from the data file
    the package ships, without importing scikit-learn (which takes over a second)."""
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("scikit-learn is not installed: it ships the digits data set")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    with gzip.open(path, "rt") as f:
        data = np.loadtxt(f, delimiter=",", dtype=np.float64)
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)


def load_digits(
    layout: str, targets: Targets, *, seed: int, test_size: float, calibration_samples: int
) -> Dataset:
    images, y = digits_raw()
    x = digits_layout(images, layout)
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


NPZ_LAYOUTS = "x_train, y_train, x_test, y_test (or x, y to be split; optional x_calib)"


def load_npz(
    path: str | Path,
    *,
    input_shapes: dict[str, tuple[int | None, ...]],
    heads: dict[str, dict[str, Any]],
    seed: int,
    test_size: float,
    calibration_samples: int,
    input_dtypes: dict[str, str] | None = None,
    tasks: dict[str, str] | None = None,
) -> Dataset:
    """A user's data file, checked against the model it is for.

    `input_shapes` maps each model input to its shape without the batch axis (None for free
    axes), `input_dtypes` to its dtype (an integer input, token or category ids, keeps its
    integers: they are fed, calibrated and compared as such); `heads` maps each output name to
    its `shape` (without the batch axis) and `activation`; `tasks` forces a head's task
    (classify | regress), else it is inferred from the output and its labels (heads.infer_task).
    Class labels are ids, shape (n,), or one-hot; numeric targets have the output's shape.
    A single-input model's arrays are `x_train, x_test` (or `x`, split here) and optional
    `x_calib`; a multi-input model's are `x_train_<input name>` and so on. A multi-output
    model's labels are `y_train_<output name>` and so on. Loading never unpickles.
    """
    path = Path(path)
    arrays = _read_npz(path)
    where = f"data file '{path.name}'"
    specs = {
        n: (shape, (input_dtypes or {}).get(n, "float32")) for n, shape in input_shapes.items()
    }
    x_train = _inputs(arrays, "x_train", specs, where)
    if x_train is not None:
        x_test = _inputs(arrays, "x_test", specs, where)
        if x_test is None:
            raise InputError(f"{where} has x_train but no x_test")
        kinds = _tasks(arrays, "y_train", heads, tasks or {}, where)
        y_train = _labels(arrays, "y_train", heads, kinds, where)
        y_test = _labels(arrays, "y_test", heads, kinds, where)
    else:
        x_all = _inputs(arrays, "x", specs, where)
        if x_all is None:
            found = ", ".join(sorted(arrays)) or "no arrays"
            raise InputError(f"{where} must hold {NPZ_LAYOUTS}. Found: {found}")
        kinds = _tasks(arrays, "y", heads, tasks or {}, where)
        y_all = _labels(arrays, "y", heads, kinds, where)
        _same_rows(x_all, y_all, "x", where)
        train, test = split_indices(_strata(next(iter(y_all.values()))), test_size, seed)
        x_train, x_test = pick(x_all, train), pick(x_all, test)
        y_train = {h: y[train] for h, y in y_all.items()}
        y_test = {h: y[test] for h, y in y_all.items()}
    _same_rows(x_train, y_train, "x_train", where)
    _same_rows(x_test, y_test, "x_test", where)
    x_calib = _inputs(arrays, "x_calib", specs, where)
    if x_calib is None:
        rng = np.random.default_rng(seed)
        x_calib = pick(x_train, rng.permutation(count(x_train))[:calibration_samples])
    return Dataset(
        name=f"npz/{path.name}",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        x_calib=x_calib,
        test_indices=np.arange(count(x_test)),
        tasks=kinds,
    )


def _strata(y: np.ndarray) -> np.ndarray:
    """What the split is stratified on: class labels, or for numeric targets the deciles of
    their first column (so both splits cover the range)."""
    if y.dtype.kind in "iub" and y.ndim == 1:
        return y
    first = y.reshape(len(y), -1)[:, 0]
    edges = np.quantile(first, np.linspace(0, 1, 11)[1:-1])
    return np.searchsorted(edges, first)


def _inputs(
    arrays: dict[str, np.ndarray], key: str, specs: dict[str, tuple[tuple, str]], where: str
) -> Inputs | None:
    """The arrays for `key` (x, x_train, ...): one array for a single-input model, else a dict
    by input name; None if the file has none of them. `specs`: input name -> (shape, dtype)."""
    shapes = {n: spec[0] for n, spec in specs.items()}
    if len(shapes) == 1:
        name, (shape, dtype) = next(iter(specs.items()))
        found = next((k for k in (key, f"{key}_{name}") if k in arrays), None)
        return None if found is None else _check_x(arrays[found], found, shape, dtype, where)
    keys = {name: f"{key}_{name}" for name in shapes}
    present = [k for k in keys.values() if k in arrays]
    if not present:
        return None
    missing = [k for k in keys.values() if k not in arrays]
    if missing:
        raise InputError(f"{where}: missing {', '.join(missing)} (the model has inputs "
                         f"{', '.join(shapes)})")  # fmt: skip
    out = {name: _check_x(arrays[k], k, *specs[name], where) for name, k in keys.items()}
    lengths = {k: len(out[name]) for name, k in keys.items()}
    if len(set(lengths.values())) > 1:
        raise InputError(f"{where}: inputs have different numbers of rows: {lengths}")
    return out


def _same_rows(x: Inputs, ys: dict[str, np.ndarray], key: str, where: str) -> None:
    for head, y in ys.items():
        if len(y) != count(x):
            raise InputError(
                f"{where}: labels for {head!r} have {len(y)} rows but {key} has {count(x)}"
            )


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise InputError(f"data file '{path}' does not exist")
    import zipfile

    if not zipfile.is_zipfile(path):
        raise InputError(f"data file '{path.name}' is not a valid .npz (not a zip archive)")
    from compress.keras.model_io import check_zip

    check_zip(path, "data file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise InputError(
                f"data file '{path.name}' holds object arrays, which need pickle; pickle is "
                "refused for safety (save numeric arrays)"
            ) from None
        raise InputError(f"data file '{path.name}' is not a valid .npz: {exc}") from None
    except (OSError, EOFError) as exc:
        raise InputError(f"data file '{path.name}' is not a valid .npz: {exc}") from None


def _check_x(
    x: np.ndarray, key: str, shape: tuple[int | None, ...], dtype: str, where: str
) -> np.ndarray:
    if x.dtype.kind not in "fiub":
        raise InputError(f"{where}: {key} must be numeric. Got dtype {x.dtype} instead.")
    if x.ndim != len(shape) + 1 or any(
        want is not None and got != want for got, want in zip(x.shape[1:], shape, strict=True)
    ):
        expected = "(n, " + ", ".join("any" if d is None else str(d) for d in shape) + ")"
        raise InputError(f"{where}: {key} has shape {x.shape}, the model expects {expected}")
    if len(x) == 0:
        raise InputError(f"{where}: {key} is empty")
    if np.dtype(dtype).kind in "iu":  # ids: integers as the model declares them, never scaled
        if x.dtype.kind == "f" and not (np.isfinite(x).all() and np.all(x == np.round(x))):
            raise InputError(
                f"{where}: {key} must hold integers: the model's input is {dtype}. "
                f"Got non-integer {x.dtype} values instead."
            )
        info = np.iinfo(dtype)
        if x.min() < info.min or x.max() > info.max:
            raise InputError(f"{where}: {key} holds values outside {dtype}'s range")
        return np.ascontiguousarray(x, dtype=dtype)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise InputError(f"{where}: {key} contains NaN or Inf")
    return x


def _label_array(
    arrays: dict[str, np.ndarray], key: str, head: str, single: bool, where: str
) -> tuple[str, np.ndarray]:
    candidates = [f"{key}_{head}"] + ([key] if single else [])
    found = next((c for c in candidates if c in arrays), None)
    if found is None:
        raise InputError(f"{where}: missing labels {' or '.join(candidates)}")
    return found, arrays[found]


def _tasks(
    arrays: dict[str, np.ndarray],
    key: str,
    heads: dict[str, dict[str, Any]],
    forced: dict[str, str],
    where: str,
) -> dict[str, str]:
    """Each head's task: forced by the pipeline, else inferred from its output and labels."""
    from compress.measure.heads import infer_task

    out = {}
    for head, info in heads.items():
        _, y = _label_array(arrays, key, head, len(heads) == 1, where)
        shape = tuple(info["shape"])
        width = shape[0] if len(shape) == 1 else None
        out[head] = forced.get(head) or infer_task(width, info.get("activation"), y, shape)
        if out[head] == "classify" and (width is None or width < 2):
            dims = ", ".join("any" if d is None else str(d) for d in shape)
            raise InputError(
                f"{where}: output {head!r} has shape (n, {dims}); a classify head must be "
                "(n, classes) with classes >= 2"
            )
    return out


def _labels(
    arrays: dict[str, np.ndarray],
    key: str,
    heads: dict[str, dict[str, Any]],
    tasks: dict[str, str],
    where: str,
) -> dict[str, np.ndarray]:
    out = {}
    for head, info in heads.items():
        found, y = _label_array(arrays, key, head, len(heads) == 1, where)
        shape = tuple(info["shape"])
        if tasks[head] == "regress":
            out[head] = _numeric_targets(y, found, shape, where)
            continue
        if tasks[head] == "lm":
            out[head] = _token_targets(y, found, shape, where)
            continue
        classes = shape[0]
        if y.ndim == 2 and y.shape[1] == classes:
            y = y.argmax(axis=1)
        if (
            y.ndim != 1
            or y.dtype.kind not in "iub"
            and not (y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)))
        ):
            raise InputError(
                f"{where}: {found} must be integer class labels of shape (n,) or one-hot "
                f"(n, {classes}). Got dtype {y.dtype}, shape {y.shape} instead."
            )
        y = y.astype(np.int64)
        if len(y) and (y.min() < 0 or y.max() >= classes):
            raise InputError(
                f"{where}: {found} holds labels in [{y.min()}, {y.max()}], but output "
                f"{head!r} has {classes} classes (labels must be in [0, {classes - 1}])"
            )
        out[head] = y
    return out


def _token_targets(y: np.ndarray, key: str, shape: tuple, where: str) -> np.ndarray:
    """A language model's next-token labels: integer token ids (n, time) in [0, vocab) for an
    output of shape (time, vocab)."""
    if len(shape) != 2:
        dims = ", ".join("any" if d is None else str(d) for d in shape)
        raise InputError(f"{where}: an lm head's output must be (n, time, vocab); this one is "
                         f"(n, {dims})")  # fmt: skip
    time, vocab = shape
    if y.dtype.kind not in "iu" or y.ndim != 2 or (time is not None and y.shape[1] != time):
        want = f"(n, {'time' if time is None else time})"
        raise InputError(f"{where}: {key} must be integer token ids of shape {want}. Got dtype "
                         f"{y.dtype}, shape {y.shape} instead.")  # fmt: skip
    if len(y) and (y.min() < 0 or (vocab is not None and y.max() >= vocab)):
        raise InputError(f"{where}: {key} holds token ids in [{y.min()}, {y.max()}], but the "
                         f"output has a vocabulary of {vocab}")  # fmt: skip
    return np.ascontiguousarray(y, dtype=np.int64)


def _numeric_targets(y: np.ndarray, key: str, shape: tuple, where: str) -> np.ndarray:
    """Regression or embedding targets: finite numbers of the output's shape ((n,) is taken
    for an output of one value)."""
    if y.dtype.kind not in "fiub":
        raise InputError(f"{where}: {key} must be numeric. Got dtype {y.dtype} instead.")
    y = np.asarray(y, dtype=np.float32)
    if shape == (1,) and y.ndim == 1:
        y = y[:, None]
    if y.ndim != len(shape) + 1 or any(
        want is not None and got != want for got, want in zip(y.shape[1:], shape, strict=True)
    ):
        want = "(n, " + ", ".join("any" if d is None else str(d) for d in shape) + ")"
        raise InputError(f"{where}: {key} has shape {y.shape}, the output expects {want}")
    if not np.isfinite(y).all():
        raise InputError(f"{where}: {key} contains NaN or Inf")
    return np.ascontiguousarray(y)
