"""LiteRT (`.tflite`): the TFLite converter makes every recipe from the Keras model (TFLite
quantizes during conversion); ai-edge-litert's interpreter runs the files.

Outputs are read through the model's signature, because a multi-output model's output tensor
order is not the Keras order. Quantized (int8/uint8) inputs and outputs are converted with the
tensor's own scale and zero point, so callers always pass and get float32.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
import warnings
import weakref
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from compress.backends import worker as isolate
from compress.backends.base import Backend, RecipeSpec, Sources
from compress.core import compat
from compress.core.arrays import Inputs, as_feed, batched, count, take_batch
from compress.keras import _tf, keras3
from compress.keras.model_io import trained_weights_into
from compress.measure.sensitivity import compare, sqnr_db
from compress.measure.weights import summarize, tensor_stats

CALIBRATED = "calibrated on the training split"

# TFLite's fused recurrent ops. Their integer kernels are far slower than float (measured 0.11x
# for the LSTM at batch 1; XNNPACK takes only the float ones), so a mixed recipe keeps them float.
RECURRENT_OPS = (
    "UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM", "UNIDIRECTIONAL_SEQUENCE_RNN",
    "BIDIRECTIONAL_SEQUENCE_RNN",
)  # fmt: skip
INT8_AND_AUTO = ("int8", "auto")
CONVERTER = "TFLite converter"
KERNELS_AGREE_DB = 40.0  # reference vs XNNPACK outputs of one file: closer is the same math

# Knobs the converter reads: optimize (Optimize.DEFAULT), int8_ops (TFLITE_BUILTINS_INT8 with a
# representative data set), per_channel (per-channel int8 weights), float16 (float16 weights),
# source ("qat": convert the quantization-aware-trained model; "qat-weights": the float graph
# with its trained weights), denylisted_ops / denylisted_nodes
# (op types / tensor names the int8 quantizer leaves float), legacy_dynamic_range (the converter's
# first dynamic-range quantizer).
RECIPES = (
    RecipeSpec("fp32", "fp32", "TFLite converter, float32"),
    RecipeSpec(
        "full-int8-per-channel", "int8",
        f"full-integer int8 (TFLITE_BUILTINS_INT8), per-channel weights, float I/O, {CALIBRATED}",
        {"optimize": True, "int8_ops": True, "per_channel": True}, search=INT8_AND_AUTO,
    ),
    RecipeSpec(
        "full-int8-per-tensor", "int8",
        f"full-integer int8 (TFLITE_BUILTINS_INT8), per-tensor weights, float I/O, {CALIBRATED}",
        {"optimize": True, "int8_ops": True, "per_channel": False}, search=INT8_AND_AUTO,
    ),
    RecipeSpec(
        "int8-float-recurrent", "int8",
        f"int8 with the recurrent ops kept float (mixed precision), per-channel weights, "
        f"{CALIBRATED}",
        {"optimize": True, "int8_ops": True, "per_channel": True,
         "denylisted_ops": list(RECURRENT_OPS)},
        search=INT8_AND_AUTO, needs="recurrent",
    ),
    RecipeSpec(
        "dynamic-range-int8", "dynamic",
        "dynamic-range int8 weights, activations quantized at run time (hybrid kernels)",
        {"optimize": True}, search=INT8_AND_AUTO,
    ),
    RecipeSpec(
        "dynamic-range-int8-recurrent", "dynamic",
        "dynamic-range int8 by the converter's first quantizer, which also stores the fused "
        "recurrent ops' weights in int8 (hybrid kernels; the newer one leaves them float)",
        {"optimize": True, "legacy_dynamic_range": True}, search=INT8_AND_AUTO, needs="recurrent",
    ),
    RecipeSpec(
        "keras3-int8", "int8",
        keras3.QUANTIZER.format(mode="int8") + ", converted to TFLite builtin ops",
        {"source": "keras3", "keras3_mode": "int8"}, search=INT8_AND_AUTO, needs="keras3",
    ),
    RecipeSpec(
        "float16", "float16", "float16 weights, float32 compute",
        {"optimize": True, "float16": True}, search=("auto",),
    ),
    RecipeSpec(
        "keras3-int4", "int4",
        keras3.QUANTIZER.format(mode="int4") + ", converted to TFLite builtin ops",
        {"source": "keras3", "keras3_mode": "int4"}, search=("auto",), needs="keras3",
        candidate_only=True,  # the converter stores its int4 weights unpacked: larger than fp32
    ),
    RecipeSpec(
        "qat-int8", "qat",
        "quantization-aware trained (tfmot), int8 weights and activations, float I/O",
        {"optimize": True, "source": "qat"}, search=("qat",),
    ),
    RecipeSpec(
        "qat-weights-dynamic-range-recurrent", "qat",
        "the float graph with the quantization-aware-trained weights, converted by the "
        "converter's first dynamic-range quantizer, which stores the fused recurrent ops' "
        "weights in int8 (the QAT graph's fake-quantized LSTM stays float in every converter)",
        {"optimize": True, "source": "qat-weights", "legacy_dynamic_range": True},
        search=("qat",), needs="recurrent",
    ),
)  # fmt: skip

# TFLite TensorType enum -> numpy dtype, for the types weights are stored in.
_TFLITE_TYPES = {0: np.float32, 1: np.float16, 3: np.uint8, 9: np.int8, 2: np.int32, 7: np.int16}
# Outputs are computed one sample at a time, as deployed at batch 1: dynamic quantization
# scales activations per batch, so a batch's other samples would change a sample's output.
_PREDICT_BATCH = 1


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


class LiteRTBackend(Backend):
    runtime = "litert"
    format = "tflite"
    suffix = ".tflite"
    recipes = RECIPES
    loader_name = "LiteRT interpreter"
    no_recipe = {
        "int4": "TFLite has no general int4 weight path: the TFLite converter stores weights in "
        "8 or 16 bits (int8, float16), so no int4 file is made rather than one that only "
        "pretends (onnxruntime's MatMulNBits is the int4 artifact; Keras 3's own int4, which the "
        "converter stores unpacked, larger than fp32, is only a measured candidate under auto)",
    }

    def build(self, spec: RecipeSpec, src: Sources, path: Path) -> dict[str, Any]:
        source = spec.knobs.get("source")
        if source in ("qat", "qat-weights") and src.qat_model is None:
            raise ValueError(f"recipe {spec.id} needs a quantization-aware-trained model")
        if source == "keras3":  # Keras 3's own quantizer, then a plain conversion
            batch = fixed_batch(src.model) or (1 if has_recurrent_layer(src.model) else None)
            with keras3.quantized(src.model, spec.knobs["keras3_mode"], batch) as model:
                path.write_bytes(convert(model, {}))
            return {"fixed_batch": batch} if batch else {}
        if source == "qat":
            model = src.qat_model
        elif source == "qat-weights":
            model = trained_weights_into(src.model, src.qat_model)
        else:
            model = src.model
        if spec.knobs.get("int8_ops") and model is src.model:
            if "calibrated" not in src.memo:
                src.memo["calibrated"] = calibrate(model, src.x_calib)
            path.write_bytes(quantize_calibrated(src.memo["calibrated"], spec.knobs))
        else:
            path.write_bytes(convert(model, spec.knobs, src.x_calib))
        batch = fixed_batch(model) or (1 if has_recurrent_layer(model) else None)
        return {"fixed_batch": batch} if batch else {}

    def shared_step(self, spec: RecipeSpec, src: Sources) -> str | None:
        # full-integer recipes of the float model share one calibration
        needs = spec.knobs.get("int8_ops") and spec.knobs.get("source") not in ("qat",)
        return "int8 calibration" if needs else None

    def layer_errors(
        self, path: Path, fp32_path: Path, x: Inputs, **options: bool
    ) -> list[dict[str, Any]]:
        # Intermediate tensors exist only under the reference kernels (XNNPACK fuses them away):
        # the comparison holds only if those kernels compute what the deployed ones do.
        deployed = LiteRTRunner(path, **options).predict(x)
        inspected = LiteRTRunner(path, inspect=True, **options)
        reference = inspected.predict(x)
        worst = min(sqnr_db(deployed[k], reference[k]) for k in deployed)
        if worst < KERNELS_AGREE_DB:
            raise ValueError(
                "LiteRT's reference kernels, which per-layer inspection needs, compute this "
                f"file's outputs differently from the deployed XNNPACK kernels ({worst:.1f} dB "
                "apart)"
            )
        ref = LiteRTRunner(fp32_path, inspect=True, **options).intermediates(x)
        return compare(ref, inspected.intermediates(x))

    def keep_float(self, spec: RecipeSpec, layers: list[dict[str, Any]]) -> RecipeSpec | None:
        if not spec.knobs.get("int8_ops") or spec.knobs.get("source") == "qat":
            return None  # only the calibrated quantizer takes a denylist
        names = [r["layer"] for r in layers]
        knobs = {**spec.knobs, "denylisted_nodes": [*spec.knobs.get("denylisted_nodes", []),
                                                    *names]}  # fmt: skip
        return replace(spec, knobs=knobs)

    def applicable(self, spec: RecipeSpec, src: Sources) -> bool:
        if spec.needs == "recurrent":
            return has_recurrent_layer(src.model)
        return super().applicable(spec, src)

    def runner_options(self, model: Any) -> dict[str, bool]:
        # The fused LSTM keeps its state in variables between invokes: reset before each call.
        return {"reset_state": has_recurrent_layer(model)}

    def left_float(self, path: Path, spec: RecipeSpec, src: Sources) -> list[str]:
        # Layer types tfmot could not annotate stay float in the QAT model (see quantize).
        return list(src.qat_left_float) if spec.knobs.get("source") == "qat" else []

    def open_runner(self, path: Path, threads: int = 1, **options: bool) -> LiteRTRunner:
        return LiteRTRunner(path, threads=threads, **options)

    def count_weights(self, path: Path, model: Any = None) -> dict[str, Any]:
        from tensorflow.lite.python import schema_py_generated as fb

        buf = Path(path).read_bytes()
        flat = fb.Model.GetRootAsModel(buf, 0)
        tensors = []
        for s in range(flat.SubgraphsLength()):
            graph = flat.Subgraphs(s)
            for i in range(graph.TensorsLength()):
                t = graph.Tensors(i)
                dtype = _TFLITE_TYPES.get(t.Type())
                shape = t.ShapeAsNumpy() if t.ShapeLength() else np.array([], dtype=np.int32)
                if dtype is None or len(shape) < 2:
                    continue
                b = flat.Buffers(t.Buffer())
                if b.Offset() > 1:  # large models keep buffers after the flatbuffer
                    raw = np.frombuffer(buf, np.uint8, count=b.Size(), offset=b.Offset())
                elif b.DataLength():
                    raw = b.DataAsNumpy()
                else:
                    continue  # not a constant: an activation
                values = np.frombuffer(raw.tobytes(), dtype=dtype).reshape(shape)
                tensors.append(tensor_stats(t.Name().decode(errors="replace"), values))
        return summarize(tensors)


def _fit_free_axes(interp: Any, inputs: dict[str, dict], feed: dict[str, np.ndarray]) -> None:
    """Resize inputs whose free (non-batch) axes, -1 in the signature (a sequence length:
    KerasHub's token_ids), differ from the data's, then reallocate; the converter sets such an
    axis to 1 until told."""
    resized = False
    for name, arr in feed.items():
        det = inputs[name]
        current = tuple(int(d) for d in interp.get_tensor(det["index"]).shape)
        signature = det.get("shape_signature")
        if current == arr.shape or signature is None or len(signature) != arr.ndim:
            continue
        pairs = enumerate(zip(signature, arr.shape, strict=True))
        if all(want == -1 or want == got or i == 0 for i, (want, got) in pairs):
            interp.resize_tensor_input(det["index"], list(arr.shape))
            resized = True
    if resized:
        interp.allocate_tensors()


class LiteRTRunner:
    runtime = "litert"

    def __init__(
        self, path: Path, threads: int = 1, reset_state: bool = False, inspect: bool = False
    ) -> None:
        self.path = Path(path)
        self.threads = threads
        # inspect: keep every intermediate tensor readable (no delegate, nothing freed), for
        # per-layer comparison; slower, never timed.
        self.inspect = inspect
        # A model with variables (e.g. a fused LSTM's state) keeps them between invokes; reset
        # them before every call so each sample is independent.
        self.reset_state = reset_state
        self._by_batch: dict[int, tuple[Any, dict, dict] | None] = {}
        interp, inputs, outputs = self._open(None)
        self.input_names = list(inputs)
        self.input_shapes = {
            n: tuple(int(d) for d in det["shape"][1:]) for n, det in inputs.items()
        }
        # A quantized float input is fed floats (_to_tensor quantizes them); token ids stay ints.
        self.input_dtypes = {
            n: np.dtype(np.float32 if det["quantization"][0] else det["dtype"])
            for n, det in inputs.items()
        }
        self.output_names = list(outputs)
        self._base_batch = int(next(iter(inputs.values()))["shape"][0])

    def _open(self, batch: int | None) -> tuple[Any, dict, dict]:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        if self.inspect:
            interp = Interpreter(
                model_path=str(self.path), num_threads=self.threads,
                experimental_preserve_all_tensors=True,
                experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
            )  # fmt: skip
        else:
            interp = Interpreter(model_path=str(self.path), num_threads=self.threads)
        if interp.get_signature_list():
            sig = interp.get_signature_runner()
            inputs, outputs = sig.get_input_details(), sig.get_output_details()
            # The runner holds a reference to the interpreter's internals, which makes
            # allocate_tensors() and invoke() refuse to run; only its name->index maps are kept.
            del sig
        else:  # no signature (seen for QAT LSTMs): tensor names; outputs in the model's order
            inputs = {d["name"]: d for d in interp.get_input_details()}
            outputs = {d["name"]: d for d in interp.get_output_details()}
        if batch is not None:
            for det in inputs.values():
                if int(det["shape"][0]) != batch:
                    interp.resize_tensor_input(det["index"], [batch, *det["shape"][1:]])
        interp.allocate_tensors()
        return interp, inputs, outputs

    def _session(self, batch: int) -> tuple[Any, dict, dict] | None:
        if batch not in self._by_batch:
            try:
                self._by_batch[batch] = self._open(batch)
            except (RuntimeError, ValueError):
                self._by_batch[batch] = None  # fixed-batch model: this size is not possible
        return self._by_batch[batch]

    def _invoke(self, sess: tuple[Any, dict, dict], xb: Inputs) -> dict[str, np.ndarray]:
        interp, inputs, outputs = sess
        if self.reset_state:
            interp.reset_all_variables()
        feed = as_feed(xb, self.input_names)
        _fit_free_axes(interp, inputs, feed)
        for name, arr in feed.items():
            interp.set_tensor(inputs[name]["index"], _to_tensor(arr, inputs[name]))
        interp.invoke()
        return {name: _from_tensor(interp.get_tensor(d["index"]), d) for name, d in outputs.items()}

    def predict(self, x: Inputs) -> dict[str, np.ndarray]:
        batch = _PREDICT_BATCH if self._session(_PREDICT_BATCH) is not None else self._base_batch
        sess = self._session(batch)
        if sess is None:
            raise RuntimeError(f"{self.path.name} cannot be opened at batch {batch}")
        parts: dict[str, list[np.ndarray]] = {n: [] for n in self.output_names}
        for xb in batched(x, batch):
            n = count(xb)
            out = self._invoke(sess, take_batch(xb, batch) if n < batch else xb)
            for name, arr in out.items():
                parts[name].append(arr[:n].copy())
        return {name: np.concatenate(chunks) for name, chunks in parts.items()}

    def intermediates(self, x: Inputs) -> dict[str, tuple[str, list[np.ndarray]]]:
        """Every op's output tensor, per sample of `x` (one invoke each, batch 1 where the file
        allows it): tensor name -> (op type, arrays), quantized tensors dequantized."""
        batch = _PREDICT_BATCH if self._session(_PREDICT_BATCH) is not None else self._base_batch
        sess = self._session(batch)
        interp = sess[0]
        details = {d["index"]: d for d in interp.get_tensor_details()}
        produced = [(op["op_name"], i) for op in compat.litert_ops(interp)
                    for i in op["outputs"] if op["op_name"] != "DELEGATE"]  # fmt: skip
        out: dict[str, tuple[str, list[np.ndarray]]] = {}
        for xb in batched(x, batch):
            self._invoke(sess, take_batch(xb, batch) if count(xb) < batch else xb)
            for op, index in produced:
                det = details[index]
                if np.issubdtype(det["dtype"], np.integer) and not det["quantization"][0]:
                    continue  # an integer tensor (indices, shapes), not a quantized activation
                try:
                    value = interp.get_tensor(index)
                except ValueError:
                    continue
                out.setdefault(det["name"], (op, []))[1].append(_from_tensor(value, det).copy())
        return out

    def timed_call(self, x: Inputs, batch: int) -> Callable[[], object] | None:
        sess = self._session(batch)
        if sess is None:
            return None
        xb = take_batch(x, batch)
        return lambda: self._invoke(sess, xb)


def _to_tensor(x: np.ndarray, det: dict) -> np.ndarray:
    dtype = det["dtype"]
    scale, zero = det["quantization"]
    if np.issubdtype(dtype, np.integer) and scale:  # a quantized input: float in, int8 fed
        info = np.iinfo(dtype)
        q = np.round(x / scale + zero)
        return np.clip(q, info.min, info.max).astype(dtype)
    return np.ascontiguousarray(x, dtype=dtype)


def _from_tensor(t: np.ndarray, det: dict) -> np.ndarray:
    scale, zero = det["quantization"]
    if np.issubdtype(t.dtype, np.integer) and scale:
        return ((t.astype(np.float32) - zero) * scale).astype(np.float32)
    return t.astype(np.float32, copy=False)
