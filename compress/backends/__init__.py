"""Backends, one per format, registered by runtime name. Adding a runtime: one module with a
`Backend` subclass, and one line below.

    from compress.backends import BACKENDS
    BACKENDS["onnxruntime"].open_runner(path).predict(x)
"""

from __future__ import annotations

from pathlib import Path

from compress.backends.base import Backend, RecipeSpec, Runner, Sources
from compress.backends.keras import KerasBackend
from compress.backends.litert import LiteRTBackend
from compress.backends.onnxruntime import OnnxRuntimeBackend

BACKENDS: dict[str, Backend] = {
    b.runtime: b for b in (KerasBackend(), LiteRTBackend(), OnnxRuntimeBackend())
}


def get(runtime: str) -> Backend:
    try:
        return BACKENDS[runtime]
    except KeyError:
        known = ", ".join(BACKENDS)
        raise ValueError(f"runtime must be one of {known}. Got {runtime!r} instead.") from None


def exported() -> list[Backend]:
    """The backends whose files are exported and quantized (all but the Keras reference)."""
    return [b for b in BACKENDS.values() if not b.reference]


def open_runner(path: Path, runtime: str, threads: int = 1, **options: bool) -> Runner:
    return get(runtime).open_runner(Path(path), threads, **options)


__all__ = ["BACKENDS", "Backend", "RecipeSpec", "Runner", "Sources", "exported", "get",
           "open_runner"]  # fmt: skip
