"""Quantization-aware training with tfmot: annotate every layer tfmot (or compress's own
QuantizeConfig) can fake-quantize, fine-tune, and keep what pruning and clustering made; and
the QAT model's file form, which only compress writes and reads (the worker rebuilds it)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from compress.core import compat
from compress.keras import _tf
from compress.keras.data import Dataset
from compress.keras.model_io import copy_model, wrapped_weight
from compress.keras.training import fine_tune


def quantization_aware_model(
    model: Any,
    data: Dataset,
    *,
    pruned_layers: list[str] | None = None,
    clustered: bool = False,
    epochs: int = 1,
    learning_rate: float = 1e-4,
    seed: int = 0,
) -> tuple[Any, list[str]]:
    """The model wrapped for QAT and fine-tuned; returns (qat model, layer types left float).

    Pruned (`pruned_layers`: the layers a prune stage made sparse) or `clustered` weights are
    preserved (tfmot's PQAT / CQAT / PCQAT schemes); compress's custom layers use their
    registered QuantizeConfig.
    """
    from compress.keras import layers as compress_layers

    tfmot, keras = compress_layers.with_tfmot(), _tf.keras()
    registry_mod = compat.tfmot_default_8bit_registry()
    q = tfmot.quantization.keras
    registry = registry_mod.Default8BitQuantizeRegistry()
    left_float: set[str] = set()
    activations = compat.tfmot_quantizable_activations()

    def annotate(layer):
        if isinstance(layer, keras.layers.InputLayer):
            return layer
        for cls, config in compress_layers.quantize_configs().items():
            if isinstance(layer, cls):
                return q.quantize_annotate_layer(layer, config())
        if isinstance(layer, keras.layers.LSTM):
            # tfmot's registry has LSTM commented out; its RNN config fake-quantizes the cell's
            # kernel and recurrent kernel (weights only, so the fused TFLite LSTM still forms).
            rnn_config = registry_mod.Default8BitQuantizeConfigRNN(
                [["kernel", "recurrent_kernel"]], [[]], False
            )
            return q.quantize_annotate_layer(layer, rnn_config)
        activation = getattr(getattr(layer, "activation", None), "__name__", None)
        if activation is not None and activation not in activations and registry.supports(layer):
            # tfmot fake-quantizes only the activations it knows (its quantize_apply fails on
            # any other, e.g. compress's gelu_tanh or a Keras 3 hard_silu, even left
            # unannotated): the kernel and the output are fake-quantized, the activation
            # computes in float between them
            config = registry_mod.Default8BitQuantizeConfig(["kernel"], [], True)
            return q.quantize_annotate_layer(layer, config)
        if registry.supports(layer):
            return q.quantize_annotate_layer(layer)
        left_float.add(type(layer).__name__)
        return layer

    annotated = keras.models.clone_model(copy_model(model), clone_function=annotate)
    combine = tfmot.experimental.combine
    if clustered:
        scheme = combine.Default8BitClusterPreserveQuantizeScheme(
            preserve_sparsity=pruned_layers is not None
        )
    elif pruned_layers is not None:
        scheme = combine.Default8BitPrunePreserveQuantizeScheme()
    else:
        scheme = q.default_8bit.Default8BitQuantizeScheme()
    with q.quantize_scope(compress_layers.quantize_objects()):
        # Keep layer (and so output) names: the heads are matched by name downstream.
        qmodel = q.quantize_apply(annotated, scheme, quantized_layer_name_prefix="")
    tuning = SimpleNamespace(epochs=epochs, batch_size=32, learning_rate=learning_rate, seed=seed)
    fine_tune(qmodel, data, tuning, model.output_names)
    if clustered:
        # CQAT trains centroids and associations beside the original weights; stripping puts
        # the clustered (and, after pruning, sparse) weights back for export.
        qmodel = combine.strip_clustering_cqat(qmodel)
    if pruned_layers is not None:
        keep_pruned_zeros(model, qmodel, pruned_layers)
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


def save_qat_model(model: Any, path: Path) -> None:
    """A quantization-aware-trained model as HDF5 (tfmot's wrappers do not reload from .keras:
    their variables are restored under other names). Written and read by compress only."""
    model.save(str(path), include_optimizer=False)


def load_qat_model(path: str) -> Any:
    from compress.keras import layers as compress_layers

    q = compress_layers.with_tfmot().quantization.keras
    objects = compress_layers.quantize_objects()
    classes = {cls.__name__: cls for cls in objects.values()}
    with q.quantize_scope({**objects, **classes}):
        return _tf.keras().models.load_model(path, compile=False)
