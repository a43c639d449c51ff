"""compress: take Keras models through build, train, prune, cluster and quantize stages, export
TFLite and ONNX, and verify every artifact in its own runtime.

    from compress import Pipeline, PipelineConfig, stages, run

Names are imported on first use, so `compress --help` does not pay for pydantic and numpy.
"""

from __future__ import annotations

import importlib
from typing import Any

from compress.core.versions import version

__version__ = version()  # stated once, in pyproject.toml (core/versions.py reads it)

_EXPORTS = {
    "CompressError": "compress.core.errors",
    "GateFailed": "compress.core.errors",
    "InputError": "compress.core.errors",
    "StageError": "compress.core.errors",
    "UsageError": "compress.core.errors",
    "Pipeline": "compress.runs.pipeline",
    "RunResult": "compress.runs.pipeline",
    "run": "compress.runs.pipeline",
    "run_model": "compress.runs.pipeline",
    "PipelineConfig": "compress.runs.config",
    "load_pipeline_file": "compress.runs.config",
    "StageCache": "compress.runs.cache",
    "load_model": "compress.keras.model_io",
    "BACKENDS": "compress.backends",
}
_MODULES = {
    "stages": "compress.stages",
    "models": "compress.keras.models",
    "backends": "compress.backends",
}

__all__ = sorted([*_EXPORTS, *_MODULES])


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(_MODULES[name])
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'compress' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
