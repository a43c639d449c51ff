"""The drift fallback: when a quantized file's accuracy drift, estimated on held-back
training-split samples, exceeds the budget, its most sensitive layers (lowest SQNR against the
runtime's fp32 file) are kept float, a group at a time, until it fits. The recipe search
(select.py) chooses among whole recipes; this corrects the one chosen, layer by layer."""

from __future__ import annotations

import math
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from compress.backends.base import Sources
from compress.backends.isolated import build_isolated, layer_errors_isolated
from compress.core.arrays import count, rows
from compress.core.errors import one_line
from compress.keras.data import Dataset
from compress.measure import sensitivity
from compress.measure.heads import head_metrics, match_heads

CHECK_SAMPLES = 300  # held-back training samples the fallback estimates drift on


class CheckSet:
    """Held-back training-split samples (the last CHECK_SAMPLES) with labels, and the float
    model's outputs on them (computed when first needed): the fallback's drift estimate. The
    held-out split stays verify's."""

    def __init__(
        self, model: Any, data: Dataset, error_scale: float, ppl_scale: float = 1.0
    ) -> None:
        n = count(data.x_train)
        start = max(0, n - CHECK_SAMPLES)
        self.model = model
        self.x = rows(data.x_train, start, n)
        self.y = {h: y[start:n] for h, y in data.y_train.items()}
        self.tasks = {h: data.task(h) for h in self.y}
        self.error_scale = error_scale  # points of drift per unit of a numeric head's error
        self.ppl_scale = ppl_scale  # points of drift per percent of an LM head's perplexity
        self.samples = count(self.x)
        self.estimates: dict[str, dict[str, float]] = {}

    @cached_property
    def reference(self) -> dict[str, np.ndarray]:
        from compress.backends.keras import KerasRunner

        return match_heads("keras model", KerasRunner(self.model).predict(self.x), list(self.y))

    def drift(self, backend: Any, path: Path, options: dict[str, bool]) -> float:
        """How far the file is over budget, in the drift's units (points): the worst
        classifier head's accuracy drop against the float model, and each numeric head's
        relative error scaled by max_drift / max_error (a language model head's perplexity
        increase by max_drift / max_ppl_increase), so one number is held to max_drift. The
        first estimate of each file name is kept in `estimates`."""
        runner = backend.open_runner(path, 1, **options)
        outputs = match_heads(path.name, runner.predict(self.x), list(self.y))
        drift, error, ppl = 0.0, 0.0, 0.0
        for h in self.y:
            m = head_metrics(self.reference[h], outputs[h], self.y[h], self.tasks[h])
            if self.tasks[h] == "classify":
                drift = max(drift, m["drift"])
            elif self.tasks[h] == "lm":
                ppl = max(ppl, m["ppl_increase"])
            else:
                error = max(error, m["relative_error"])
        estimate = {"drift": drift, "relative_error": error, "ppl_increase": ppl}
        self.estimates.setdefault(path.name, estimate)
        return max(drift, error * self.error_scale, ppl * self.ppl_scale)


def layer_errors(backend: Any, path: Path, src: Sources) -> dict[str, Any]:
    """Per-layer error of the file against its runtime's fp32 artifact (sensitivity.py), or why
    it could not be measured."""
    x = rows(src.x_calib, 0, sensitivity.SAMPLES)
    try:
        # in the worker: the inspecting interpreter (reference kernels, every tensor kept) is
        # native code that loads the file a second way
        found = layer_errors_isolated(backend, path, src, x)
    except Exception as exc:
        return {"unavailable": one_line(exc)}
    if found is None:
        return {"unavailable": f"{backend.runtime} does not expose intermediate tensors"}
    return {"samples": count(x), "metric": "sqnr_db", "layers": found}


def fallback(
    backend: Any,
    spec: Any,
    src: Sources,
    path: Path,
    errors: dict[str, Any],
    check: CheckSet,
    max_drift: float,
) -> tuple[Any, dict[str, Any]]:
    """When the file's drift (estimated on the check set) exceeds `max_drift`: rebuild it with
    the most sensitive layers kept float (a 4-bit recipe: kept at int8, `kept_at`), a group at
    a time (a quarter of the quantized layers),
    until the drift fits or nothing is left; keep the best. NNCF's accuracy-controlled
    quantization does the same on its own models. Returns the spec used and what happened."""
    options = src.fp32.options
    before = check.drift(backend, path, options)
    if before <= max_drift:
        return spec, {}
    info: dict[str, Any] = {"max_drift": max_drift, "drift_before": before,
                            "samples": check.samples, "kept_float": [], "steps": []}  # fmt: skip
    ranked = [r for r in errors.get("layers", []) if r["sqnr_db"] is None or r["sqnr_db"] < 999]
    if not ranked or backend.keep_float(spec, ranked[:1]) is None:
        info["drift_after"] = before
        info["note"] = errors.get("unavailable") or (
            f"recipe {spec.id} cannot keep single layers float"
        )
        return spec, info
    group = max(1, math.ceil(len(ranked) / 4))
    best = (before, spec, path.read_bytes(), [])
    trial = path.with_name("fallback-" + path.name)
    for k in range(group, len(ranked) + group, group):
        layers = ranked[:k]
        candidate = backend.keep_float(spec, layers)
        try:
            build_isolated(backend, candidate, src, trial)
        except Exception as exc:  # a crash or refusal of this rebuild: keep the best so far
            info["steps"].append({"kept_float": len(layers), "error": one_line(exc)})
            continue
        drift = check.drift(backend, trial, options)
        names = [r["layer"] for r in layers]
        info["steps"].append({"kept_float": len(names), "drift": drift})
        if drift < best[0]:
            best = (drift, candidate, trial.read_bytes(), names)
        if drift <= max_drift:
            break
    drift, chosen, blob, names = best
    path.write_bytes(blob)
    info.update(drift_after=drift, kept_float=names)
    if chosen.knobs.get("int8_scopes"):  # a 4-bit recipe keeps its sensitive layers at int8
        info["kept_at"] = "int8"
    return chosen, info
