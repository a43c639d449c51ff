"""export_onnx: the float model as a .onnx file through tf2onnx, checked with onnx.checker. A
model whose float weights pass the 2 GiB one protobuf holds (or any, with external_data =
"always") is written as MODEL.onnx plus its weights in MODEL.onnx.data (ONNX external data,
which onnxruntime and its quantizers read from beside the file)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from compress.backends.onnxruntime import DEFAULT_OPSET, OPSETS
from compress.core.fileio import data_file
from compress.core.state import RunState
from compress.stages.base import StageParams
from compress.stages.export import ExportStage


class ExportONNXParams(StageParams):
    opset: int = Field(
        DEFAULT_OPSET, ge=OPSETS[0], le=OPSETS[1],
        description=f"tf2onnx 1.17 converts at opsets {OPSETS[0]}-{OPSETS[1]}",
    )  # fmt: skip
    external_data: Literal["auto", "always"] = Field(
        "auto", description="auto: the weights go to model_fp32.onnx.data only when they pass "
        "the 2 GiB one ONNX protobuf holds; always: for every model"
    )  # fmt: skip


class ExportONNX(ExportStage):
    name = "export_onnx"
    Params = ExportONNXParams
    runtime = "onnxruntime"

    def sources(self) -> dict[str, Any]:
        return {"opset": self.params.opset}

    def knobs(self) -> dict[str, Any]:
        return {"external_data": self.params.external_data == "always"}

    def run(self, state: RunState) -> RunState:
        state = super().run(state)
        made = [a for a in state.artifacts if a.runtime == self.runtime and a.precision == "fp32"]
        external = bool(made) and data_file(made[-1].path).is_file()
        return state.with_info(
            "export_onnx", {"opset": self.params.opset, "external_data": external}
        )
