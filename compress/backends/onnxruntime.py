"""onnxruntime (`.onnx`): tf2onnx exports the float model; onnxruntime's quantizer makes the
quantized recipes from the fp32 ONNX graph; onnxruntime's CPU provider runs the files."""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from compress.backends import worker as isolate
from compress.backends.base import Backend, RecipeSpec, Sources
from compress.backends.onnx_convert import convert
from compress.backends.onnx_weights import (
    QUANTIZER,
    dynamic_int8_streamed,
    float16_weights,
    float_weight_ops,
    int4_weights,
    save,
    streams_dynamic,
    weighted_producers,
    weights_to_int8,
)
from compress.core.arrays import Inputs, as_feed, batched, count, take_batch
from compress.core.fileio import data_file, working_directory
from compress.keras import keras3
from compress.measure.sensitivity import compare
from compress.measure.weights import summarize, tensor_stats

DEFAULT_OPSET = 17
OPSETS = (13, 18)  # tf2onnx 1.17 converts at opsets 13-18 (19 and later fail)
MATMUL = ["MatMul", "Gemm"]
STATIC = "onnxruntime static QDQ, per-channel int8 weights (7-bit range), uint8 activations, " \
         "MinMax calibration on the training split, Softmax float, quant_pre_process " \
         "first"  # fmt: skip
# Weights on 7 bits (onnxruntime's reduce_range) in every int8 recipe. On x86 CPUs without VNNI
# (AVX2 and AVX-512 only: AMD Zen 1-3, older Xeons) onnxruntime's u8 x s8 kernels add pairs of
# products in int16 (VPMADDUBSW), which saturates for 8-bit weights and scrambles outputs; the
# file cannot know the CPU it will run on. Measured on an AMD EPYC (no VNNI), the multitask
# model's dynamic-matmul-only file: top-1 agreement with fp32 96.3% -> 99.4%, max |diff| 0.040
# -> 0.0039 (onnxruntime's quantization docs name the same cause and remedy).
REDUCE_RANGE = True
NBITS = ("onnxruntime MatMulNBits: MatMul weights and embedding tables (GatherBlockQuantized) in "
         "4 bits, symmetric, one float scale per block of 32 values")  # fmt: skip
INT8_AND_AUTO = ("int8", "auto")
STREAMED = ("; from an fp32 file with external data (past 2 GiB) whose weights to quantize are "
            "all MatMul's, compress writes the same nodes and values one weight at a time "
            "(onnxruntime's quantizer would load the whole model)")  # fmt: skip
FLOAT_OP_TYPES = ("Softmax",)  # left float by the static recipes (see quantize)

# Knobs the builder reads: method (export | static | dynamic | float16 | qat), op_types (the op
# types to quantize; None: every op the quantizer supports, LSTM included for dynamic),
# per_channel (static only), reduce_range (weights on 7 bits), keep_float (tensor names whose
# weighted producers stay float: the drift fallback's), nodes_to_exclude (node names kept float).
RECIPES = (
    RecipeSpec("fp32", "fp32", "tf2onnx, checked by onnx.checker", {"method": "export"}),
    RecipeSpec(
        "static-qdq-all-ops", "int8", STATIC,
        {"method": "static", "op_types": None, "per_channel": True, "reduce_range": REDUCE_RANGE},
        search=INT8_AND_AUTO,
    ),
    RecipeSpec(
        "static-qdq-matmul-only", "int8", f"{STATIC}; MatMul/Gemm only (other ops stay fp32)",
        {"method": "static", "op_types": MATMUL, "per_channel": True,
         "reduce_range": REDUCE_RANGE}, search=INT8_AND_AUTO,
    ),
    RecipeSpec(
        "static-qdq-profiled", "int8",
        f"{STATIC}; only the op types that onnxruntime's profiler timed faster in the all-ops "
        "int8 file than in fp32 (others stay fp32)",
        {"method": "static", "op_types": "profiled", "per_channel": True,
         "reduce_range": REDUCE_RANGE}, search=INT8_AND_AUTO,
    ),
    RecipeSpec(
        "dynamic-matmul-only", "int8",
        "onnxruntime dynamic int8 weights (7-bit range) on MatMul/Gemm, activations quantized at "
        f"run time{STREAMED}",
        {"method": "dynamic", "op_types": MATMUL, "reduce_range": REDUCE_RANGE},
        search=INT8_AND_AUTO,
    ),
    RecipeSpec(
        "dynamic-int8", "dynamic",
        "onnxruntime dynamic int8 weights (7-bit range) on every op it supports (Conv, MatMul, "
        f"LSTM as DynamicQuantizeLSTM, ...), activations quantized at run time{STREAMED}",
        {"method": "dynamic", "op_types": None, "reduce_range": REDUCE_RANGE},
        search=INT8_AND_AUTO,
    ),
    RecipeSpec(
        "float16", "float16", "float16 weights cast to float32 at load, float32 compute",
        {"method": "float16"}, search=("auto",),
    ),
    RecipeSpec(
        "int4-int8-compute", "int4",
        f"{NBITS}; activations quantized to int8 at run time (accuracy_level 4: integer compute; "
        "other ops stay fp32)",
        {"method": "int4", "block_size": 32, "symmetric": True, "accuracy_level": 4,
         "op_types": ["MatMul", "Gather"]}, search=("int4", "auto"),
    ),
    RecipeSpec(
        "int4-kquant-int8-compute", "int4",
        "onnxruntime MatMulNBits, k-quant: each block's scale and zero point searched for the "
        "least squared error (MatMul weights in 4 bits, one scale per block of 32; a weight "
        "with an odd number of blocks per column, which onnxruntime 1.32 cannot pack, rounds to "
        "nearest); activations quantized to int8 at run time (accuracy_level 4)",
        {"method": "int4", "algorithm": "k_quant", "block_size": 32, "symmetric": False,
         "accuracy_level": 4, "op_types": ["MatMul"]}, search=("int4", "auto"),
    ),
    RecipeSpec(
        "int4-gptq-int8-compute", "int4",
        "onnxruntime MatMulNBits, GPTQ calibrated on training-split samples: each weight "
        "column's rounding error corrected on the columns not yet quantized (MatMul weights in 4 "
        "bits, one scale and zero point per block of 32; a weight over 8192 rows, whose Hessian "
        "alone would take 512 MB or more, or with an odd number of blocks per column, which "
        "onnxruntime 1.32 cannot pack, rounds to nearest); activations quantized to int8 at "
        "run time (accuracy_level 4)",
        {"method": "int4", "algorithm": "gptq", "block_size": 32, "symmetric": False,
         "accuracy_level": 4, "op_types": ["MatMul"]}, search=("int4", "auto"), needs="torch",
    ),
    RecipeSpec(
        "weight-only-int4", "int4",
        f"{NBITS}; activations and compute stay float (other ops stay fp32)",
        {"method": "int4", "block_size": 32, "symmetric": True,
         "op_types": ["MatMul", "Gather"]}, search=("int4", "auto"),
    ),
    RecipeSpec(
        "keras3-int8", "int8", keras3.QUANTIZER.format(mode="int8") + " by tf2onnx",
        {"method": "keras3", "keras3_mode": "int8"}, search=INT8_AND_AUTO, needs="keras3",
    ),
    RecipeSpec(
        "keras3-int4", "int4", keras3.QUANTIZER.format(mode="int4") + " by tf2onnx",
        {"method": "keras3", "keras3_mode": "int4"}, search=("int4", "auto"), needs="keras3",
    ),
    RecipeSpec(
        "qat-int8", "qat",
        "tf2onnx of the quantization-aware-trained model, fake-quantized weights stored as 8-bit "
        "integers (uint8 around zero point 128) + DequantizeLinear", {"method": "qat"},
        search=("qat",),
    ),
    RecipeSpec(
        "qat-dynamic-int8", "qat",
        "tf2onnx of the quantization-aware-trained model, then onnxruntime dynamic int8 on every "
        "op it supports (LSTM included): for weights tf2onnx leaves off the int8 grid",
        {"method": "qat", "then": "dynamic"}, search=("qat",),
    ),
)  # fmt: skip

# Outputs are computed one sample at a time, as deployed at batch 1: dynamic quantization
# scales activations per batch, so a batch's other samples would change a sample's output.
_PREDICT_BATCH = 1


def _fed_inputs(graph: Any) -> list[str]:
    """The graph inputs a caller feeds (an input that is also an initializer has a default)."""
    initializers = {i.name for i in graph.initializer}
    return [i.name for i in graph.input if i.name not in initializers]


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


def preprocess(fp32_path: Path, out_path: Path) -> None:
    """onnxruntime's quant_pre_process, in a private working directory: its symbolic shape
    inference, when it cannot infer every shape, writes `sym_shape_infer_temp.onnx` and external
    data files into the current directory (and then fails; shapes are then inferred without it)."""
    from onnxruntime.quantization import quant_pre_process

    isolate.step(QUANTIZER, "quant_pre_process")
    source, target = str(Path(fp32_path).resolve()), str(Path(out_path).resolve())
    # an fp32 file with external data may pass 2 GiB in one protobuf: so may its pre-processed one
    external = {}
    if data_file(fp32_path).is_file():
        external = {"save_as_external_data": True, "all_tensors_to_one_file": True,
                    "external_data_location": data_file(out_path).name}  # fmt: skip
    with working_directory(Path(target).parent):
        try:
            quant_pre_process(source, target, **external)
        except Exception:  # symbolic shape inference fails on some graphs (Concat of inputs)
            quant_pre_process(source, target, skip_symbolic_shape=True, **external)


def quantize(
    fp32_path: Path,
    out_path: Path,
    knobs: dict[str, Any],
    x_calib: Inputs | None,
    memo: dict[str, Any] | None = None,
) -> None:
    """onnxruntime quantization of an fp32 ONNX file with a recipe's knobs. `memo` keeps the
    pre-processed graph for the next recipe of the same file."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    method, op_types = knobs["method"], knobs.get("op_types")
    exclude = list(knobs.get("nodes_to_exclude") or []) or None
    if method == "float16":
        save(float16_weights(onnx.load(str(fp32_path))), out_path)
        return
    if method == "int4":
        calibration = None
        if knobs.get("algorithm") == "gptq" and x_calib is not None:

            def calibration(graph: Any) -> Any:
                return _calibration_reader(_fed_inputs(graph), x_calib)

        int4_weights(fp32_path, out_path, knobs["block_size"], knobs["symmetric"], exclude,
                     knobs.get("accuracy_level"), op_types, knobs.get("algorithm"),
                     calibration)  # fmt: skip
        return
    if method == "dynamic" and data_file(fp32_path).is_file():  # weights in external data
        graph = onnx.load(str(fp32_path), load_external_data=False).graph
        if streams_dynamic(graph, op_types):  # MatMul weights only: one at a time
            if knobs.get("keep_float"):
                exclude = [*(exclude or []), *weighted_producers(graph, knobs["keep_float"])]
            dynamic_int8_streamed(fp32_path, out_path, knobs.get("reduce_range", False), exclude)
            return
    memo = {} if memo is None else memo
    if "preprocessed" not in memo:
        kept = _Scratch("compress-ort-pre-")
        preprocess(fp32_path, kept.path / "pre.onnx")
        memo["preprocessed"] = kept
    pre = memo["preprocessed"].path / "pre.onnx"  # read in place by every recipe
    if knobs.get("keep_float"):
        graph = onnx.load(str(pre), load_external_data=False).graph
        exclude = [*(exclude or []), *weighted_producers(graph, knobs["keep_float"])]
    isolate.step(QUANTIZER, f"{method} quantization")
    if method == "dynamic":
        quantize_dynamic(
            str(pre), str(out_path), weight_type=QuantType.QInt8, op_types_to_quantize=op_types,
            nodes_to_exclude=exclude, reduce_range=knobs.get("reduce_range", False),
        )  # fmt: skip
    elif method == "static":
        graph = onnx.load(str(pre), load_external_data=False).graph
        names = _fed_inputs(graph)
        # Softmax stays float (as in TFLite's full-integer recipes): a uint8 Softmax output
        # rounds a near-uniform distribution over many classes to all zeros
        softmax = [n.name for n in graph.node if n.op_type in FLOAT_OP_TYPES]
        exclude = [*(exclude or []), *softmax] or None
        quantize_static(
            str(pre),
            str(out_path),
            _calibration_reader(names, x_calib),
            quant_format=QuantFormat.QDQ,
            per_channel=knobs.get("per_channel", True),
            reduce_range=knobs.get("reduce_range", False),
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            op_types_to_quantize=op_types,
            nodes_to_exclude=exclude,
        )
    else:
        raise ValueError(f"onnxruntime quantization method {method!r} is not known")
    onnx.checker.check_model(str(out_path))


class _Scratch:
    """A temporary directory that lives as long as this object (in a memo: as long as the
    Sources whose shared work it holds). The pre-processed graph stays on disk there, not in
    memory: past 2 GiB it is a file plus its external data."""

    def __init__(self, prefix: str) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=prefix))
        weakref.finalize(self, shutil.rmtree, self.path, True)


def intermediates(path: Path, x: Inputs) -> dict[str, tuple[str, list[np.ndarray]]]:
    """Every node's float output, per sample of `x`: tensor name -> (op type, arrays). The graph
    is copied with every node output made a graph output (as onnxruntime's qdq_loss_debug
    does), in memory."""
    import onnx
    import onnxruntime as ort

    proto = onnx.load(str(path))
    graph = proto.graph
    present = {o.name for o in graph.output}
    producers = {out: n.op_type for n in graph.node for out in n.output if out}
    graph.output.extend(onnx.ValueInfoProto(name=t) for t in producers if t not in present)
    with tempfile.TemporaryDirectory(prefix="compress-ort-debug-") as tmp:
        if data_file(path).is_file():  # past 2 GiB in memory: a file with its external data
            copy = Path(tmp) / "debug.onnx"
            onnx.save_model(proto, str(copy), save_as_external_data=True,
                            location=data_file(copy).name)  # fmt: skip
            model: Any = str(copy)
        else:
            model = proto.SerializeToString()
        session = ort.InferenceSession(model, session_options(1),
                                       providers=["CPUExecutionProvider"])  # fmt: skip
    names = [o.name for o in session.get_outputs()]
    inputs = [i.name for i in session.get_inputs()]
    out: dict[str, tuple[str, list[np.ndarray]]] = {}
    for xb in batched(x, 1):
        for name, value in zip(names, session.run(names, as_feed(xb, inputs)), strict=True):
            value = np.asarray(value)
            if name in producers and value.dtype.kind == "f":
                out.setdefault(name, (producers[name], []))[1].append(value.astype(np.float32))
    return out


def _single_file(spec: RecipeSpec, storage: Any) -> None:
    """Recipes other than the fp32 export write one file: a model whose weights need external
    data is refused by them in one line."""
    if storage is not None:
        raise ValueError(
            f"recipe {spec.id} writes one ONNX file, and the model's weights pass the 2 GiB one "
            "protobuf holds (only the fp32 export writes external data)"
        )


class OnnxRuntimeBackend(Backend):
    runtime = "onnxruntime"
    format = "onnx"
    suffix = ".onnx"
    recipes = RECIPES
    loader_name = "onnxruntime"

    def build(self, spec: RecipeSpec, src: Sources, path: Path) -> dict[str, Any]:
        method = spec.knobs["method"]
        opset = src.opset or DEFAULT_OPSET
        if method == "export":
            external = spec.knobs.get("external_data", False)
            proto, storage = convert(src.model, opset, external=external)
            save(proto, path, storage)
            return {"opset": opset}
        if method == "keras3":  # Keras 3's own quantizer, then tf2onnx of its export
            with keras3.quantized(src.model, spec.knobs["keras3_mode"]) as model:
                proto, storage = convert(model, opset)
            _single_file(spec, storage)
            save(proto, path)
            return {"opset": opset}
        if method == "qat":
            if src.qat_model is None:
                raise ValueError(f"recipe {spec.id} needs a quantization-aware-trained model")
            proto, storage = convert(src.qat_model, opset)
            _single_file(spec, storage)
            if spec.knobs.get("then") == "dynamic":
                with tempfile.TemporaryDirectory(prefix="compress-qat-") as tmp:
                    exported = Path(tmp) / "qat.onnx"
                    save(proto, exported)
                    quantize(exported, path, self.recipe("dynamic-int8").knobs, None)
            else:
                save(weights_to_int8(proto), path)
            return {"opset": opset}
        if src.fp32 is None:
            raise ValueError(f"recipe {spec.id} quantizes the fp32 ONNX export; there is none")
        if spec.knobs.get("op_types") == "profiled":
            op_types, timed = profiled_op_types(src.fp32.path, spec.knobs, src.x_calib, src.memo)
            quantize(src.fp32.path, path, {**spec.knobs, "op_types": op_types}, src.x_calib,
                     src.memo)  # fmt: skip
            return {"op_types": op_types, "profiled_ms": timed}
        quantize(src.fp32.path, path, spec.knobs, src.x_calib, src.memo)
        return {}

    def layer_errors(
        self, path: Path, fp32_path: Path, x: Inputs, **options: bool
    ) -> list[dict[str, Any]]:
        import onnx

        rows = compare(intermediates(fp32_path, x), intermediates(path, x))
        # the node that computes the tensor in the quantized file: its name is the quantizer's
        # (from the pre-processed graph, where e.g. MatMul + Add became one Gemm)
        nodes = {out: n.name for n in onnx.load(str(path)).graph.node for out in n.output}
        for r in rows:
            r["node"] = nodes.get(r["layer"])
        return rows

    def keep_float(self, spec: RecipeSpec, layers: list[dict[str, Any]]) -> RecipeSpec | None:
        if spec.knobs["method"] not in ("static", "dynamic"):
            return None
        # by tensor name: the quantizer's node names differ from the quantized file's
        tensors = [r["layer"] for r in layers]
        knobs = {**spec.knobs, "keep_float": [*spec.knobs.get("keep_float", []), *tensors]}
        return replace(spec, knobs=knobs)

    def left_float(self, path: Path, spec: RecipeSpec, src: Sources) -> list[str]:
        quantizing = spec.knobs["method"] in ("static", "dynamic", "qat")
        return float_weight_ops(path) if quantizing else []

    def op_profile(
        self, path: Path, x: Inputs, threads: int = 1, **options: bool
    ) -> dict[str, Any] | None:
        return op_profile(path, x, threads)

    def open_runner(self, path: Path, threads: int = 1, **options: bool) -> OnnxRuntimeRunner:
        return OnnxRuntimeRunner(path, threads=threads)

    def count_weights(self, path: Path, model: Any = None) -> dict[str, Any]:
        import onnx
        from onnx import numpy_helper

        graph = onnx.load(str(path), load_external_data=False).graph
        axes: dict[str, int] = {}  # output-channel axis of each weight, from the node reading it
        zero_points: dict[str, str] = {}  # quantized weight -> its zero point's initializer
        for node in graph.node:
            for name in node.input:
                if node.op_type == "DequantizeLinear":
                    axes[name] = next((a.i for a in node.attribute if a.name == "axis"), 1)
                elif node.op_type == "MatMul":
                    axes.setdefault(name, 1)
            if node.op_type == "DequantizeLinear" and len(node.input) > 2:
                zero_points[node.input[0]] = node.input[2]
        inits = {i.name: i for i in graph.initializer}
        stats = []
        for init in graph.initializer:
            if len(init.dims) < 2:
                continue
            zero = inits.get(zero_points.get(init.name, ""))
            zero = numpy_helper.to_array(zero).astype(np.int32) if zero is not None else None
            values = numpy_helper.to_array(init, base_dir=str(Path(path).parent))
            stats.append(tensor_stats(init.name, values, axes.get(init.name, 0), zero))
        return summarize(stats)


PROFILE_RUNS = 20  # batch-1 calls the per-node profile averages over (after 5 unprofiled)


def op_profile(path: Path, x: Inputs, threads: int = 1) -> dict[str, Any]:
    """onnxruntime's own profiler over PROFILE_RUNS batch-1 calls: per op type, its nodes, the
    execution provider that ran them and the kernel time per call (ms, share of all nodes')."""
    import json

    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="compress-ort-profile-") as tmp:
        options = session_options(threads)
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = as_feed(take_batch(x, 1), [i.name for i in session.get_inputs()])
        for _ in range(5):
            session.run(None, feed)
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for _ in range(PROFILE_RUNS):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    types: dict[str, dict[str, Any]] = {}
    nodes: dict[str, set[str]] = {}
    for e in events:
        args = e.get("args") or {}
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        op = args.get("op_name", "?")
        row = types.setdefault(op, {"op": op, "nodes": 0, "kernels": {}, "us": 0.0})
        row["us"] += float(e.get("dur", 0))
        if e["name"] not in nodes.setdefault(op, set()):
            nodes[op].add(e["name"])
            row["nodes"] += 1
            provider = args.get("provider", "?")
            row["kernels"][provider] = row["kernels"].get(provider, 0) + 1
    total = sum(r["us"] for r in types.values()) or 1.0
    rows = [{"op": r["op"], "nodes": r["nodes"], "kernels": r["kernels"],
             "ms": r["us"] / PROFILE_RUNS / 1000, "share": r["us"] / total * 100}
            for r in sorted(types.values(), key=lambda r: -r["us"])]  # fmt: skip
    return {"tool": "onnxruntime profiler", "calls": PROFILE_RUNS,
            "node_ms": total / PROFILE_RUNS / 1000, "op_types": rows}  # fmt: skip


# What onnxruntime runs for a quantized or fused node, by the float op type it stands for.
_FLOAT_OP = {"QLinearConv": "Conv", "FusedConv": "Conv", "QLinearMatMul": "MatMul",
             "MatMulIntegerToFloat": "MatMul", "DynamicQuantizeMatMul": "MatMul",
             "FusedMatMul": "MatMul", "QGemm": "Gemm", "FusedGemm": "Gemm", "QLinearAdd": "Add",
             "QLinearMul": "Mul", "QLinearSigmoid": "Sigmoid", "QLinearConcat": "Concat",
             "QLinearGlobalAveragePool": "GlobalAveragePool", "QLinearLeakyRelu": "LeakyRelu",
             "QLinearAveragePool": "AveragePool", "QLinearSoftmax": "Softmax",
             "QLinearReduceMean": "ReduceMean"}  # fmt: skip


PROFILED_MIN_SHARE = 0.02  # op types under 2% of the fp32 node time are left float


def profiled_op_types(
    fp32_path: Path, knobs: dict[str, Any], x: Inputs | None, memo: dict[str, Any]
) -> tuple[list[str], dict[str, list[float]]]:
    """The op types worth quantizing on this CPU: the all-ops static int8 file is built and
    both it and the fp32 file are profiled at batch 1; a type is kept when its int8 kernels took
    less time than its float ones beyond the timing noise, and it takes at least
    PROFILED_MIN_SHARE of the fp32 file's node time (below that, a type's difference is noise
    and its Q/DQ pairs cost more than it can save; EfficientNet's convolutions get
    faster, its SE multiplies and residual adds slower). Returns the types and, per type, the
    [fp32, int8] ms per call."""
    from compress.measure.gates import TIMING_NOISE

    if x is None:
        raise ValueError("profiling needs calibration samples")
    with tempfile.TemporaryDirectory(prefix="compress-ort-profiled-") as tmp:
        every = Path(tmp) / "all-ops.onnx"
        quantize(fp32_path, every, {**knobs, "op_types": None}, x, memo)
        isolate.step(QUANTIZER, "profiling fp32 and int8 kernels")
        times: dict[str, list[float]] = {}
        for i, path in enumerate((fp32_path, every)):
            for row in op_profile(path, x)["op_types"]:
                pair = times.setdefault(_FLOAT_OP.get(row["op"], row["op"]), [0.0, 0.0])
                pair[i] += row["ms"]
    total = sum(f for f, _ in times.values()) or 1.0
    faster = sorted(t for t, (f, q) in times.items()
                    if f >= PROFILED_MIN_SHARE * total and 0 < q * TIMING_NOISE < f)  # fmt: skip
    if not faster:
        raise ValueError("no op type ran faster in int8 than in fp32 under onnxruntime's "
                         "profiler on this CPU")  # fmt: skip
    return faster, {t: [f, q] for t, (f, q) in times.items() if f and q}


def session_options(threads: int):  # -> onnxruntime.SessionOptions
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    # A multi-threaded session's workers spin after each run() and steal the other core from
    # whatever runs next (another artifact being timed): no spinning, so timings are fair.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


class OnnxRuntimeRunner:
    runtime = "onnxruntime"

    def __init__(self, path: Path, threads: int = 1) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.session = ort.InferenceSession(
            str(self.path), session_options(threads), providers=["CPUExecutionProvider"]
        )
        self._inputs = self.session.get_inputs()
        self.input_names = [i.name for i in self._inputs]
        self.input_shapes = {
            i.name: tuple(d if isinstance(d, int) else 1 for d in i.shape[1:]) for i in self._inputs
        }
        self.input_dtypes = {i.name: np.dtype({"float": "float32", "double": "float64"}.get(
            i.type[7:-1], i.type[7:-1])) for i in self._inputs}  # fmt: skip
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _fixed_batch(self) -> int | None:
        dim = self._inputs[0].shape[0]
        return dim if isinstance(dim, int) else None

    def predict(self, x: Inputs) -> dict[str, np.ndarray]:
        batch = self._fixed_batch() or _PREDICT_BATCH
        parts: dict[str, list[np.ndarray]] = {n: [] for n in self.output_names}
        for xb in batched(x, batch):
            n = count(xb)
            feed = take_batch(xb, batch) if self._fixed_batch() and n < batch else xb
            results = self.session.run(None, as_feed(feed, self.input_names))
            for name, arr in zip(self.output_names, results, strict=True):
                parts[name].append(np.asarray(arr[:n], dtype=np.float32))
        return {name: np.concatenate(chunks) for name, chunks in parts.items()}

    def timed_call(self, x: Inputs, batch: int) -> Callable[[], object] | None:
        fixed = self._fixed_batch()
        if fixed is not None and fixed != batch:
            return None
        import onnxruntime as ort

        # IOBinding: the input is bound once as an OrtValue and outputs go to onnxruntime-owned
        # CPU buffers, so a timed call measures the model, not per-call feed conversion.
        binding = self.session.io_binding()
        for name, arr in as_feed(take_batch(x, batch), self.input_names).items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(arr))
        for name in self.output_names:
            binding.bind_output(name, "cpu")
        return lambda: self.session.run_with_iobinding(binding)
