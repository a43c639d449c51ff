"""compress: take Keras models through build, train, prune, cluster and quantize stages, export
TFLite and ONNX, and verify every artifact in its own runtime.

    from compress import Pipeline, PipelineConfig, stages, run

Names are imported on first use, so `compress --help` does not pay for pydantic and numpy.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("compress")  # stated once, in pyproject.toml
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "unknown"

_EXPORTS = {
    "CompressError": "compress.errors",
    "GateFailed": "compress.errors",
    "InputError": "compress.errors",
    "StageError": "compress.errors",
    "UsageError": "compress.errors",
    "Pipeline": "compress.pipeline",
    "RunResult": "compress.pipeline",
    "run": "compress.pipeline",
    "PipelineConfig": "compress.config",
    "load_pipeline_file": "compress.config",
    "StageCache": "compress.cache",
    "load_model": "compress.keras_io",
    "BACKENDS": "compress.backends",
}
_MODULES = ("stages", "models", "backends")

__all__ = sorted([*_EXPORTS, *_MODULES])


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f"compress.{name}")
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'compress' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
