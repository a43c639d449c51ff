"""export_tflite: the float model as a .tflite file, through the TFLite converter.

`convert_tflite` also makes the post-training quantized variants (used by the quantize stage),
because TFLite quantizes during conversion.
"""

from __future__ import annotations

import warnings
from typing import Any

from compress import _tf
from compress.arrays import Inputs, as_feed, count
from compress.fileio import write_bytes_atomic
from compress.stages.base import Artifact, RunState, Stage, StageParams

TFLITE_RECIPES = {
    "fp32": "TFLite converter, float32",
    "int8": "full-integer int8 (TFLITE_BUILTINS_INT8), float I/O, calibrated on the training split",
    "dynamic": "dynamic-range int8 weights, float activations",
    "float16": "float16 weights, float32 compute",
    "qat": "quantization-aware trained (tfmot), int8 weights and activations, float I/O",
}


def has_recurrent_layer(model: Any) -> bool:
    keras = _tf.keras()
    return any(isinstance(m, keras.layers.RNN) for m in model.submodules)


def _batch1_converter(model: Any) -> Any:
    """A converter for a fixed batch of 1: the TFLite converter fuses a Keras LSTM into one
    stateful op only for a static batch. The signature keeps the Keras input and output names."""
    tf = _tf.tf()
    specs = [
        tf.TensorSpec([1, *t.shape[1:]], t.dtype, name=name)
        for t, name in zip(model.inputs, model.input_names, strict=True)
    ]

    @tf.function(input_signature=specs)
    def serve(*xs):
        out = model(list(xs) if len(xs) > 1 else xs[0], training=False)
        if not isinstance(out, list | tuple):
            out = [out]
        return dict(zip(model.output_names, out, strict=True))

    return tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], model)


def convert_tflite(
    model: Any, precision: str, x_calib: Inputs | None = None, per_channel: bool = True
) -> bytes:
    """Convert a tf_keras model; precision is one of fp32, int8, dynamic, float16.

    Models with recurrent layers are converted at a fixed batch of 1 (see _batch1_converter).
    """
    tf = _tf.tf()
    if has_recurrent_layer(model):
        converter = _batch1_converter(model)
    else:
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if precision != "fp32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "int8":
        if x_calib is None or count(x_calib) == 0:
            raise ValueError("int8 conversion needs calibration samples")
        feed = as_feed(x_calib, model.input_names)

        def representative():
            for i in range(count(x_calib)):
                yield {name: arr[i : i + 1] for name, arr in feed.items()}

        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter._experimental_disable_per_channel = not per_channel
    elif precision == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif precision not in ("fp32", "dynamic", "qat"):
        raise ValueError(f"precision must be fp32, int8, dynamic or float16. Got {precision!r}.")
    with warnings.catch_warnings():
        # "Statistics for quantized inputs were expected": float I/O is intended here.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        # The converter calibrates with the deprecated tf.lite.Interpreter internally.
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
        return converter.convert()


def tflite_artifact(state: RunState, precision: str, blob: bytes) -> Artifact:
    name = f"model_{precision}.tflite"
    path = write_bytes_atomic(state.workdir / name, blob)
    recurrent = has_recurrent_layer(state.model)
    return Artifact(
        name=name,
        path=path,
        format="tflite",
        runtime="litert",
        precision=precision,
        recipe=TFLITE_RECIPES[precision] + (", fixed batch 1" if recurrent else ""),
        # The fused LSTM keeps its state in variables between invokes: reset before each call.
        options={"reset_state": recurrent},
    ).measured()


class ExportTFLite(Stage):
    name = "export_tflite"
    Params = StageParams

    def run(self, state: RunState) -> RunState:
        model = state.require_model(self.name)
        return state.add((tflite_artifact(state, "fp32", convert_tflite(model, "fp32")),))
