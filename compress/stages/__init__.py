"""The stages, importable one by one: `from compress.stages import Quantize`."""

from compress.stages.base import Artifact, RunState, Skipped, Stage
from compress.stages.build import Build
from compress.stages.export_onnx import ExportONNX
from compress.stages.export_tflite import ExportTFLite
from compress.stages.quantize import Quantize
from compress.stages.train import Train
from compress.stages.verify import Verify

REGISTRY: dict[str, type[Stage]] = {
    cls.name: cls for cls in (Build, Train, ExportTFLite, ExportONNX, Quantize, Verify)
}

__all__ = [
    "REGISTRY",
    "Artifact",
    "Build",
    "ExportONNX",
    "ExportTFLite",
    "Quantize",
    "RunState",
    "Skipped",
    "Stage",
    "Train",
    "Verify",
]
