"""compress: take Keras models through build, train and quantize stages, export TFLite and ONNX,
and verify every artifact in its own runtime.

    from compress import Pipeline, PipelineConfig, stages, run
"""

from compress import stages
from compress.cache import StageCache
from compress.config import PipelineConfig, load_pipeline_file
from compress.errors import CompressError, GateFailed, InputError, StageError, UsageError
from compress.loading import load_model
from compress.pipeline import Pipeline, RunResult, run

__version__ = "0.1.0"

__all__ = [
    "CompressError",
    "GateFailed",
    "InputError",
    "Pipeline",
    "PipelineConfig",
    "StageCache",
    "RunResult",
    "StageError",
    "UsageError",
    "load_model",
    "load_pipeline_file",
    "run",
    "stages",
]
