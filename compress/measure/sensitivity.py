"""Per-layer quantization error: each layer's output in the quantized artifact compared with the
same tensor in its runtime's fp32 artifact, on the same samples.

Measured as SQNR (signal-to-quantization-noise ratio, dB: 10 log10(|ref|^2 / |ref - out|^2),
higher is better; about 6 dB per bit, so ~40 dB is a clean int8 tensor and under ~15 dB a layer
whose int8 form has lost much of its signal). The error accumulates along the graph; a layer
that is much worse than the one before it is where int8 hurts. Tensors are matched by name
(both files come from one model, and the converters keep the op names), so every recipe of a
runtime is measured the same way: full-integer, dynamic-range, mixed, float16.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SAMPLES = 16  # samples each tensor is compared on (training split)
SHOWN = 5  # worst layers listed in report.md (all are in report.json)


def sqnr_db(ref: np.ndarray, out: np.ndarray) -> float:
    signal = float(np.sum(np.square(ref, dtype=np.float64)))
    noise = float(np.sum(np.square(ref.astype(np.float64) - out.astype(np.float64))))
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return 10.0 * np.log10(signal / noise)


def compare(
    reference: dict[str, tuple[str, list[np.ndarray]]],
    quantized: dict[str, tuple[str, list[np.ndarray]]],
) -> list[dict[str, Any]]:
    """Per tensor name found in both (name -> (op type, one array per sample)): the SQNR over
    all samples, worst first. Ops in the quantized file's order break ties."""
    rows = []
    for order, (name, (op, outs)) in enumerate(quantized.items()):
        if name not in reference:
            continue
        ref = np.concatenate([np.ravel(a) for a in reference[name][1]])
        out = np.concatenate([np.ravel(a) for a in outs])
        if ref.shape != out.shape:
            continue
        rows.append({"layer": name, "op": op, "sqnr_db": sqnr_db(ref, out), "order": order})
    rows.sort(key=lambda r: (r["sqnr_db"], r["order"]))
    for r in rows:
        del r["order"]
        if not np.isfinite(r["sqnr_db"]):
            r["sqnr_db"] = None if r["sqnr_db"] < 0 else 999.0  # JSON has no infinity
        else:
            r["sqnr_db"] = round(r["sqnr_db"], 2)
    return rows


def summary(rows: list[dict[str, Any]] | None, shown: int = SHOWN) -> str | None:
    """`layer (op) 12.3 dB, ...` for the worst `shown` layers (`SQNR undefined` where the float
    output is all zeros: stored as None)."""
    if not rows:
        return None
    return ", ".join(
        f"{r['layer']}{f' ({op})' if (op := r['op']) else ''} "
        + ("SQNR undefined" if r["sqnr_db"] is None else f"{r['sqnr_db']} dB")
        for r in rows[:shown]
    )
