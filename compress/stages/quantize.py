"""quantize: quantized twins of the fp32 exports, one per backend that has the mode's recipes.

Each backend builds its recipes (TFLite quantizes during conversion from the Keras model;
onnxruntime quantizes the fp32 ONNX graph). With `select` on, a mode's candidate recipes are
measured against each other (see backends/select.py) and the winner kept. Calibration uses
samples of the training split only.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from compress import _tf
from compress.backends import Sources, exported
from compress.backends.select import search
from compress.data import Dataset
from compress.errors import one_line
from compress.keras_io import copy_model
from compress.stages.base import Stage, StageParams
from compress.stages.finetune import FineTuneParams, fine_tune
from compress.state import Artifact, RunState, Skipped


class QuantizeParams(StageParams):
    mode: Literal["int8", "dynamic", "float16", "qat", "none"] = "int8"
    select: bool = Field(
        True, description="measure the mode's candidate recipes per runtime, keep the fastest "
        "that agrees with fp32 on >= min_agreement % of training-split samples"
    )  # fmt: skip
    min_agreement: float = Field(99.0, ge=0.0, le=100.0)
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
            suffix = w.name.split("/")[-1]
            match = [t for t in target.weights if t.name.split("/")[-1] == suffix
                     and tuple(t.shape) == tuple(w.shape)]  # fmt: skip
            if match:
                mask = w.numpy() == 0
                match[0].assign(np.where(mask, 0.0, match[0].numpy()).astype(np.float32))


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
        for backend in exported():
            fp32 = state.artifact(backend.runtime, "fp32")
            default = backend.default(p.mode)
            if fp32 is None or default is None:
                continue  # this format was not exported, or has no recipe for the mode
            src = Sources(model, data.x_calib, fp32, qat_model, tuple(qat_float), opset)
            candidates = backend.candidates(p.mode) if p.select else []
            try:
                if len(candidates) > 1:
                    chosen = search(
                        backend, candidates, src, threads=p.threads,
                        min_agreement=p.min_agreement, options=fp32.options,
                    )  # fmt: skip
                    made.append(backend.make(
                        state.workdir, chosen.spec, src, candidates=chosen.candidates,
                        extra=chosen.decided, write=lambda tmp, c=chosen: tmp.write_bytes(c.blob),
                    ))  # fmt: skip
                else:
                    made.append(backend.make(state.workdir, default, src))
            except Exception as exc:  # the converter or quantizer cannot do this for this model
                reason = f"{backend.runtime} {p.mode} recipe failed: {one_line(exc)}"
                skipped.append(Skipped(backend.file_name(default), backend.runtime, reason))
        info = {"mode": p.mode, "recipes": {a.name: a.recipe.id for a in made}}
        return state.add(tuple(made), tuple(skipped)).with_info("quantize", info)
