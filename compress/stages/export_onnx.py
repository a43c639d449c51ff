"""export_onnx: the float model as a .onnx file through tf2onnx, checked with onnx.checker."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from compress.backends.onnxruntime import DEFAULT_OPSET, OPSETS
from compress.core.state import RunState
from compress.stages.base import StageParams
from compress.stages.export import ExportStage


class ExportONNXParams(StageParams):
    opset: int = Field(
        DEFAULT_OPSET, ge=OPSETS[0], le=OPSETS[1],
        description=f"tf2onnx 1.17 converts at opsets {OPSETS[0]}-{OPSETS[1]}",
    )  # fmt: skip


class ExportONNX(ExportStage):
    name = "export_onnx"
    Params = ExportONNXParams
    runtime = "onnxruntime"

    def sources(self) -> dict[str, Any]:
        return {"opset": self.params.opset}

    def run(self, state: RunState) -> RunState:
        return super().run(state).with_info("export_onnx", {"opset": self.params.opset})
