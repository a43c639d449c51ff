"""The one place TensorFlow and Keras are imported.

tfmot and the TFLite converter need Keras 2 (`tf_keras`); TensorFlow picks the Keras it uses
when it is first imported, so the environment is set before that import, here.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
from types import ModuleType

# Whether this process is one compress runs (the CLI, the run's worker, a tune trial process),
# whose imported frameworks may be taken out of the garbage collector's reach (own_process).
_owned = False


def _configure_env() -> None:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")


def own_process() -> None:
    """Declare this process compress's own (the CLI, the run's worker, a tune trial process).
    From then on a framework's first import here runs with the garbage collector paused, and
    every object alive after it (garbage collected first) is moved to the collector's permanent
    generation (gc.freeze), so later collections skip the ~300,000 objects of TensorFlow and
    Keras. Measured on an AMD EPYC, 1 thread: TensorFlow + tf_keras import 4.3 -> 2.6 s of CPU
    (each run's worker pays it too); the TFLite converter calls gc.collect() on every
    conversion: 0.39 -> 0.26 s a conversion of the attention model. Frozen objects are still
    freed by reference counting; what is alive at an import is modules, the run's config and
    its data, which live as long as the process anyway. Not done in a process that merely
    imports compress as a library: its garbage collector is its own."""
    global _owned
    if not _owned:
        _owned = True
        if "tensorflow" in sys.modules:
            _freeze()


def _freeze() -> None:
    """Freeze what is alive now (once garbage is collected, so no dead cycle is kept)."""
    gc.collect()
    gc.freeze()


def _import(name: str) -> ModuleType:
    if name in sys.modules or not _owned:
        return importlib.import_module(name)
    enabled = gc.isenabled()
    gc.disable()  # imports make objects that live as long as the process: nothing to collect
    try:
        module = importlib.import_module(name)
    finally:
        if enabled:
            gc.enable()
    _freeze()
    return module


def tf() -> ModuleType:
    _configure_env()
    tensorflow = _import("tensorflow")
    tensorflow.get_logger().setLevel("ERROR")
    return tensorflow


def tfmot() -> ModuleType:
    tf()
    return _import("tensorflow_model_optimization")


def keras() -> ModuleType:
    tf()
    return _import("tf_keras")
