"""export_tflite: the float model as a .tflite file, through the TFLite converter."""

from __future__ import annotations

from compress.backends import BACKENDS, Sources
from compress.stages.base import Stage, StageParams
from compress.state import RunState


class ExportTFLite(Stage):
    name = "export_tflite"
    Params = StageParams

    def run(self, state: RunState) -> RunState:
        litert = BACKENDS["litert"]
        return state.add(
            (litert.make(state.workdir, litert.recipe("fp32"), Sources(self.model(state))),)
        )
