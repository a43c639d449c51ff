"""Making `.tflite` files: the TFLite converter (from a tf_keras model through one SavedModel
export per model, batch and weights; its own int8 calibration and MLIR quantizer), and
ai-edge-quantizer on a converted fp32 file (int4 and int8, channel-wise or blockwise). The
converter's errors for ops TFLite cannot build become one-line reasons. Runs inside the worker
process (backends/worker.py) that the LiteRT backend builds its recipes in.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
import threading
import warnings
import weakref
from typing import Any

import numpy as np

from compress.backends import worker as isolate
from compress.core import compat
from compress.core.arrays import Inputs, as_feed, count
from compress.keras import _tf
from compress.measure.weights import float_weight_bytes

CONVERTER = "TFLite converter"
# A flatbuffer addresses at most 2 GiB: a model whose float weights pass it is converted with its
# constant buffers after the flatbuffer, by offset (LiteRT reads such files)
FLATBUFFER_LIMIT = 2**31
AEQ = "ai-edge-quantizer"  # Google's quantizer of converted LiteRT files: int4, blockwise


def has_recurrent_layer(model: Any) -> bool:
    """A Keras RNN layer, or (a SavedModel's signature, see keras/signature.py) a loop over
    time in its graph: either converts to a fused, stateful op at a fixed batch only."""
    from compress.keras import signature  # imports TensorFlow, as the keras call does

    keras = _tf.keras()
    if any(isinstance(m, keras.layers.RNN) for m in model.submodules):
        return True
    return signature.directory(model) is not None and signature.has_loop(model)


# model -> {(batch, weights digest): SavedModel directory}: one export per model, batch and
# weight values in this process (the worker keeps its models), shared by every conversion of it;
# removed when the model is gone. The digest makes a model trained further export again.
_EXPORTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _weights_digest(model: Any) -> str:
    h = hashlib.blake2b(digest_size=16)
    for v in model.variables:
        h.update(v.name.encode())
        h.update(np.ascontiguousarray(v.numpy()).tobytes())
    return h.hexdigest()


def _saved_model(model: Any, batch: int | None) -> str:
    """The model's inference (training=False) as a SavedModel with one signature that keeps the
    Keras input and output names: one traced function and the variables. The converter's
    `from_keras_model` instead exports the whole tf_keras SavedModel (every layer's functions
    traced) for each conversion: 33 s for EfficientNetB0 at 224 against 4 s for this export and
    5 s to convert from it (same file, same outputs; only the source-type metadata differs)."""
    exports = _EXPORTS.setdefault(model, {})
    key = (batch, _weights_digest(model))
    if key in exports:
        return exports[key]
    tf = _tf.tf()
    specs = [
        tf.TensorSpec([batch, *t.shape[1:]], t.dtype, name=name)
        for t, name in zip(model.inputs, model.input_names, strict=True)
    ]

    @tf.function(input_signature=specs)
    def serve(*xs):
        out = model(list(xs) if len(xs) > 1 else xs[0], training=False)
        if not isinstance(out, list | tuple):
            out = [out]
        return dict(zip(model.output_names, out, strict=True))

    module = tf.Module()
    module.variables_ = list(model.variables)  # tracked, so the export holds them
    directory = tempfile.mkdtemp(prefix="compress-savedmodel-")
    weakref.finalize(model, shutil.rmtree, directory, ignore_errors=True)
    try:
        tf.saved_model.save(
            module, directory, signatures={"serving_default": serve.get_concrete_function()}
        )
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    exports[key] = directory
    return directory


def _converter(model: Any) -> Any:
    """A converter for the model. Models with recurrent layers get a fixed batch of 1: the
    TFLite converter fuses a Keras LSTM into one stateful op only for a static batch."""
    tf = _tf.tf()
    batch = fixed_batch(model) or (1 if has_recurrent_layer(model) else None)
    return tf.lite.TFLiteConverter.from_saved_model(_saved_model(model, batch))


def fixed_batch(model: Any) -> int | None:
    """The batch size the model's inputs are fixed to (a SavedModel signature exported at
    batch 1), or None."""
    return model.inputs[0].shape[0]


def calibrate(model: Any, x_calib: Inputs | None) -> bytes:
    """The float model with the activation ranges of the calibration samples recorded: the
    converter's own calibration, done once and shared by every int8 recipe of the model."""
    isolate.step(CONVERTER, "int8 calibration")
    return convert(model, {"optimize": True, "int8_ops": True, "calibrate_only": True}, x_calib)


def quantize_calibrated(calibrated: bytes, knobs: dict[str, Any]) -> bytes:
    """Full-integer int8 from a calibrated model (float I/O), as the converter does after its
    calibration: MLIR quantization, then read-only buffers deduplicated."""
    _tf.tf()
    isolate.step(CONVERTER, "int8 quantization")
    from tensorflow.lite.python.convert import mlir_quantize
    from tensorflow.lite.python.lite import _deduplicate_readonly_buffers

    quantized = mlir_quantize(
        calibrated,
        disable_per_channel=not knobs.get("per_channel", True),
        denylisted_ops=list(knobs.get("denylisted_ops") or []) or None,
        denylisted_nodes=list(knobs.get("denylisted_nodes") or []) or None,
    )
    return _deduplicate_readonly_buffers(quantized)


def convert(model: Any, knobs: dict[str, Any], x_calib: Inputs | None = None) -> bytes:
    """Convert a tf_keras model with a recipe's knobs. Models with recurrent layers are
    converted at a fixed batch of 1 (see _converter)."""
    tf = _tf.tf()
    if knobs.get("int8_ops") and (knobs.get("denylisted_ops") or knobs.get("denylisted_nodes")):
        # ops kept float: the converter's own calibration, then its MLIR quantizer told what to
        # leave alone (what tf.lite.experimental.QuantizationDebugger does for a denylist)
        return quantize_calibrated(calibrate(model, x_calib), knobs)
    what = "int8 calibration" if knobs.get("int8_ops") else "conversion"
    isolate.step(CONVERTER, what)
    converter = _converter(model)
    weights = float_weight_bytes(model)
    if weights > FLATBUFFER_LIMIT:
        compat.tflite_buffer_offsets(converter)
    if knobs.get("optimize"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if knobs.get("int8_ops"):
        if x_calib is None or count(x_calib) == 0:
            raise ValueError("int8 conversion needs calibration samples")
        feed = as_feed(x_calib, model.input_names)

        def representative():
            for i in range(count(x_calib)):
                yield {name: arr[i : i + 1] for name, arr in feed.items()}

        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        compat.tflite_quantization_knobs(
            converter, knobs.get("per_channel", True), bool(knobs.get("calibrate_only"))
        )
    if knobs.get("legacy_dynamic_range"):
        converter.experimental_new_dynamic_range_quantizer = False
    if knobs.get("float16"):
        converter.target_spec.supported_types = [tf.float16]
    with warnings.catch_warnings():
        # "Statistics for quantized inputs were expected": float I/O is intended here.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        # The converter calibrates with the deprecated tf.lite.Interpreter internally.
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
        try:
            with compat.tflite_converter_collect(weights > _tf.COLLECT_ABOVE):
                return converter.convert()
        except Exception as exc:
            from compress.keras import signature

            flex = flex_ops_error(str(exc)) or operand_type_error(str(exc))
            if flex is not None:
                raise flex from None

            dynamic = fixed_batch(model) is None and signature.directory(model) is not None
            if dynamic and "TensorList" in str(exc):
                raise ValueError(
                    "the SavedModel's signature runs a recurrent loop at a dynamic batch, "
                    "which the TFLite converter cannot make static: export it at batch 1 "
                    "(model.export(dir, input_signature=[tf.TensorSpec((1, ...), ...)]))"
                ) from None
            raise


def aeq_quantize(fp32: bytes, knobs: dict[str, Any], x_calib: Inputs | None = None) -> bytes:
    """A converted fp32 file quantized by ai-edge-quantizer: every op it supports gets
    `bits`-bit weights at `granularity`, "dynamic" (activations quantized at run time, integer
    kernels), "weight_only" (weights dequantized to float before the op) or "static"
    (activations quantized to `act_bits` with ranges calibrated on `x_calib`); the ops whose
    output tensors `int8_scopes` names get int8 weights instead (mixed 4/8, the fallback's), and
    the op types in `float_ops` stay float."""
    isolate.step(AEQ, f"{knobs['aeq']} int{knobs['bits']} quantization")
    import tqdm
    from ai_edge_quantizer import qtyping, quantizer

    # its (disabled) progress bars would create tqdm's default lock, a multiprocessing semaphore
    # the worker process leaves behind ("leaked semaphore objects" at exit): a thread lock does
    tqdm.tqdm.set_lock(threading.RLock())
    q = quantizer.Quantizer(fp32)
    granularity = qtyping.QuantGranularity[knobs["granularity"]]
    if knobs["aeq"] == "static":

        def add(regex: str, op: Any, bits: int, granularity: Any) -> None:
            q.add_static_config(regex, op, knobs["act_bits"], bits, granularity)
    else:
        add = q.add_dynamic_config if knobs["aeq"] == "dynamic" else q.add_weight_only_config
    add(".*", qtyping.TFLOperationName.ALL_SUPPORTED, knobs["bits"], granularity)
    # mixed 4/8: the latest matching config wins; an op's scope is "out1;out2;" (its outputs)
    for name in knobs.get("int8_scopes") or []:
        add(f"(^|;){re.escape(name)};", qtyping.TFLOperationName.ALL_SUPPORTED,
            8, qtyping.QuantGranularity.CHANNELWISE)  # fmt: skip
    for op in knobs.get("float_ops") or []:  # op types left float (e.g. off XNNPACK in int8)
        q.update_quantization_recipe(".*", qtyping.TFLOperationName(op),
                                     algorithm_key=quantizer.AlgorithmName.NO_QUANTIZE)  # fmt: skip
    calibration = None
    if q.need_calibration:
        if x_calib is None:
            raise ValueError("static quantization needs calibration samples")
        isolate.step(AEQ, f"calibration of int{knobs['act_bits']} activations")
        calibration = q.calibrate(_signature_samples(fp32, x_calib), num_threads=1)
    result = q.quantize(calibration, enable_progress_bar=False, enable_progress_report=False)
    return bytes(result.quantized_model)


def validator_errors(fp32: bytes, quantized: bytes, x: Inputs) -> list[dict[str, Any]]:
    """ai-edge-quantizer's per-tensor validation of a quantized file against its fp32 file on
    the samples `x`, run with XNNPACK (the deployed kernels): every tensor both files name,
    its signal-to-noise ratio in dB, worst first (rows as sensitivity.compare's)."""
    from ai_edge_quantizer import model_validator
    from ai_edge_quantizer.utils.validation_utils import ValidationErrorMetric

    isolate.step(AEQ, "per-tensor validation")
    data = _signature_samples(fp32, x)
    result = model_validator.compare_model(
        fp32, quantized, data, [ValidationErrorMetric.SNR], use_xnnpack=True, num_threads=1
    )
    found = result.get_signature_comparison_result(next(iter(data)))
    rows = []
    for order, (name, metrics) in enumerate(
        {**found.intermediate_tensors, **found.output_tensors}.items()
    ):
        snr = float(metrics["snr"])
        db = 999.0 if snr >= 1e99 else round(10 * np.log10(max(snr, 1e-12)), 2)
        rows.append({"layer": name, "op": None, "sqnr_db": db, "order": order})
    rows.sort(key=lambda r: (r["sqnr_db"], r["order"]))
    return [{k: v for k, v in r.items() if k != "order"} for r in rows]


AEQ_CALIBRATION_SAMPLES = 100  # ranges of a static recipe's activations: from this many samples


def _signature_samples(fp32: bytes, x: Inputs) -> dict[str, list[dict[str, np.ndarray]]]:
    """Calibration samples, one per call, keyed by the fp32 file's signature and its inputs."""
    from ai_edge_litert.interpreter import Interpreter

    signatures = Interpreter(model_content=fp32).get_signature_list()
    key = next(iter(signatures))
    feed = as_feed(x, signatures[key]["inputs"])
    n = min(count(x), AEQ_CALIBRATION_SAMPLES)
    return {key: [{name: a[i : i + 1] for name, a in feed.items()} for i in range(n)]}


class ConverterRefused(ValueError):
    """The TFLite converter's error for this model, said in one line (not its MLIR dump)."""

    self_describing = True  # errors.one_line shows the message without the type name


class NeedsFlexOps(ConverterRefused):
    """The model needs TensorFlow ops that TFLite's builtin op set lacks. compress converts to
    builtin ops only: a file with Flex (Select TF) ops would fail in the LiteRT interpreter."""


# One converter error per op: its location (innermost first: "model/layer/Op@function") and op.
_NOT_BUILTIN = re.compile(
    r'error: loc\(.*?fused\["[^"]*", "([^"@]+)(?:@([^"]+))?"\].*?'
    r"'tf\.(\w+)' op is neither a custom op nor a flex op"
)


def flex_ops_error(text: str) -> NeedsFlexOps | None:
    """The converter's error for ops outside TFLite's builtins, as one line naming each op and
    the layer (a Keras node path `model/layer/...`) or graph function it sits in; None for any
    other error."""
    found: dict[str, str] = {}
    for node, function, op in _NOT_BUILTIN.findall(text):
        parts = node.split("/")
        where = f"layer '{parts[1]}'" if len(parts) >= 3 else f"node '{node}'"
        where += f" in function '{function}'" if function and len(parts) < 3 else ""
        found.setdefault(op, where)
    if not found:
        return None
    ops = ", ".join(f"{op} ({where})" for op, where in found.items())
    return NeedsFlexOps(
        f"needs TensorFlow op{'s' if len(found) > 1 else ''} outside TFLite's builtin set: {ops};"
        " a .tflite file would need Flex (Select TF) ops, which the LiteRT interpreter cannot "
        "run, so no TFLite file is made"
    )


# An op TFLite has, fed a tensor type its kernel does not take (Keras 3's int8 Dense feeds int8
# values without quantization parameters to FULLY_CONNECTED).
_OPERAND_TYPE = re.compile(
    r'error: loc\(.*?fused\["[^"]*", "([^"@]+)(?:@[^"]+)?"\].*?'
    r"'tfl\.(\w+)' op operand #(\d+) must be tensor of .*?but got '([^']+)'"
)


def operand_type_error(text: str) -> ConverterRefused | None:
    """The converter's error for an op whose operand has a type the TFLite kernel does not
    take, as one line naming the layer, the op and the type; None for any other error."""
    found = _OPERAND_TYPE.search(text)
    if found is None:
        return None
    node, op, operand, got = found.groups()
    parts = node.split("/")
    where = f"layer '{parts[1]}'" if len(parts) >= 3 else f"node '{node}'"
    return ConverterRefused(
        f"the TFLite converter cannot build {op.upper()} for {where}: its operand #{operand} is "
        f"{got}, a type TFLite's {op.upper()} kernel does not take, so no TFLite file is made"
    )
