"""export_tflite: the float model as a .tflite file, through the TFLite converter."""

from __future__ import annotations

from compress.stages.base import StageParams
from compress.stages.export import ExportStage


class ExportTFLite(ExportStage):
    name = "export_tflite"
    Params = StageParams
    runtime = "litert"
