"""compress: take Keras models through build, train and quantize stages, export TFLite and ONNX,
and verify every artifact in its own runtime.

    from compress import Pipeline, stages, run, RunConfig
"""

from compress import stages
from compress.config import RunConfig
from compress.errors import CompressError, GateFailed, InputError, StageError, UsageError
from compress.loading import load_model
from compress.pipeline import Pipeline, RunResult, run

__version__ = "0.1.0"

__all__ = [
    "CompressError",
    "GateFailed",
    "InputError",
    "Pipeline",
    "RunConfig",
    "RunResult",
    "StageError",
    "UsageError",
    "load_model",
    "run",
    "stages",
]
