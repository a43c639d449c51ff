"""quantize: quantized twins of the fp32 exports, one per backend that has the mode's recipes.

Each backend builds its recipes (TFLite quantizes during conversion from the Keras model;
onnxruntime quantizes the fp32 ONNX graph). With `select` on, a mode's candidate recipes are
measured against each other (see backends/select.py) and the winner kept. Calibration uses
samples of the training split only.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from compress import _tf, sensitivity
from compress.arrays import count, rows
from compress.backends import Sources, exported
from compress.backends.select import search
from compress.data import Dataset
from compress.errors import one_line
from compress.gates import DEFAULT_MAX_DRIFT, DEFAULT_MAX_ERROR
from compress.heads import head_metrics, match_heads
from compress.keras_io import copy_model, wrapped_weight
from compress.stages.base import Stage, StageParams, worker_for
from compress.stages.finetune import FineTuneParams, fine_tune
from compress.state import Artifact, RunState, Skipped

CHECK_SAMPLES = 300  # held-back training samples the fallback estimates drift on


class QuantizeParams(StageParams):
    mode: Literal["int8", "auto", "dynamic", "float16", "int4", "qat", "none"] = Field(
        "int8", description="int8: the best recipe storing weights in int8 (full-integer, "
        "dynamic-range or mixed), chosen per runtime; auto: the best of every recipe (float16 "
        "and int4 too); dynamic, float16, int4 (weight-only, onnxruntime), qat: that recipe; "
        "none: no quantized artifact"
    )  # fmt: skip
    select: bool = Field(
        True, description="int8/auto: measure the candidate recipes per runtime and keep the "
        "best for the objective among those agreeing with fp32 on >= min_agreement % of "
        "training-split samples (off: the mode's default recipe)"
    )  # fmt: skip
    objective: Literal["latency", "size"] = Field(
        "latency", description="latency: the fastest candidate (ties within 5% to the smaller); "
        "size: the smallest that is not slower than fp32"
    )  # fmt: skip
    min_agreement: float = Field(99.0, ge=0.0, le=100.0)
    fallback: bool = Field(
        True, description="when an artifact's accuracy drift, estimated on held-back "
        "training-split samples, exceeds max_drift: keep its most sensitive layers float, a "
        "group at a time, until it fits"
    )  # fmt: skip
    max_drift: float = Field(
        DEFAULT_MAX_DRIFT, ge=0.0,
        description="the fallback's drift budget, points (a pipeline gives it verify.max_drift)",
    )  # fmt: skip
    max_error: float = Field(
        DEFAULT_MAX_ERROR, ge=0.0,
        description="the fallback's budget for numeric heads, relative error (a pipeline gives "
        "it verify.max_error)",
    )  # fmt: skip
    threads: int = Field(1, ge=1, description="threads when timing candidates (as verify's)")
    qat_epochs: int = Field(
        1, ge=1, le=1000, description="QAT fine-tuning epochs (untrained QAT exports garbage)"
    )
    qat_learning_rate: float = Field(1e-4, gt=0.0, le=1.0)
    seed: int = Field(0, ge=0)


def quantization_aware_model(
    model: Any, data: Dataset, state: RunState, params: QuantizeParams
) -> tuple[Any, list[str]]:
    """The model wrapped for QAT and fine-tuned; returns (qat model, layer types left float).

    Pruned or clustered weights are preserved (tfmot's PQAT / CQAT / PCQAT schemes); compress's
    custom layers use their registered QuantizeConfig.
    """
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as registry_mod,
    )

    from compress import layers as compress_layers

    tfmot, keras = _tf.tfmot(), _tf.keras()
    q = tfmot.quantization.keras
    registry = registry_mod.Default8BitQuantizeRegistry()
    left_float: set[str] = set()

    def annotate(layer):
        if isinstance(layer, keras.layers.InputLayer):
            return layer
        for cls, config in compress_layers.QUANTIZE_CONFIGS.items():
            if isinstance(layer, cls):
                return q.quantize_annotate_layer(layer, config())
        if isinstance(layer, keras.layers.LSTM):
            # tfmot's registry has LSTM commented out; its RNN config fake-quantizes the cell's
            # kernel and recurrent kernel (weights only, so the fused TFLite LSTM still forms).
            rnn_config = registry_mod.Default8BitQuantizeConfigRNN(
                [["kernel", "recurrent_kernel"]], [[]], False
            )
            return q.quantize_annotate_layer(layer, rnn_config)
        if registry.supports(layer):
            return q.quantize_annotate_layer(layer)
        left_float.add(type(layer).__name__)
        return layer

    annotated = keras.models.clone_model(copy_model(model), clone_function=annotate)
    combine = tfmot.experimental.combine
    if "cluster" in state.info:
        scheme = combine.Default8BitClusterPreserveQuantizeScheme(
            preserve_sparsity="prune" in state.info
        )
    elif "prune" in state.info:
        scheme = combine.Default8BitPrunePreserveQuantizeScheme()
    else:
        scheme = q.default_8bit.Default8BitQuantizeScheme()
    with q.quantize_scope(compress_layers.CUSTOM_OBJECTS):
        # Keep layer (and so output) names: the heads are matched by name downstream.
        qmodel = q.quantize_apply(annotated, scheme, quantized_layer_name_prefix="")
    tuning = FineTuneParams(
        epochs=params.qat_epochs, learning_rate=params.qat_learning_rate, seed=params.seed
    )
    fine_tune(qmodel, data, tuning, model.output_names)
    if "cluster" in state.info:
        # CQAT trains centroids and associations beside the original weights; stripping puts
        # the clustered (and, after pruning, sparse) weights back for export.
        qmodel = combine.strip_clustering_cqat(qmodel)
    if "prune" in state.info:
        keep_pruned_zeros(model, qmodel, list(state.info["prune"]["layers"]))
    return qmodel, sorted(left_float)


def keep_pruned_zeros(model: Any, qmodel: Any, layer_names: list[str]) -> None:
    """Put the pruned weights back to exactly zero after QAT. tfmot's cluster-preserving QAT
    can move the zero centroid, which silently undoes pruning (seen on the CNN's Dense)."""
    for name in layer_names:
        source = [w for w in model.get_layer(name).weights if len(w.shape) >= 2]
        target = qmodel.get_layer(name)  # the QAT wrapper owns the wrapped layer's weights
        for w in source:
            match = wrapped_weight(target, w)
            if match is not None:
                mask = w.numpy() == 0
                match.assign(np.where(mask, 0.0, match.numpy()).astype(np.float32))


class Quantize(Stage):
    name = "quantize"
    Params = QuantizeParams

    def run(self, state: RunState) -> RunState:
        p = self.params
        if p.mode == "none":
            return state
        model, data = self.model(state), self.data(state)
        qat_model, qat_float = None, []
        if p.mode == "qat":
            qat_model, qat_float = quantization_aware_model(model, data, state, p)
        opset = state.info.get("export_onnx", {}).get("opset")
        made: list[Artifact] = []
        skipped: list[Skipped] = []
        check = _CheckSet(model, data, p.max_drift / max(p.max_error, 1e-9))
        worker = worker_for(state)
        for backend in exported():
            fp32 = state.artifact(backend.runtime, "fp32")
            default = backend.default(p.mode)
            if fp32 is not None and default is None and p.mode in backend.no_recipe:
                reason = backend.no_recipe[p.mode]  # said in the report, not faked
                skipped.append(Skipped(backend.file_name(p.mode), backend.runtime, reason))
                continue
            if fp32 is None or default is None:
                continue  # this format was not exported, or has no recipe for the mode
            src = Sources(model, data.x_calib, fp32, qat_model, tuple(qat_float), opset,
                          tasks={h: data.task(h) for h in data.heads}, worker=worker)  # fmt: skip
            name = backend.file_name(p.mode)
            try:
                step = _stepper(state, f"quantize: {backend.runtime} candidates")
                made.append(self._make(backend, default, src, name, check, state.workdir, step))
            except Exception as exc:  # the converter or quantizer cannot, or crashed
                reason = f"{backend.runtime} {p.mode} recipe failed: {one_line(exc)}"
                skipped.append(Skipped(name, backend.runtime, reason))
        info = {"mode": p.mode, "recipes": {a.name: a.recipe.id for a in made}}
        return state.add(tuple(made), tuple(skipped)).with_info("quantize", info)

    def _make(
        self,
        backend: Any,
        default: Any,
        src: Sources,
        name: str,
        check: _CheckSet,
        workdir: Any,
        step: Any = None,
    ) -> Artifact:
        """The mode's artifact for one backend: the measured choice among the candidates (or
        the default recipe), corrected by the fallback when its drift exceeds the budget, with
        its per-layer errors."""
        p = self.params
        candidates = backend.candidates(p.mode, src) if p.select else []
        with tempfile.TemporaryDirectory(prefix="compress-quantize-") as tmp:
            path = Path(tmp) / name
            how: dict[str, Any] = {}
            if len(candidates) > 1:
                chosen = search(
                    backend, candidates, src, threads=p.threads,
                    # QAT candidates are one fine-tuned model stored two ways: agreement with
                    # the float fp32 file does not rank them (verify's drift gate does)
                    min_agreement=0.0 if p.mode == "qat" else p.min_agreement,
                    objective=p.objective, options=src.fp32.options, step=step,
                )  # fmt: skip
                spec, decided = chosen.spec, chosen.decided
                path.write_bytes(chosen.blob)
                how["candidates"] = chosen.candidates
                how["selection"] = {"objective": p.objective, "min_agreement": p.min_agreement,
                                    "rounds": chosen.rounds}  # fmt: skip
            else:
                spec = default
                decided = backend.build_isolated(spec, src, path)
            errors = _layer_errors(backend, path, src)
            if p.fallback and p.mode != "qat":
                spec, fallback = _fallback(backend, spec, src, path, errors, check, p)
                if fallback:
                    how["fallback"] = fallback
                if fallback.get("kept_float"):
                    errors = _layer_errors(backend, path, src)
            art = backend.make(
                workdir, spec, src, name=name, precision=_precision(p.mode, spec), extra=decided,
                write=lambda target: shutil.copyfile(path, target), **how,
            )  # fmt: skip
        return replace(art, facts={**art.facts, "layer_errors": errors})


class _CheckSet:
    """Held-back training-split samples (the last CHECK_SAMPLES) with labels, and the float
    model's outputs on them (computed when first needed): the fallback's drift estimate. The
    held-out split stays verify's."""

    def __init__(self, model: Any, data: Dataset, error_scale: float) -> None:
        n = count(data.x_train)
        start = max(0, n - CHECK_SAMPLES)
        self.model = model
        self.x = rows(data.x_train, start, n)
        self.y = {h: y[start:n] for h, y in data.y_train.items()}
        self.tasks = {h: data.task(h) for h in self.y}
        self.error_scale = error_scale  # points of drift per unit of a numeric head's error
        self.samples = count(self.x)

    @cached_property
    def reference(self) -> dict[str, np.ndarray]:
        from compress.backends.keras import KerasRunner

        return match_heads("keras model", KerasRunner(self.model).predict(self.x), list(self.y))

    def drift(self, backend: Any, path: Path, options: dict[str, bool]) -> float:
        """How far the file is over budget, in the drift's units (points): the worst
        classifier head's accuracy drop against the float model, and each numeric head's
        relative error scaled by max_drift / max_error, so one number is held to max_drift."""
        runner = backend.open_runner(path, 1, **options)
        outputs = match_heads(path.name, runner.predict(self.x), list(self.y))
        worst = 0.0
        for h in self.y:
            m = head_metrics(self.reference[h], outputs[h], self.y[h], self.tasks[h])
            if self.tasks[h] == "classify":
                worst = max(worst, m["drift"])
            else:
                worst = max(worst, m["relative_error"] * self.error_scale)
        return worst


def _layer_errors(backend: Any, path: Path, src: Sources) -> dict[str, Any]:
    """Per-layer error of the file against its runtime's fp32 artifact (sensitivity.py), or why
    it could not be measured."""
    x = rows(src.x_calib, 0, sensitivity.SAMPLES)
    try:
        # in the worker: the inspecting interpreter (reference kernels, every tensor kept) is
        # native code that loads the file a second way
        found = backend.layer_errors_isolated(path, src, x)
    except Exception as exc:
        return {"unavailable": one_line(exc)}
    if found is None:
        return {"unavailable": f"{backend.runtime} does not expose intermediate tensors"}
    return {"samples": count(x), "metric": "sqnr_db", "layers": found}


def _fallback(
    backend: Any,
    spec: Any,
    src: Sources,
    path: Path,
    errors: dict[str, Any],
    check: _CheckSet,
    p: QuantizeParams,
) -> tuple[Any, dict[str, Any]]:
    """When the file's drift (estimated on the check set) exceeds `max_drift`: rebuild it with
    the most sensitive layers kept float, a group at a time (a quarter of the quantized layers),
    until the drift fits or nothing is left; keep the best. NNCF's accuracy-controlled
    quantization does the same on its own models. Returns the spec used and what happened."""
    options = src.fp32.options
    before = check.drift(backend, path, options)
    if before <= p.max_drift:
        return spec, {}
    info: dict[str, Any] = {"max_drift": p.max_drift, "drift_before": before,
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
            backend.build_isolated(candidate, src, trial)
        except Exception as exc:  # a crash or refusal of this rebuild: keep the best so far
            info["steps"].append({"kept_float": len(layers), "error": one_line(exc)})
            continue
        drift = check.drift(backend, trial, options)
        names = [r["layer"] for r in layers]
        info["steps"].append({"kept_float": len(names), "drift": drift})
        if drift < best[0]:
            best = (drift, candidate, trial.read_bytes(), names)
        if drift <= p.max_drift:
            break
    drift, chosen, blob, names = best
    path.write_bytes(blob)
    info.update(drift_after=drift, kept_float=names)
    return chosen, info


def _precision(mode: str, spec: Any) -> str:
    """The artifact's precision: the mode asked for (`int8` whichever int8 recipe won), or for
    `auto` the winning recipe's own mode (int8, dynamic, float16)."""
    return spec.mode if mode == "auto" else mode


def _stepper(state: RunState, task: str) -> Any:
    """A (done, total) callback reporting `task`'s steps to the run's progress, or None."""
    if state.progress is None:
        return None
    return lambda done, total: state.progress.step(task, done, total)
