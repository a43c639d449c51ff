"""Thin runners with one interface (predict by output name, a timed call) per runtime."""

from __future__ import annotations

from pathlib import Path

from compress.runtimes.base import Runner


def open_runner(path: Path, runtime: str, threads: int = 1, **options: bool) -> Runner:
    if runtime == "litert":
        from compress.runtimes.litert import LiteRTRunner

        return LiteRTRunner(path, threads=threads, **options)
    if runtime == "onnxruntime":
        from compress.runtimes.onnxrt import OnnxRuntimeRunner

        return OnnxRuntimeRunner(path, threads=threads)
    raise ValueError(f"runtime must be 'litert' or 'onnxruntime'. Got {runtime!r} instead.")


__all__ = ["Runner", "open_runner"]
