"""A model's outputs per head: matching a runner's outputs to the heads, and what one head's output
is measured by against the float model's. A head is a classifier (`classify`: top-1 accuracy,
drift in points, agreement), numeric (`regress`: regression values or embedding vectors,
measured by how far the artifact's numbers are from the float model's) or a language model's
next-token logits (`lm`: (batch, time, vocab) with token-id labels (batch, time); perplexity,
its increase over the float model's in percent, and next-token agreement). `infer_task` decides
from the output and the labels; the pipeline can say otherwise (`verify.task`).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from compress.core.errors import StageError

Task = Literal["classify", "regress", "lm"]
TaskChoice = Literal["auto", "classify", "regress", "lm"]  # verify.task: a task, or infer it


def match_heads(
    source: str, outputs: dict[str, np.ndarray], heads: list[str]
) -> dict[str, np.ndarray]:
    """`outputs` keyed by head: by name, or the one output of a one-head model."""
    if set(heads) <= set(outputs):
        return {h: outputs[h] for h in heads}
    if len(heads) == 1 and len(outputs) == 1:
        return {heads[0]: next(iter(outputs.values()))}
    raise StageError(f"{source}: outputs {sorted(outputs)} do not match the model's heads {heads}")


def output_activation(model: Any, name: str) -> str | None:
    """The activation that produces output `name` (its layer's `activation`, or a Softmax /
    Activation layer), or None when it cannot be told."""
    try:
        layer = model.get_layer(name)
    except ValueError:
        return None
    if type(layer).__name__ == "Softmax":
        return "softmax"
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", None) if activation is not None else None


def infer_task(
    width: int | None,
    activation: str | None,
    labels: np.ndarray,
    shape: tuple[int | None, ...] | None = None,
) -> Task:
    """The task of a head from its output and labels.

    A (batch, classes >= 2) softmax output classifies (its labels are then checked as class
    ids or one-hot rows). A sigmoid output, or one whose activation cannot be told (logits),
    classifies when its labels are class ids (integers in [0, classes), stored as integers for
    logits) or one-hot rows; anything else is numeric: a Dense(1) head, float targets, vectors.
    An output of `shape` (time, vocab) whose labels are integer token ids (n, time) in
    [0, vocab) is a language model's next-token head (`lm`).
    """
    y = np.asarray(labels)
    if (
        shape is not None
        and len(shape) == 2
        and (shape[1] or 0) >= 2
        and y.ndim == 2
        and y.dtype.kind in "iu"
        and (shape[0] is None or y.shape[1] == shape[0])
        and len(y)
        and y.min() >= 0
        and y.max() < shape[1]
    ):
        return "lm"
    if width is None or width < 2:
        return "regress"
    if activation == "softmax":
        return "classify"
    if y.ndim == 2 and y.shape[1] == width:
        one_hot = bool(np.isin(y, (0, 1)).all() and np.all(y.sum(axis=1) == 1))
        return "classify" if one_hot else "regress"
    if y.ndim != 1 or len(y) == 0:
        return "regress"
    if y.dtype.kind in "iub":
        ids = True
    elif y.dtype.kind == "f" and activation == "sigmoid":
        ids = bool(np.isfinite(y).all() and np.all(y == np.round(y)))
    else:
        ids = False
    return "classify" if ids and y.min() >= 0 and y.max() < width else "regress"


def log_probs(out: np.ndarray) -> np.ndarray:
    """Log-probabilities over the last axis of an output that is either probabilities (a
    softmax: non-negative, rows summing to 1) or logits (anything else), in float64."""
    x = np.asarray(out, dtype=np.float64)
    if x.min() >= 0.0 and np.allclose(x.sum(axis=-1), 1.0, atol=1e-3):
        return np.log(np.maximum(x, 1e-30))
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def nll(out: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the labels (nats per token) over every position."""
    lp = log_probs(out)
    y = np.asarray(labels, dtype=np.int64)
    return float(-np.take_along_axis(lp, y[..., None], axis=-1).mean())


def lm_metrics(ref: np.ndarray, out: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """A language model head: held-out perplexity exp(mean NLL) and bits per token, the
    increase of perplexity over the float model's in percent, next-token top-1 agreement with
    the float model and accuracy on the labels (percent of positions), and how far the logits
    are from the float model's."""
    ref_ppl = float(np.exp(nll(ref, labels)))
    loss = nll(out, labels)
    ppl = float(np.exp(loss))
    ref_top, out_top = ref.argmax(axis=-1), out.argmax(axis=-1)
    diff = np.abs(out.astype(np.float64) - ref.astype(np.float64))
    return {
        "task": "lm",
        "perplexity": ppl,
        "bits_per_token": loss / float(np.log(2.0)),
        "reference_perplexity": ref_ppl,
        "ppl_increase": (ppl / ref_ppl - 1.0) * 100.0,
        "agreement": float((out_top == ref_top).mean() * 100),
        "accuracy": float((out_top == labels).mean() * 100),
        "max_abs_diff": float(diff.max()),
        "mean_abs_error": float(diff.mean()),
        "tokens": int(np.asarray(labels).size),
    }


def head_metrics(
    ref: np.ndarray, out: np.ndarray, labels: np.ndarray, task: Task = "classify"
) -> dict[str, Any]:
    """What one head of an artifact measured against the float model (`ref`) and the labels.

    classify: percent accuracy, drift (the reference's accuracy minus this one's, points), top-1
    agreement with the reference, and the largest absolute output difference.
    regress: the absolute error against the reference (mean, max), the relative error
    (||out - ref|| / ||ref|| over the split), the mean cosine similarity of output vectors
    (vectors only), and both models' mean absolute error against the labels.
    lm: see lm_metrics."""
    if task == "lm":
        return lm_metrics(ref, out, labels)
    if task == "classify":
        ref_top, out_top = ref.argmax(axis=-1), out.argmax(axis=-1)
        ref_acc = float((ref_top == labels).mean() * 100)
        acc = float((out_top == labels).mean() * 100)
        return {
            "task": task,
            "accuracy": acc,
            "drift": ref_acc - acc,
            "agreement": float((out_top == ref_top).mean() * 100),
            "max_abs_diff": float(np.abs(out - ref).max()),
            "confusion": confusion(labels, out_top, out.shape[-1]),
        }
    ref2 = ref.reshape(len(ref), -1).astype(np.float64)
    out2 = out.reshape(len(out), -1).astype(np.float64)
    diff = np.abs(out2 - ref2)
    norm = float(np.linalg.norm(ref2))
    metrics: dict[str, Any] = {
        "task": task,
        "mean_abs_error": float(diff.mean()),
        "max_abs_diff": float(diff.max()),
        "relative_error": float(np.linalg.norm(out2 - ref2) / norm) if norm else float(diff.max()),
        "cosine": None,
    }
    if ref2.shape[1] >= 2:
        dots = (ref2 * out2).sum(axis=1)
        norms = np.linalg.norm(ref2, axis=1) * np.linalg.norm(out2, axis=1)
        metrics["cosine"] = float(
            np.mean(np.where(norms > 0, dots / np.maximum(norms, 1e-30), 1.0))
        )
    y = np.asarray(labels, dtype=np.float64).reshape(len(labels), -1)
    if y.shape == ref2.shape:
        metrics["label_mae"] = float(np.abs(out2 - y).mean())
        metrics["reference_label_mae"] = float(np.abs(ref2 - y).mean())
    return metrics


# Up to this many classes a confusion matrix is stored whole; above, only its non-zero cells
# (a 1000-class ImageNet head: at most one cell per held-out sample instead of a million).
DENSE_CONFUSION_CLASSES = 100


def confusion(
    labels: np.ndarray, predicted: np.ndarray, classes: int
) -> list[list[int]] | dict[str, Any]:
    """Counts per (true class, predicted class); labels outside the head's classes are left
    out. Above DENSE_CONFUSION_CLASSES classes: {"classes": n, "cells": [[true, predicted,
    count], ...]} with the non-zero cells only."""
    y = np.asarray(labels).astype(np.int64).reshape(-1)
    p = np.asarray(predicted).astype(np.int64).reshape(-1)
    keep = (y >= 0) & (y < classes)
    if classes > DENSE_CONFUSION_CLASSES:
        cells, counts = np.unique(np.stack([y[keep], p[keep]], axis=1), axis=0, return_counts=True)
        found = zip(cells.tolist(), counts.tolist(), strict=True)
        return {"classes": classes, "cells": [[t, q, c] for (t, q), c in found]}
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (y[keep], p[keep]), 1)
    return matrix.tolist()


def confusion_matrix(stored: list[list[int]] | dict[str, Any]) -> np.ndarray:
    """A stored confusion (either form) as a dense (classes, classes) array."""
    if isinstance(stored, dict):
        matrix = np.zeros((stored["classes"],) * 2, dtype=np.int64)
        for t, q, c in stored["cells"]:
            matrix[t, q] += c
        return matrix
    return np.asarray(stored, dtype=np.int64)


def reference_metrics(ref: np.ndarray, labels: np.ndarray, task: Task) -> dict[str, Any]:
    """The float model's own row: exact agreement with itself, and its error on the labels."""
    return head_metrics(ref, ref, labels, task)


def agreement_score(ref: np.ndarray, out: np.ndarray, task: Task) -> float:
    """How closely `out` follows `ref`, percent: top-1 agreement for a classifier; for a numeric
    head 100 x (1 - relative error), so a 99% floor means a relative error of at most 1%."""
    if task in ("classify", "lm"):  # lm: next-token top-1 at every position
        return float((ref.argmax(-1) == out.argmax(-1)).mean() * 100)
    rel = head_metrics(ref, out, np.zeros(len(ref)), "regress")["relative_error"]
    return float(max(0.0, 100.0 * (1.0 - rel)))
