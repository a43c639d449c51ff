"""A model's outputs per head: matching a runner's outputs to the heads, and what one head's
output is measured by against the float model's (accuracy, drift, agreement)."""

from __future__ import annotations

import numpy as np

from compress.errors import StageError


def match_heads(
    source: str, outputs: dict[str, np.ndarray], heads: list[str]
) -> dict[str, np.ndarray]:
    """`outputs` keyed by head: by name, or the one output of a one-head model."""
    if set(heads) <= set(outputs):
        return {h: outputs[h] for h in heads}
    if len(heads) == 1 and len(outputs) == 1:
        return {heads[0]: next(iter(outputs.values()))}
    raise StageError(f"{source}: outputs {sorted(outputs)} do not match the model's heads {heads}")


def head_metrics(ref: np.ndarray, out: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Percent accuracy, drift (the reference's accuracy minus this one's, points), top-1
    agreement with the reference, and the largest absolute output difference."""
    ref_top, out_top = ref.argmax(axis=-1), out.argmax(axis=-1)
    ref_acc = float((ref_top == labels).mean() * 100)
    acc = float((out_top == labels).mean() * 100)
    return {
        "accuracy": acc,
        "drift": ref_acc - acc,
        "agreement": float((out_top == ref_top).mean() * 100),
        "max_abs_diff": float(np.abs(out - ref).max()),
    }
