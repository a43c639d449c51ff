"""What each report field means: report.json carries it, report.md and the README show it (a
test checks the README's table is exactly this one)."""

from __future__ import annotations

from compress.measure.weights import GZIP_LEVEL

FIELDS = {
    "size_bytes": "file size in bytes",
    "size_gzip_bytes": f"file size after gzip (level {GZIP_LEVEL}), bytes: sparsity and clusters "
    "pay off compressed",
    "compression_ratio": "fp32 bytes of the Keras model's weights divided by size_gzip_bytes",
    "bits_per_weight": "file bits (scales, zero points and graph included) per parameter of the "
    "Keras float model: 32+ for fp32, about 8-9 for int8, 4-5 for int4",
    "accuracy": "top-1 accuracy on the held-out split, percent",
    "drift": "Keras float accuracy minus this artifact's, percentage points (positive = lost)",
    "baseline_drift": "accuracy of the float model before prune/cluster minus this one's, pts",
    "agreement": "percent of held-out samples whose top-1 class equals the Keras model's",
    "max_abs_diff": "largest absolute difference from the Keras model's outputs",
    "confusion": "classification heads: counts per [true class][predicted class] on the held-out "
    "split; above 100 classes {classes, cells: [[true, predicted, count]]}, non-zero cells only "
    "(report.html draws each compressed artifact's minus the float model's)",
    "task": "what a head is verified as: classify (accuracy, drift, agreement) or regress "
    "(numeric error against the Keras model), inferred or set by verify.task",
    "mean_abs_error": "numeric heads: mean absolute difference from the Keras model's outputs",
    "relative_error": "numeric heads: ||artifact - Keras|| / ||Keras|| over the held-out split; "
    "gated by max_error",
    "cosine": "numeric heads with vector outputs: mean cosine similarity to the Keras model's "
    "output vectors",
    "label_mae": "numeric heads: mean absolute error against the labels (reference_label_mae: "
    "the Keras model's)",
    "latency_ms.b1 / b32": "p50 and p90 of one call at batch 1 / 32, milliseconds, and the "
    "number of timed calls",
    "speedup.b1 / b32": "p50 latency of the same runtime's fp32 artifact divided by this one's "
    "(same rounds)",
    "sparsity": "fraction of zeros among the artifact's weights (constant tensors of rank >= 2)",
    "weights.tensors[]": "per weight tensor, counted in the file: shape, dtype, sparsity, "
    "distinct values, most distinct values in one channel",
    "repeatable": "the artifact gives a sample the same output before and after other samples ran",
    "left_float": "op types whose weights stayed float32 (e.g. LSTM under onnxruntime static int8)",
    "warnings": "compressed artifacts bigger than, or slower at batch 1 (beyond 5%) than, their "
    "runtime's fp32 artifact, or chosen below the search's accuracy floor (no candidate reached "
    "it), each with the fastest alternative recipe measured that passes the floor, and searches "
    "whose timing verify contradicted (verification.warnings)",
    "recipe": "how the artifact was made: id and description (a row of its backend's recipe "
    "table), knobs, and what every candidate measured when it was chosen by measurement",
    "recipe.selection": "the search's objective, agreement floor, winner after each timing round "
    "(it stops when the winner is the same 3 rounds running), and whether the winner pays "
    "(smaller than fp32 by 5% and not slower); each losing candidate carries why it lost (`lost`), "
    "and a winner kept because no candidate reached the floor, why it is below it (`below_floor`)",
    "op_profile": "per exported artifact: each op type's nodes and the kernels that ran them "
    "(LiteRT: XNNPACK or built-in; onnxruntime: its execution provider) and, in onnxruntime, the "
    "type's time per batch-1 call from the runtime's profiler (ms, share)",
    "recipe.fallback": "when the drift estimated on held-back training samples exceeded max_drift: "
    "the layers kept float, the drift before and after, each step",
    "layer_errors": "per layer of a quantized artifact, SQNR (dB) of its output against the same "
    "tensor in the runtime's fp32 artifact on 16 training samples, worst first (or why it could "
    "not be measured); TFLite rows add ai-edge-quantizer's per-tensor SNR under XNNPACK "
    "(validator_sqnr_db), and are its rows (source) where the reference kernels cannot stand in "
    "for XNNPACK",
}


def fields_table() -> list[str]:
    """FIELDS as a markdown table (report.md and the README)."""
    return ["| field | meaning |", "|---|---|"] + [f"| `{k}` | {v} |" for k, v in FIELDS.items()]
