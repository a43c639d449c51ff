"""export_onnx: the float model as a .onnx file through tf2onnx, checked with onnx.checker."""

from __future__ import annotations

from pydantic import Field

from compress.backends import BACKENDS, Sources
from compress.backends.onnxruntime import DEFAULT_OPSET, OPSETS
from compress.stages.base import Stage, StageParams
from compress.state import RunState


class ExportONNXParams(StageParams):
    opset: int = Field(
        DEFAULT_OPSET, ge=OPSETS[0], le=OPSETS[1],
        description=f"tf2onnx 1.17 converts at opsets {OPSETS[0]}-{OPSETS[1]}",
    )  # fmt: skip


class ExportONNX(Stage):
    name = "export_onnx"
    Params = ExportONNXParams

    def run(self, state: RunState) -> RunState:
        ort = BACKENDS["onnxruntime"]
        src = Sources(self.model(state), opset=self.params.opset)
        artifact = ort.make(state.workdir, ort.recipe("fp32"), src)
        return state.add((artifact,)).with_info("export_onnx", {"opset": self.params.opset})
