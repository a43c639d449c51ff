"""What a run ran on: compress's own version (stated once, in pyproject.toml), the versions of
the packages whose code makes its artifacts (part of every stage's cache key), and the machine."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from typing import Any

PACKAGES = (
    "compress",
    "tensorflow-cpu",
    "tensorflow",
    "tf-keras",
    "tensorflow-model-optimization",
    "tf2onnx",
    "onnx",
    "onnxruntime",
    "ai-edge-litert",
    "numpy",
    "scikit-learn",
)


def version() -> str:
    """The installed package's version, or "unknown" in a source tree that was not installed."""
    try:
        return importlib.metadata.version("compress")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def environment() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "packages": package_versions(),
    }
