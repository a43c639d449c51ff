"""The stages, importable one by one: `from compress.stages import Quantize`."""

from compress.core.state import Artifact, RunState, Skipped
from compress.stages.base import Stage
from compress.stages.build import Build
from compress.stages.cluster import Cluster
from compress.stages.export_onnx import ExportONNX
from compress.stages.export_tflite import ExportTFLite
from compress.stages.prune import Prune
from compress.stages.quantize import Quantize
from compress.stages.train import Train
from compress.stages.verify import Verify

# In run order: a model's standard pipeline is these stages, less the optional ones not asked for.
# Adding a stage: its module, and one entry here.
REGISTRY: dict[str, type[Stage]] = {
    cls.name: cls
    for cls in (Build, Train, Prune, Cluster, ExportTFLite, ExportONNX, Quantize, Verify)
}

__all__ = [
    "REGISTRY",
    "Artifact",
    "Build",
    "Cluster",
    "ExportONNX",
    "ExportTFLite",
    "Prune",
    "Quantize",
    "RunState",
    "Skipped",
    "Stage",
    "Train",
    "Verify",
]
