"""Counts of what an artifact's weights hold: sparsity, distinct values, sizes.

Each backend reads its own files as exported (the .tflite flatbuffer's constant buffers, the
.onnx initializers, the .keras model's weights) and summarizes them here, so the report states
what the artifact really holds, not what a compression stage intended. Weights are the constant
tensors of rank >= 2.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np

from compress.core.fileio import artifact_files

GZIP_LEVEL = 6  # gzip's default; -9 is up to 15x slower on sparse files for 1-10% less


def tensor_stats(
    name: str, values: np.ndarray, axis: int = 0, zero: np.ndarray | None = None
) -> dict[str, Any]:
    """Sparsity (fraction of exact zeros), distinct values in the tensor and, per output channel
    (`axis`), the most distinct values any channel has. `zero`: the stored value that means 0
    (a quantized tensor's zero point: one, or one per channel along `axis`)."""
    is_zero = values == 0
    if zero is not None and values.ndim:
        z = np.asarray(zero)
        if z.ndim == 1 and values.ndim > 1:
            z = np.expand_dims(z, [d for d in range(values.ndim) if d != axis])
        is_zero = values == z
    moved = np.moveaxis(values, axis, 0) if values.ndim > 1 else values
    flat = moved.reshape(len(moved), -1) if values.ndim > 1 else values.reshape(1, -1)
    per_channel = 0
    if flat.size:  # distinct values per row: one sort of all rows, then the changes per row
        ordered = np.sort(flat, axis=1)
        per_channel = int((np.diff(ordered, axis=1) != 0).sum(axis=1).max()) + 1
    return {
        "name": name,
        "shape": list(values.shape),
        "dtype": str(values.dtype),
        "size": int(values.size),
        "sparsity": float(is_zero.mean()) if values.size else 0.0,
        "unique": int(len(np.unique(values))),
        "unique_per_channel_max": int(per_channel),
    }


def summarize(tensors: list[dict[str, Any]]) -> dict[str, Any]:
    total = sum(t["size"] for t in tensors)
    zeros = sum(t["sparsity"] * t["size"] for t in tensors)
    return {
        "weight_count": int(total),
        "sparsity": float(zeros / total) if total else 0.0,
        "tensors": sorted(tensors, key=lambda t: -t["size"]),
    }


def float_weight_bytes(model: Any) -> int:
    """Bytes of every weight of a Keras model stored as float32: the uncompressed reference."""
    return int(sum(int(np.prod(w.shape)) * 4 for w in model.weights))


def gzip_size(path: Path) -> int:
    """Bytes after gzip (GZIP_LEVEL) of the file and its external data, one after the other, as
    `gzip -c FILE FILE.data` (one stream): sparsity and clustering pay off only compressed. Read
    in chunks: a file past 2 GB is never held in memory whole."""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    size = 0
    for part in artifact_files(path):
        with open(part, "rb") as f:
            while chunk := f.read(_CHUNK):
                size += len(compressor.compress(chunk))
    return size + len(compressor.flush())


_CHUNK = 1 << 24
