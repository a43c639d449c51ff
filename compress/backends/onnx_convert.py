"""tf2onnx: a tf_keras model as an ONNX ModelProto with the Keras input and output names, and
its weights kept outside the proto (ONNX external data) when they pass the 2 GiB one protobuf
holds.

For external data, and for a one-file export past WEIGHTLESS_ABOVE, the weights never enter
the conversion: each variable of more than EXTERNAL_MIN_ELEMENTS values is frozen as a
Placeholder of its shape, tf2onnx converts a graph without them, and they come back as
initializers, whose bytes `onnx_weights.save` reads from the variables one at a time (or that
hold them, in one file). tf2onnx's own large-model format freezes every weight into the
GraphDef and copies it through its passes: at 630M parameters (2.4 GB) it ran out of 23 GB.
Variables read by other ops (a loop's, as an LSTM's kernels) stay constants, and a
quantization-aware model (FakeQuant ops) is converted by tf2onnx's own path: tf2onnx converts
those only over constant weights.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from compress.backends import worker as isolate
from compress.backends.onnx_weights import PROTOBUF_LIMIT, graphs, readers
from compress.core import compat
from compress.keras import _tf
from compress.measure.weights import float_weight_bytes

_UNKNOWN_DIM = re.compile(r"unk__\d+")
EXTERNAL_MIN_ELEMENTS = 1024  # smaller weights stay in the graph (tf2onnx's own threshold)
# Float weights past which even a one-file export converts without them (then puts them in the
# proto): tf2onnx's own conversion at 100M parameters took 44 s and 9.2 GB
WEIGHTLESS_ABOVE = 2**26
# TensorFlow ops whose weight input tf2onnx converts as well when it is a graph input as when
# it is a constant (checked on the reference models, ResNet50 and the tests' user models)
READS_AS_INPUT = {
    "MatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum", "Conv2D", "Conv3D",
    "DepthwiseConv2dNative", "ResourceGather", "GatherV2", "BiasAdd", "AddV2", "Add", "Mul",
    "Sub", "FusedBatchNormV3", "Reshape", "Transpose", "Cast",
}  # fmt: skip


def convert(model: Any, opset: int, external: bool = False) -> tuple[Any, Any]:
    """tf_keras model -> (onnx.ModelProto with the Keras input and output names, its external
    weights or None). A model whose float weights pass protobuf's 2 GB limit, or any model when
    `external`, keeps its weights out of the ModelProto (`onnx_weights.save` writes them to the
    file's external data)."""
    weights = float_weight_bytes(model)
    tf = _tf.tf()
    isolate.step("tf2onnx", "conversion")
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    import tf2onnx

    signature = tuple(
        tf.TensorSpec(t.shape, t.dtype, name=name)
        for t, name in zip(model.inputs, model.input_names, strict=True)
    )
    converted = None
    if external or weights > min(PROTOBUF_LIMIT, WEIGHTLESS_ABOVE):
        external = external or weights > PROTOBUF_LIMIT
        converted = _convert_without_weights(model, signature, opset, external)
    if converted is None:
        with compat.tf2onnx_without_weight_copies(collect=weights > _tf.COLLECT_ABOVE):
            converted = tf2onnx.convert.from_keras(model, input_signature=signature,
                                                   opset=opset)  # fmt: skip
    proto, storage = converted
    stable_dim_names(proto.graph)
    return proto, storage


class VariableData(Mapping):
    """Initializer name -> its bytes, read from the Keras variable when asked (one at a time:
    `onnx_weights.save` writes each before it reads the next), transposed where the graph's
    Transpose of it was folded into it."""

    def __init__(self, variables: dict[str, tuple[Any, list[int] | None]]) -> None:
        self.variables = variables

    def __getitem__(self, name: str) -> memoryview:
        return memoryview(_values(*self.variables[name])).cast("B")

    def __iter__(self) -> Iterator[str]:
        return iter(self.variables)

    def __len__(self) -> int:
        return len(self.variables)


def _values(variable: Any, perm: list[int] | None) -> np.ndarray:
    values = variable.numpy()
    return np.ascontiguousarray(values if perm is None else values.transpose(perm))


def _convert_without_weights(
    model: Any, signature: Any, opset: int, external: bool
) -> tuple[Any, Any] | None:
    """tf2onnx on the model's graph with its large variables as inputs, which become
    initializers: external ones (`external`; their bytes read when the file is saved) or
    holding their bytes in the proto. A Transpose of such a weight (a convolution's kernel:
    TensorFlow's HWIO, ONNX's OIHW) is folded into it, as tf2onnx folds it for a constant.
    None for a quantization-aware model (tf2onnx's own conversion, with every weight in it)."""
    import onnx

    func, inputs, outputs, rename = compat.tf2onnx_keras_function(model, signature)
    if any(op.type.startswith("FakeQuant") for op in func.graph.get_operations()):
        return None  # QAT: tf2onnx converts FakeQuant only from its own freezing, constants
    left_out = {
        id(v) for v in func.graph.variables
        if v.shape.num_elements() > EXTERNAL_MIN_ELEMENTS and _readable_as_input(func, v)
    }  # fmt: skip
    captures = compat.capture_names(func, left_out)
    graph_def = compat.freeze_leaving_out(func, captures)
    proto = compat.tf2onnx_from_frozen(graph_def, model.name, opset, inputs + list(captures),
                                       outputs, rename)  # fmt: skip
    graph = proto.graph
    present = {i.name for i in graph.input}
    captures = {c: v for c, v in captures.items() if c in present}  # others optimized away
    taken = {o for n in graph.node for o in n.output} | {t.name for t in graph.initializer}
    names = _initializer_names(captures, taken)
    kept = [i for i in graph.input if i.name not in captures]
    del graph.input[:]
    graph.input.extend(kept)
    _rename_inputs(graph, {c: names[c] for c in captures})
    perms = _fold_transposes(graph, set(names.values()))
    variables = {}
    for capture, variable in captures.items():
        name = names[capture]
        perm = perms.get(name)
        tensor = graph.initializer.add()
        tensor.name = name
        tensor.data_type = onnx.helper.np_dtype_to_tensor_dtype(
            np.dtype(variable.dtype.as_numpy_dtype)
        )
        shape = variable.shape.as_list()
        tensor.dims.extend(shape if perm is None else [shape[i] for i in perm])
        if external:
            tensor.data_location = onnx.TensorProto.EXTERNAL
            entry = tensor.external_data.add()
            entry.key, entry.value = "location", name
            variables[name] = (variable, perm)
        else:
            tensor.raw_data = _values(variable, perm).tobytes()
    return proto, VariableData(variables) if external else None


def _fold_transposes(graph: Any, weights: set[str]) -> dict[str, list[int]]:
    """Remove each Transpose whose input is one of `weights` read by nothing else (in any
    subgraph either), its consumers pointed at the weight; returns weight -> the permutation
    its values take."""
    read = readers(graph)
    outputs = {o.name for o in graph.output}
    perms: dict[str, list[int]] = {}
    moved: dict[str, str] = {}
    for node in list(graph.node):
        if (
            node.op_type == "Transpose"
            and node.input[0] in weights
            and read[node.input[0]] == 1
            and node.output[0] not in outputs
        ):
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
            if perm is None:
                continue
            perms[node.input[0]] = perm
            moved[node.output[0]] = node.input[0]
            graph.node.remove(node)
    _rename_inputs(graph, moved)
    return perms


def _readable_as_input(func: Any, variable: Any) -> bool:
    """Whether every op that reads the variable's values (directly or through Identity) takes
    them as an ordinary input in tf2onnx (READS_AS_INPUT): not a loop, branch or function call
    (tf2onnx matches an LSTM only over constant weights) nor QAT's FakeQuant ops (converted only
    over constants)."""
    captured = next(inner for outer, inner in func.graph.captures if outer is variable.handle)
    frontier, seen = [captured], set()
    while frontier:
        tensor = frontier.pop()
        for op in tensor.consumers():
            if op.type in ("ReadVariableOp", "Identity"):
                if op.name not in seen:
                    seen.add(op.name)
                    frontier.extend(op.outputs)
            elif op.type not in READS_AS_INPUT:
                return False
    return True


def _initializer_names(captures: dict[str, Any], taken: set[str]) -> dict[str, str]:
    """Capture tensor name -> the initializer's name: the variable's own (`dense/kernel:0`)
    where no other variable or tensor of the graph has it, else the capture's."""
    counts = Counter(v.name for v in captures.values())
    return {
        c: v.name if counts[v.name] == 1 and v.name not in taken else c for c, v in captures.items()
    }


def _rename_inputs(graph: Any, names: dict[str, str]) -> None:
    """Point every node input (subgraphs included) at the renamed initializers."""
    for g in graphs(graph):
        for node in g.node:
            for i, name in enumerate(node.input):
                if name in names:
                    node.input[i] = names[name]


def stable_dim_names(graph: Any) -> None:
    """Renumber tf2onnx's unknown-dimension names (`unk__N`, from a counter global to the
    process, so the same model converts to different bytes after other conversions) in order of
    appearance, subgraphs included: the same model gives the same file in any process."""
    names: dict[str, str] = {}
    for g in graphs(graph):
        for info in (*g.input, *g.output, *g.value_info):
            if not info.type.HasField("tensor_type"):
                continue
            for dim in info.type.tensor_type.shape.dim:
                if dim.HasField("dim_param") and _UNKNOWN_DIM.fullmatch(dim.dim_param):
                    dim.dim_param = names.setdefault(dim.dim_param, f"unk__{len(names)}")
