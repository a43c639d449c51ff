"""quantize: post-training quantized twins of the fp32 exports, one per runtime.

TFLite quantizes during conversion (from the Keras model); onnxruntime quantizes the fp32 ONNX
graph. Calibration uses samples of the training split only.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np

from compress.arrays import Inputs, as_feed, count
from compress.fileio import write_atomic
from compress.stages.base import Artifact, RunState, Skipped, Stage, StageParams, one_line
from compress.stages.export_tflite import convert_tflite, tflite_artifact

ONNX_RECIPES = {
    "int8": "onnxruntime static QDQ, per-channel int8 weights, uint8 activations, "
    "MinMax calibration on the training split, quant_pre_process first",
    "dynamic": "onnxruntime dynamic int8 weights, activations quantized at run time",
    "float16": "float16 weights cast to float32 at load, float32 compute",
}


class QuantizeParams(StageParams):
    mode: Literal["int8", "dynamic", "float16", "none"] = "int8"


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


def quantize_onnx(fp32_path: Path, out_path: Path, mode: str, x_calib: Inputs) -> None:
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
            quantize_dynamic(str(pre), str(out_path), weight_type=QuantType.QInt8)
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
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
    onnx.checker.check_model(str(out_path))


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
        name = f"model_{mode}.tflite"
        try:
            made.append(tflite_artifact(state, mode, convert_tflite(model, mode, data.x_calib)))
        except Exception as exc:  # the converter cannot do this mode for this model
            skipped.append(Skipped(name, "litert", f"TFLite converter failed: {one_line(exc)}"))
        fp32_onnx = state.artifact("onnxruntime", "fp32")
        if fp32_onnx is not None:
            name = f"model_{mode}.onnx"
            try:
                path = write_atomic(
                    state.workdir / name,
                    lambda tmp: quantize_onnx(fp32_onnx.path, tmp, mode, data.x_calib),
                )
            except Exception as exc:
                reason = f"onnxruntime quantization failed: {one_line(exc)}"
                skipped.append(Skipped(name, "onnxruntime", reason))
            else:
                still_float = float_weight_ops(path) if mode in ("int8", "dynamic") else []
                made.append(
                    Artifact(
                        name=name,
                        path=path,
                        format="onnx",
                        runtime="onnxruntime",
                        precision=mode,
                        recipe=ONNX_RECIPES[mode],
                        left_float=tuple(still_float),
                    )
                )
        return state.add(tuple(made), tuple(skipped))
