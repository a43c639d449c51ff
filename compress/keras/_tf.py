"""The one place TensorFlow and Keras are imported.

tfmot and the TFLite converter need Keras 2 (`tf_keras`); TensorFlow picks the Keras it uses
when it is first imported, so the environment is set before that import, here.
"""

from __future__ import annotations

import gc
import os
import sys
from types import ModuleType

# Float weight bytes from which an explicit gc.collect() pays for itself (0.2 s with TensorFlow
# loaded): a model's copies that became cyclic garbage are collected at once past this.
COLLECT_ABOVE = 2**26

# Whether this process is one compress runs (the CLI, the run's worker, a tune trial process),
# whose imported frameworks may be taken out of the garbage collector's reach (own_process).
_owned = False


def _configure_env() -> None:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")


def own_process() -> None:
    """Declare this process compress's own (the CLI, the run's worker, a tune trial process).
    Its first TensorFlow import then brings tf_keras along (every run needs both), with the
    garbage collector paused, and freezes every object alive after it (garbage collected first)
    into the collector's permanent generation (gc.freeze): later collections skip the ~300,000
    objects of TensorFlow and Keras. The TFLite converter called gc.collect() on every
    conversion (now only for models past COLLECT_ABOVE, compat.tflite_converter_collect):
    `python benchmarks/process_gc.py` (AMD EPYC, 1 thread) timed a conversion of the attention
    model at 0.45 s in a library process and 0.27 s in an owned one. Frozen
    objects are still freed by reference counting. Nothing is frozen after that first import
    (tfmot's comes in the middle of a run: its model would never be collected). Not done in a
    process that merely imports compress as a library: its garbage collector is its own."""
    global _owned
    if not _owned:
        _owned = True
        if "tensorflow" in sys.modules:
            _freeze()


def _freeze() -> None:
    """Freeze what is alive now (once garbage is collected, so no dead cycle is kept)."""
    gc.collect()
    gc.freeze()


def _import_frozen() -> None:
    """TensorFlow and tf_keras imported with the collector paused (imports make objects that
    live as long as the process: nothing to collect), then frozen, before any model exists."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        import tensorflow  # noqa: F401
        import tf_keras  # noqa: F401
    finally:
        if enabled:
            gc.enable()
    _freeze()


def tf() -> ModuleType:
    _configure_env()
    if _owned and "tensorflow" not in sys.modules:
        _import_frozen()
    import tensorflow

    tensorflow.get_logger().setLevel("ERROR")
    return tensorflow


def tfmot() -> ModuleType:
    tf()
    import tensorflow_model_optimization

    return tensorflow_model_optimization


def keras() -> ModuleType:
    tf()
    import tf_keras

    return tf_keras
