"""export_onnx: the float model as a .onnx file through tf2onnx, checked with onnx.checker."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import Field

from compress import _tf
from compress.fileio import write_atomic
from compress.stages.base import Artifact, RunState, Stage, StageParams


class ExportONNXParams(StageParams):
    opset: int = Field(17, ge=13, le=18, description="tf2onnx 1.17 converts at opsets 13-18")


def convert_onnx(model: Any, opset: int) -> Any:
    """tf_keras model -> onnx.ModelProto with the Keras input and output names."""
    tf = _tf.tf()
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    import tf2onnx

    signature = tuple(
        tf.TensorSpec(t.shape, t.dtype, name=name)
        for t, name in zip(model.inputs, model.input_names, strict=True)
    )
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=opset)
    return proto


def save_onnx(proto: Any, path) -> None:
    import onnx

    onnx.save_model(proto, str(path))
    onnx.checker.check_model(str(path))


class ExportONNX(Stage):
    name = "export_onnx"
    Params = ExportONNXParams

    def run(self, state: RunState) -> RunState:
        model = state.require_model(self.name)
        proto = convert_onnx(model, self.params.opset)
        name = "model_fp32.onnx"
        path = write_atomic(state.workdir / name, lambda tmp: save_onnx(proto, tmp))
        artifact = Artifact(
            name=name,
            path=path,
            format="onnx",
            runtime="onnxruntime",
            precision="fp32",
            recipe=f"tf2onnx, opset {self.params.opset}",
        ).measured()
        info = {**state.info, "export_onnx": {"opset": self.params.opset}}
        return state.add((artifact,)).replace(info=info)
