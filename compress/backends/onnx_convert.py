"""tf2onnx: a tf_keras model as an ONNX ModelProto with the Keras input and output names, and
its weights kept outside the proto (tf2onnx's large-model format) when they pass the 2 GiB one
protobuf holds."""

from __future__ import annotations

import logging
import re
from contextlib import nullcontext
from typing import Any

from compress.backends import worker as isolate
from compress.backends.onnx_weights import PROTOBUF_LIMIT
from compress.core import compat
from compress.keras import _tf
from compress.measure.weights import float_weight_bytes

_UNKNOWN_DIM = re.compile(r"unk__\d+")


def convert(model: Any, opset: int, external: bool = False) -> tuple[Any, Any]:
    """tf_keras model -> (onnx.ModelProto with the Keras input and output names, its external
    tensor storage or None). A model whose float weights pass protobuf's 2 GB limit, or any
    model when `external`, converts in tf2onnx's large-model format: the weights stay out of
    the ModelProto (`save` writes them to the file's external data)."""
    weights = float_weight_bytes(model)
    large = external or weights > PROTOBUF_LIMIT
    tf = _tf.tf()
    isolate.step("tf2onnx", "conversion")
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    import tf2onnx

    signature = tuple(
        tf.TensorSpec(t.shape, t.dtype, name=name)
        for t, name in zip(model.inputs, model.input_names, strict=True)
    )
    with (
        compat.tf2onnx_without_weight_copies(collect=weights > _tf.COLLECT_ABOVE),
        compat.tf2onnx_large_model() if large else nullcontext(),
    ):
        proto, storage = tf2onnx.convert.from_keras(
            model, input_signature=signature, opset=opset, large_model=large
        )
    stable_dim_names(proto.graph)
    return proto, storage


def stable_dim_names(graph: Any) -> None:
    """Renumber tf2onnx's unknown-dimension names (`unk__N`, from a counter global to the
    process, so the same model converts to different bytes after other conversions) in order of
    appearance, subgraphs included: the same model gives the same file in any process."""
    names: dict[str, str] = {}

    def visit(g: Any) -> None:
        for info in (*g.input, *g.output, *g.value_info):
            if not info.type.HasField("tensor_type"):
                continue
            for dim in info.type.tensor_type.shape.dim:
                if dim.HasField("dim_param") and _UNKNOWN_DIM.fullmatch(dim.dim_param):
                    dim.dim_param = names.setdefault(dim.dim_param, f"unk__{len(names)}")
        for node in g.node:
            for attr in node.attribute:
                if attr.HasField("g"):
                    visit(attr.g)
                for sub in attr.graphs:
                    visit(sub)

    visit(graph)
