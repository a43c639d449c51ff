"""LiteRT (`.tflite`): the TFLite converter makes every recipe from the Keras model (TFLite
quantizes during conversion); ai-edge-litert's interpreter runs the files.

Outputs are read through the model's signature, because a multi-output model's output tensor
order is not the Keras order. Quantized (int8/uint8) inputs and outputs are converted with the
tensor's own scale and zero point, so callers always pass and get float32.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from compress.backends.base import Backend, RecipeSpec, Sources
from compress.backends.tflite import (
    AEQ,
    aeq_quantize,
    calibrate,
    convert,
    fixed_batch,
    has_recurrent_layer,
    quantize_calibrated,
    validator_errors,
)
from compress.core import compat
from compress.core.arrays import Inputs, as_feed, batched, count, take_batch
from compress.keras import _tf, keras3
from compress.keras.model_io import trained_weights_into
from compress.measure.sensitivity import compare, sqnr_db
from compress.measure.weights import summarize, tensor_stats

CALIBRATED = "calibrated on the training split"

# TFLite's fused recurrent ops. Their integer kernels are far slower than float (measured 0.11x
# for the LSTM at batch 1; XNNPACK takes only the float ones), so a mixed recipe keeps them float.
# Full-integer recipes keep Softmax float: an int8 Softmax output (steps of 1/256) rounds every
# probability under 1/512 to zero, so a near-uniform output over many classes (a 1000-class model
# unsure of a sample) becomes all zeros and its argmax class 0 (measured: 0% agreement -> 100%).
FLOAT_OPS = ("SOFTMAX",)
RECURRENT_OPS = (
    "UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM", "UNIDIRECTIONAL_SEQUENCE_RNN",
    "BIDIRECTIONAL_SEQUENCE_RNN",
)  # fmt: skip
INT8_AND_AUTO = ("int8", "auto")
KERNELS_AGREE_DB = 40.0  # reference vs XNNPACK outputs of one file: closer is the same math

# Knobs the converter reads: optimize (Optimize.DEFAULT), int8_ops (TFLITE_BUILTINS_INT8 with a
# representative data set), per_channel (per-channel int8 weights), float16 (float16 weights),
# source ("qat": convert the quantization-aware-trained model; "qat-weights": the float graph
# with its trained weights), denylisted_ops / denylisted_nodes
# (op types / tensor names the int8 quantizer leaves float), legacy_dynamic_range (the converter's
# first dynamic-range quantizer); aeq (ai-edge-quantizer on the fp32 .tflite; "dynamic" or
# "weight_only") with bits (4 or 8) and granularity (CHANNELWISE, BLOCKWISE_32, ...).
RECIPES = (
    RecipeSpec("fp32", "fp32", "TFLite converter, float32"),
    RecipeSpec(
        "full-int8-per-channel", "int8",
        f"full-integer int8 (TFLITE_BUILTINS_INT8), per-channel weights, float I/O, Softmax "
        f"float, {CALIBRATED}",
        {"optimize": True, "int8_ops": True, "per_channel": True,
         "denylisted_ops": list(FLOAT_OPS)}, search=INT8_AND_AUTO,
    ),
    RecipeSpec(
        "full-int8-per-tensor", "int8",
        f"full-integer int8 (TFLITE_BUILTINS_INT8), per-tensor weights, float I/O, Softmax "
        f"float, {CALIBRATED}",
        {"optimize": True, "int8_ops": True, "per_channel": False,
         "denylisted_ops": list(FLOAT_OPS)}, search=INT8_AND_AUTO,
    ),
    RecipeSpec(
        "int8-float-recurrent", "int8",
        f"int8 with the recurrent ops kept float (mixed precision), per-channel weights, "
        f"{CALIBRATED}",
        {"optimize": True, "int8_ops": True, "per_channel": True,
         "denylisted_ops": [*RECURRENT_OPS, *FLOAT_OPS]},
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
        "aeq-dynamic-int8", "dynamic",
        f"{AEQ} dynamic_wi8_afp32 on the fp32 .tflite; int8 channel-wise weights, activations "
        "quantized at run time (integer kernels)",
        {"aeq": "dynamic", "bits": 8, "granularity": "CHANNELWISE"}, search=INT8_AND_AUTO,
    ),
    RecipeSpec(
        "aeq-static-a8w8", "int8",
        f"{AEQ} static_wi8_ai8 on the fp32 .tflite; int8 channel-wise weights and int8 "
        "activations with ranges calibrated on training-split samples (integer kernels), "
        "Softmax float",
        {"aeq": "static", "bits": 8, "act_bits": 8, "granularity": "CHANNELWISE",
         "float_ops": list(FLOAT_OPS)},
        search=INT8_AND_AUTO,
    ),
    RecipeSpec(
        "aeq-static-a16w8", "int8",
        f"{AEQ} static_wi8_ai16 on the fp32 .tflite; int8 channel-wise weights and 16-bit "
        "activations calibrated on training-split samples (more precise than a8w8; kernels for "
        "16-bit activations are fewer and slower)",
        {"aeq": "static", "bits": 8, "act_bits": 16, "granularity": "CHANNELWISE",
         "float_ops": list(FLOAT_OPS)},
        search=("auto",),
    ),
    RecipeSpec(
        "aeq-dynamic-int8-xnnpack", "dynamic",
        f"{AEQ} dynamic_wi8_afp32 on the fp32 .tflite, leaving float the op types that would "
        "fall off XNNPACK onto the built-in kernels once quantized (mixed precision from the "
        "runtime's own kernel split)",
        {"aeq": "dynamic", "bits": 8, "granularity": "CHANNELWISE", "float_ops": "off-xnnpack"},
        search=INT8_AND_AUTO, needs="depthwise",
    ),
    RecipeSpec(
        "aeq-dynamic-int4-block32", "int4",
        f"{AEQ} dynamic_wi4 on the fp32 .tflite; int4 weights (two per byte), a float scale per "
        "block of 32 input values, activations quantized to int8 at run time (integer kernels)",
        {"aeq": "dynamic", "bits": 4, "granularity": "BLOCKWISE_32"}, search=("int4", "auto"),
    ),
    RecipeSpec(
        "aeq-dynamic-int4-channel", "int4",
        f"{AEQ} dynamic_wi4_afp32 on the fp32 .tflite; int4 channel-wise weights (two per byte), "
        "activations quantized to int8 at run time (integer kernels)",
        {"aeq": "dynamic", "bits": 4, "granularity": "CHANNELWISE"}, search=("int4", "auto"),
    ),
    RecipeSpec(
        "aeq-weight-only-int4", "int4",
        f"{AEQ} weight_only_wi4_afp32 on the fp32 .tflite; int4 channel-wise weights dequantized "
        "to float before each op (float compute; smallest, usually slowest)",
        {"aeq": "weight_only", "bits": 4, "granularity": "CHANNELWISE"}, search=("int4",),
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
_TFLITE_INT4 = 17  # stored two per byte, the first value in the low nibble
# Outputs are computed one sample at a time, as deployed at batch 1: dynamic quantization
# scales activations per batch, so a batch's other samples would change a sample's output.
_PREDICT_BATCH = 1


def unpack_int4(packed: np.ndarray, shape: Any) -> np.ndarray:
    """A TFLite INT4 buffer's values (two per byte, low nibble first, two's complement) as int8
    of `shape`."""
    values = np.empty(packed.size * 2, dtype=np.int8)
    values[0::2] = (packed & 0x0F).astype(np.int8)
    values[1::2] = (packed >> 4).astype(np.int8)
    values[values > 7] -= 16
    return values[: int(np.prod(shape))].reshape(shape)


class LiteRTBackend(Backend):
    runtime = "litert"
    format = "tflite"
    suffix = ".tflite"
    recipes = RECIPES
    loader_name = "LiteRT interpreter"

    def build(self, spec: RecipeSpec, src: Sources, path: Path) -> dict[str, Any]:
        source = spec.knobs.get("source")
        if source in ("qat", "qat-weights") and src.qat_model is None:
            raise ValueError(f"recipe {spec.id} needs a quantization-aware-trained model")
        if source == "keras3":  # Keras 3's own quantizer, then a plain conversion
            batch = fixed_batch(src.model) or (1 if has_recurrent_layer(src.model) else None)
            with keras3.quantized(src.model, spec.knobs["keras3_mode"], batch) as model:
                path.write_bytes(convert(model, {}))
            return {"fixed_batch": batch} if batch else {}
        if spec.knobs.get("aeq"):  # ai-edge-quantizer rewrites the converter's fp32 file
            if "fp32_tflite" not in src.memo:
                src.memo["fp32_tflite"] = convert(src.model, {})
            knobs, decided = spec.knobs, {}
            if knobs.get("float_ops") == "off-xnnpack":
                knobs = {**knobs, "float_ops": off_xnnpack(src, knobs, path)}
                decided["float_ops"] = knobs["float_ops"]
            path.write_bytes(aeq_quantize(src.memo["fp32_tflite"], knobs, src.x_calib))
            batch = fixed_batch(src.model) or (1 if has_recurrent_layer(src.model) else None)
            return {**decided, "fixed_batch": batch} if batch else decided
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
        # Where they do not (e.g. int4 weights with dynamic int8 activations), ai-edge-quantizer's
        # validator compares the tensors under XNNPACK; its numbers join the rows either way.
        deployed = LiteRTRunner(path, **options).predict(x)
        inspected = LiteRTRunner(path, inspect=True, **options)
        reference = inspected.predict(x)
        worst = min(sqnr_db(deployed[k], reference[k]) for k in deployed)
        try:
            validated = validator_errors(fp32_path.read_bytes(), path.read_bytes(), x)
        except Exception:  # a file its validator cannot run (no signature, fixed batch, ...)
            validated = []
        if worst < KERNELS_AGREE_DB:
            if validated:
                return [{**r, "source": "ai-edge-quantizer validator"} for r in validated]
            raise ValueError(
                "LiteRT's reference kernels, which per-layer inspection needs, compute this "
                f"file's outputs differently from the deployed XNNPACK kernels ({worst:.1f} dB "
                "apart)"
            )
        ref = LiteRTRunner(fp32_path, inspect=True, **options).intermediates(x)
        rows = compare(ref, inspected.intermediates(x))
        by_name = {r["layer"]: r["sqnr_db"] for r in validated}
        return [{**r, "validator_sqnr_db": by_name[r["layer"]]} if r["layer"] in by_name else r
                for r in rows]  # fmt: skip

    def keep_float(self, spec: RecipeSpec, layers: list[dict[str, Any]]) -> RecipeSpec | None:
        if spec.knobs.get("aeq") and spec.knobs.get("bits") == 4:
            # mixed 4/8: the sensitive layers get int8 weights instead of float
            names = [*spec.knobs.get("int8_scopes", []), *(r["layer"] for r in layers)]
            return replace(spec, knobs={**spec.knobs, "int8_scopes": names})
        if not spec.knobs.get("int8_ops") or spec.knobs.get("source") == "qat":
            return None  # only the calibrated quantizer takes a denylist
        names = [r["layer"] for r in layers]
        knobs = {**spec.knobs, "denylisted_nodes": [*spec.knobs.get("denylisted_nodes", []),
                                                    *names]}  # fmt: skip
        return replace(spec, knobs=knobs)

    def applicable(self, spec: RecipeSpec, src: Sources) -> bool:
        if spec.needs == "recurrent":
            return has_recurrent_layer(src.model)
        if spec.needs == "depthwise":  # the op type dynamic int8 takes off XNNPACK
            layers = _tf.keras().layers
            kinds = (layers.DepthwiseConv2D, layers.SeparableConv2D)
            return any(isinstance(m, kinds) for m in src.model.submodules)
        return super().applicable(spec, src)

    def runner_options(self, model: Any) -> dict[str, bool]:
        # The fused LSTM keeps its state in variables between invokes: reset before each call.
        return {"reset_state": has_recurrent_layer(model)}

    def left_float(self, path: Path, spec: RecipeSpec, src: Sources) -> list[str]:
        # Layer types tfmot could not annotate stay float in the QAT model (see quantize).
        return list(src.qat_left_float) if spec.knobs.get("source") == "qat" else []

    def op_profile(
        self, path: Path, x: Inputs, threads: int = 1, **options: bool
    ) -> dict[str, Any] | None:
        return LiteRTRunner(path, threads=threads, **options).kernels(x)

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
                int4 = t.Type() == _TFLITE_INT4
                dtype = np.uint8 if int4 else _TFLITE_TYPES.get(t.Type())
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
                values = np.frombuffer(raw.tobytes(), dtype=dtype)
                values = unpack_int4(values, shape) if int4 else values.reshape(shape)
                stats = tensor_stats(t.Name().decode(errors="replace"), values)
                tensors.append({**stats, "dtype": "int4"} if int4 else stats)
        return summarize(tensors)


def off_xnnpack(src: Sources, knobs: dict[str, Any], scratch: Path) -> list[str]:
    """The op types XNNPACK runs in the fp32 file but not once they are quantized with `knobs`
    (EfficientNet's depthwise convs under dynamic int8 fall to the built-in kernels, 0.62x):
    a row that leaves them float keeps them on XNNPACK. Raises when none falls off (the row
    would be its parent row again)."""

    def xnnpack(path: Path) -> dict[str, int]:
        rows = LiteRTRunner(path).kernels(src.x_calib)["op_types"]
        return {r["op"]: r["kernels"].get("XNNPACK", 0) for r in rows}

    scratch.write_bytes(src.memo["fp32_tflite"])
    before = xnnpack(scratch)
    scratch.write_bytes(aeq_quantize(src.memo["fp32_tflite"], {**knobs, "float_ops": []}))
    after = xnnpack(scratch)
    fell = sorted(op for op, n in before.items() if n and after.get(op, 0) < n)
    if not fell:
        raise ValueError("every op type XNNPACK runs in fp32 stays on XNNPACK when quantized: "
                         "this row would be its all-ops twin")  # fmt: skip
    return fell


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

    def kernels(self, x: Inputs) -> dict[str, Any]:
        """Which op types XNNPACK ran and which the built-in kernels did, after one call on the
        first sample(s) of x: a node is XNNPACK's when its outputs exist only inside a delegated
        partition (never materialized) or are the partition's own outputs. The Python
        interpreter has no per-op timer, so no time is given."""
        session = self._session(self._base_batch)
        self._invoke(session, take_batch(x, self._base_batch))
        interp = session[0]
        ops = compat.litert_ops(interp)
        partitions = {int(t) for o in ops if o["op_name"] == "DELEGATE" for t in o["outputs"]}

        def delegated(op: dict[str, Any]) -> bool:
            for t in (int(i) for i in op["outputs"]):
                if t in partitions:
                    return True
                try:
                    interp.get_tensor(t)
                except ValueError:  # "Tensor data is null": lives inside the delegate only
                    return True
            return False

        types: dict[str, dict[str, Any]] = {}
        for op in ops:
            if op["op_name"] == "DELEGATE":
                continue
            row = types.setdefault(op["op_name"], {"op": op["op_name"], "nodes": 0, "kernels": {}})
            kernel = "XNNPACK" if delegated(op) else "built-in"
            row["nodes"] += 1
            row["kernels"][kernel] = row["kernels"].get(kernel, 0) + 1
        return {"tool": "LiteRT interpreter (no per-op timer in its Python API)",
                "op_types": sorted(types.values(), key=lambda r: -r["nodes"])}  # fmt: skip

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
