"""quantize: post-training quantized twins of the fp32 exports, one per runtime.

TFLite quantizes during conversion (from the Keras model); onnxruntime quantizes the fp32 ONNX
graph. Calibration uses samples of the training split only.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from compress import _tf
from compress.arrays import Inputs, as_feed, count
from compress.fileio import write_atomic
from compress.loading import copy_model
from compress.recipes import search
from compress.stages.base import Artifact, RunState, Skipped, Stage, StageParams, one_line
from compress.stages.export_onnx import convert_onnx, save_onnx
from compress.stages.export_tflite import convert_tflite, tflite_artifact
from compress.stages.tune import TuneParams, fine_tune

ONNX_RECIPES = {
    "int8": "onnxruntime static QDQ, per-channel int8 weights, uint8 activations, "
    "MinMax calibration on the training split, quant_pre_process first",
    "dynamic": "onnxruntime dynamic int8 weights, activations quantized at run time",
    "float16": "float16 weights cast to float32 at load, float32 compute",
    "qat": "tf2onnx of the quantization-aware-trained model (fake-quant as QDQ)",
}


# int8 recipes measured against each other when quantize.select is on: name -> (mode, op types)
ONNX_INT8_CANDIDATES: dict[str, tuple[str, list[str] | None]] = {
    "static-qdq-all-ops": ("int8", None),
    "static-qdq-matmul-only": ("int8", ["MatMul", "Gemm"]),
    "dynamic-matmul-only": ("dynamic", ["MatMul", "Gemm"]),
}
TFLITE_INT8_CANDIDATES: dict[str, bool] = {  # name -> per-channel weights
    "full-int8-per-channel": True,
    "full-int8-per-tensor": False,
}


class QuantizeParams(StageParams):
    mode: Literal["int8", "dynamic", "float16", "qat", "none"] = "int8"
    select: bool = Field(
        True, description="int8: measure candidate recipes per runtime, keep the fastest that "
        "agrees with fp32 on >= min_agreement % of training-split samples"
    )  # fmt: skip
    min_agreement: float = Field(99.0, ge=0.0, le=100.0)
    threads: int = Field(1, ge=1, description="threads when timing candidates")
    qat_epochs: int = Field(
        1, ge=1, le=1000, description="QAT fine-tuning epochs (untrained QAT exports garbage)"
    )
    qat_learning_rate: float = Field(1e-4, gt=0.0, le=1.0)
    seed: int = Field(0, ge=0)


def quantization_aware_model(model: Any, state: RunState, params: QuantizeParams) -> tuple:
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
    tune = TuneParams(
        epochs=params.qat_epochs, learning_rate=params.qat_learning_rate, seed=params.seed
    )
    fine_tune(qmodel, state.require_data("quantize"), tune, model.output_names)
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


def _calibration_reader(input_names: list[str], x: Inputs) -> Any:
    """An onnxruntime CalibrationDataReader feeding one calibration sample per call."""
    from onnxruntime.quantization import CalibrationDataReader

    feed = as_feed(x, input_names)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter(
                [{n: a[i : i + 1] for n, a in feed.items()} for i in range(count(x))]
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    return Reader()


def quantize_onnx(
    fp32_path: Path,
    out_path: Path,
    mode: str,
    x_calib: Inputs,
    op_types: list[str] | None = None,
    per_channel: bool = True,
) -> None:
    """onnxruntime quantization of an fp32 ONNX file. `op_types` limits which ops are
    quantized (None: all the quantizer supports)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_dynamic,
        quantize_static,
    )

    if mode == "float16":
        onnx.save_model(float16_weights(onnx.load(str(fp32_path))), str(out_path))
        onnx.checker.check_model(str(out_path))
        return
    with tempfile.TemporaryDirectory(prefix="compress-ort-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(fp32_path), str(pre))
        except Exception:  # symbolic shape inference fails on some graphs (e.g. Concat of inputs)
            quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        if mode == "dynamic":
            quantize_dynamic(
                str(pre), str(out_path), weight_type=QuantType.QInt8, op_types_to_quantize=op_types
            )
        else:
            graph = onnx.load(str(pre), load_external_data=False).graph
            initializers = {i.name for i in graph.initializer}
            names = [i.name for i in graph.input if i.name not in initializers]
            reader = _calibration_reader(names, x_calib)
            quantize_static(
                str(pre),
                str(out_path),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                op_types_to_quantize=op_types,
            )
    onnx.checker.check_model(str(out_path))


def _grid(w: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(int8 values, scale) if w lies on a symmetric int8 grid (|q| <= 127), else None.

    The grid step divides every gap between distinct values: the smallest gap, or a fraction
    of it when the values are sparse on the grid (few values per channel)."""
    distinct = np.unique(w)
    if len(distinct) < 2:
        return None
    smallest = float(np.min(np.diff(distinct)))
    for k in range(1, 17):
        step = smallest / k
        q = np.round(w / step)
        if np.abs(q).max() > 127:
            return None
        if np.allclose(q * step, w, rtol=0, atol=step * 1e-3):
            return q.astype(np.int8), np.array(step, dtype=np.float32)
    return None


def weights_to_int8(proto: Any) -> Any:
    """Store QAT weights as int8 with a DequantizeLinear, as static quantization does.

    tf2onnx folds tfmot's weight fake-quant into float32 initializers whose values already lie on
    an int8 grid (per tensor, or per output channel); those are rewritten exactly as int8 plus
    scale. Weights not on a grid stay float32 (and are reported as such).
    """
    from onnx import helper, numpy_helper

    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    replaced: dict[str, Any] = {}
    dq_nodes = []
    for name, init in inits.items():
        users = readers.get(name, [])
        if (
            len(init.dims) < 2
            or not users
            or any(u.op_type not in ("Conv", "MatMul", "Gemm") for u in users)
        ):
            continue
        w = numpy_helper.to_array(init).astype(np.float64)
        axis = 1 if users[0].op_type == "MatMul" else 0
        grid = _grid(w)
        if grid is None:  # per output channel
            per = [_grid(np.take(w, c, axis=axis)) for c in range(w.shape[axis])]
            if any(g is None for g in per):
                continue
            q = np.stack([g[0] for g in per], axis=axis)
            scale = np.array([g[1] for g in per], dtype=np.float32)
        else:
            q, scale = grid
        replaced[name] = numpy_helper.from_array(q, f"{name}__int8")
        zero = np.zeros(scale.shape, np.int8)
        replaced[name + "__extra"] = [
            numpy_helper.from_array(scale, f"{name}__scale"),
            numpy_helper.from_array(zero, f"{name}__zero"),
        ]
        attrs = {"axis": axis} if scale.ndim == 1 else {}
        dq_nodes.append(helper.make_node(
            "DequantizeLinear", [f"{name}__int8", f"{name}__scale", f"{name}__zero"], [name],
            name=f"{name}__dequantize", **attrs,
        ))  # fmt: skip
    kept = [i for i in graph.initializer if i.name not in replaced]
    new = []
    for value in replaced.values():
        new += value if isinstance(value, list) else [value]
    del graph.initializer[:]
    graph.initializer.extend(kept + new)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(dq_nodes + nodes)
    return proto


def float_weight_ops(path: Path) -> list[str]:
    """Op types that still read float32 weight matrices (initializers of rank >= 2) directly:
    the parts of a quantized graph that the quantizer left in float (e.g. LSTM under static
    quantization)."""
    import onnx
    from onnx import TensorProto

    graph = onnx.load(str(path)).graph
    float_weights = {
        i.name for i in graph.initializer if i.data_type == TensorProto.FLOAT and len(i.dims) >= 2
    }
    ops = {n.op_type for n in graph.node if any(x in float_weights for x in n.input)}
    return sorted(ops - {"DequantizeLinear", "Cast"})


def float16_weights(proto: Any) -> Any:
    """Store every float32 weight as float16 and Cast it back to float32 in the graph.

    Halves the file; onnxruntime folds the casts at load, so compute stays float32 (as TFLite's
    float16 mode does on CPU).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = proto.graph
    casts, kept = [], []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT:
            kept.append(init)
            continue
        half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16))
        half.name = f"{init.name}__fp16"
        kept.append(half)
        casts.append(
            helper.make_node(
                "Cast", [half.name], [init.name], to=TensorProto.FLOAT, name=f"{init.name}__cast"
            )
        )
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    del out.graph.initializer[:]
    out.graph.initializer.extend(kept)
    nodes = list(out.graph.node)
    del out.graph.node[:]
    out.graph.node.extend(casts + nodes)
    return out


class Quantize(Stage):
    name = "quantize"
    Params = QuantizeParams

    def run(self, state: RunState) -> RunState:
        mode = self.params.mode
        if mode == "none":
            return state
        model = state.require_model(self.name)
        data = state.require_data(self.name)
        made: list[Artifact] = []
        skipped: list[Skipped] = []
        qat_float: list[str] = []
        source = model
        if mode == "qat":
            source, qat_float = quantization_aware_model(model, state, self.params)
        selecting = mode == "int8" and self.params.select
        chosen: dict[str, Any] = {}
        name = f"model_{mode}.tflite"
        fp32_tflite = state.artifact("litert", "fp32")
        try:
            if selecting and fp32_tflite is not None:
                blob, chosen["litert"] = self._select_tflite(model, fp32_tflite, data.x_calib)
            else:
                blob = convert_tflite(source, mode, data.x_calib)
            art = tflite_artifact(state, mode, blob)
            if "litert" in chosen:
                art = dataclasses.replace(art, recipe=f"{art.recipe}; {chosen['litert']['note']}")
            made.append(dataclasses.replace(art, left_float=tuple(qat_float)))
        except Exception as exc:  # the converter cannot do this mode for this model
            skipped.append(Skipped(name, "litert", f"TFLite converter failed: {one_line(exc)}"))
        fp32_onnx = state.artifact("onnxruntime", "fp32")
        if fp32_onnx is not None:
            name = f"model_{mode}.onnx"
            opset = state.info.get("export_onnx", {}).get("opset", 17)

            def make_onnx(tmp: Path) -> None:
                if mode == "qat":
                    save_onnx(weights_to_int8(convert_onnx(source, opset)), tmp)
                elif selecting:
                    blob, chosen["onnxruntime"] = self._select_onnx(fp32_onnx, data.x_calib)
                    tmp.write_bytes(blob)
                else:
                    quantize_onnx(fp32_onnx.path, tmp, mode, data.x_calib)

            try:
                path = write_atomic(state.workdir / name, make_onnx)
            except Exception as exc:
                reason = f"onnxruntime quantization failed: {one_line(exc)}"
                skipped.append(Skipped(name, "onnxruntime", reason))
            else:
                still_float = float_weight_ops(path) if mode in ("int8", "dynamic", "qat") else []
                made.append(
                    Artifact(
                        name=name,
                        path=path,
                        format="onnx",
                        runtime="onnxruntime",
                        precision=mode,
                        recipe=ONNX_RECIPES[mode]
                        if "onnxruntime" not in chosen
                        else chosen["onnxruntime"]["note"],
                        left_float=tuple(still_float),
                    ).measured()
                )
        if chosen:
            info = {rt: c["candidates"] for rt, c in chosen.items()}
            state = state.replace(info={**state.info, "quantize": {"candidates": info}})
        return state.add(tuple(made), tuple(skipped))

    def _select(self, runtime, fp32, candidates, x) -> tuple[bytes, dict[str, Any]]:
        winner, path, results, tmp = search(
            runtime, fp32.path, candidates, x, threads=self.params.threads,
            min_agreement=self.params.min_agreement, options=fp32.options,
        )  # fmt: skip
        try:
            blob = path.read_bytes()
        finally:
            tmp.cleanup()
        others = ", ".join(
            f"{e['recipe']} {e['speedup_b1']:.2f}x" if "speedup_b1" in e
            else f"{e['recipe']} failed" for e in results if not e["chosen"]
        )  # fmt: skip
        best = next(e for e in results if e["chosen"])
        note = (f"recipe {winner} chosen: {best['speedup_b1']:.2f}x vs fp32 at batch 1, "
                f"{best['agreement']:.1f}% agreement on training samples "
                f"(others: {others})")  # fmt: skip
        return blob, {"note": note, "candidates": results}

    def _select_tflite(self, model, fp32, x) -> tuple[bytes, dict[str, Any]]:
        def make(per_channel: bool):
            return lambda p: p.write_bytes(convert_tflite(model, "int8", x, per_channel))

        candidates = {n: make(pc) for n, pc in TFLITE_INT8_CANDIDATES.items()}
        return self._select("litert", fp32, candidates, x)

    def _select_onnx(self, fp32, x) -> tuple[bytes, dict[str, Any]]:
        def make(mode: str, ops: list[str] | None):
            return lambda p: quantize_onnx(fp32.path, p, mode, x, op_types=ops)

        candidates = {n: make(m, ops) for n, (m, ops) in ONNX_INT8_CANDIDATES.items()}
        return self._select("onnxruntime", fp32, candidates, x)
