"""Text for the reference language model: the Python source files of a pinned dependency, read
as bytes (token id = byte value, 256 tokens), the same on every machine that installs the pins,
with no download.

The split is by file (every FIFTH file of the sorted list is held out), so held-out perplexity
is measured on files the model never saw. Windows are `context + 1` bytes cut at a fixed stride:
the model reads `context` tokens and predicts each next one. Everything needed to recompute the
split is recorded (`Dataset.source`): the package and its version, the files of each split, the
context, the stride and the held-out windows' (file, offset) pairs.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from compress.core.errors import InputError
from compress.keras.data import Dataset

PACKAGE = "rich"  # pinned in pyproject.toml: its sources are the corpus
VOCAB = 256  # byte values
HELD_OUT_EVERY = 5  # files 4, 9, 14, ... of the sorted list are held out
MAX_TEST_WINDOWS = 256  # held-out windows verify runs (evenly spread over the held-out files)
HEAD = "next_token"


def corpus_files(package: str = PACKAGE) -> tuple[Path, list[str]]:
    """The package's directory and its top-level .py files, sorted by name."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"package {package!r} is not installed: its sources are the LM corpus")
    root = Path(spec.submodule_search_locations[0])
    return root, sorted(p.name for p in root.glob("*.py"))


def _windows(blob: bytes, context: int, stride: int) -> np.ndarray:
    """(n, context + 1) uint8 windows starting every `stride` bytes."""
    a = np.frombuffer(blob, dtype=np.uint8)
    starts = np.arange(0, len(a) - context, stride)
    return (
        np.stack([a[s : s + context + 1] for s in starts])
        if len(starts)
        else np.zeros((0, context + 1), np.uint8)
    )


def load_text(
    context: int,
    *,
    seed: int,
    calibration_samples: int,
    package: str = PACKAGE,
    max_test_windows: int = MAX_TEST_WINDOWS,
) -> Dataset:
    """Byte-level next-token windows of `package`'s sources, split by file, cut every `context`
    bytes (no window overlaps another)."""
    root, files = corpus_files(package)
    held = [f for i, f in enumerate(files) if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1]
    train_files = [f for f in files if f not in held]
    train = [_windows((root / f).read_bytes(), context, context) for f in train_files]
    x_train_w = np.concatenate(train)
    test, where = [], []
    for f in held:
        w = _windows((root / f).read_bytes(), context, context)
        test.append(w)
        where += [(f, int(i * context)) for i in range(len(w))]
    test_all = np.concatenate(test)
    spread = np.linspace(0, len(test_all) - 1, min(max_test_windows, len(test_all)))
    pick = np.unique(spread.astype(int))
    test_w = test_all[pick]
    rng = np.random.default_rng(seed)
    calib = x_train_w[rng.permutation(len(x_train_w))[:calibration_samples], :context]
    version = importlib.metadata.version(package)
    return Dataset(
        name=f"text/{package}-{version}/bytes/context{context}",
        x_train=np.ascontiguousarray(x_train_w[:, :context], dtype=np.int32),
        y_train={HEAD: np.ascontiguousarray(x_train_w[:, 1:], dtype=np.int64)},
        x_test=np.ascontiguousarray(test_w[:, :context], dtype=np.int32),
        y_test={HEAD: np.ascontiguousarray(test_w[:, 1:], dtype=np.int64)},
        x_calib=np.ascontiguousarray(calib, dtype=np.int32),
        test_indices=pick,
        tasks={HEAD: "lm"},
        source=source_record(
            package, version, train_files, held, context, [where[i] for i in pick]
        ),
    )


def source_record(
    package: str, version: str, train: list[str], held: list[str], context: int, windows: list
) -> dict[str, Any]:
    return {
        "kind": "text",
        "package": package,
        "version": version,
        "tokens": "bytes (token id = byte value)",
        "vocab": VOCAB,
        "context": context,
        "train_files": train,
        "stride": context,
        "held_out_files": held,
        # each held-out window: `context + 1` bytes of that file from that offset
        "held_out_windows": [[f, o] for f, o in windows],
    }


def unigram_perplexity(data: Dataset) -> float:
    """The perplexity of the training split's byte frequencies (add-one smoothed) on the
    held-out targets: what a model that ignores context scores, the baseline an LM must beat."""
    counts = np.bincount(np.asarray(data.y_train[HEAD]).reshape(-1), minlength=VOCAB) + 1.0
    logp = np.log(counts / counts.sum())
    return float(np.exp(-logp[np.asarray(data.y_test[HEAD]).reshape(-1)].mean()))
