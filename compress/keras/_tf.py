"""The one place TensorFlow and Keras are imported.

tfmot and the TFLite converter need Keras 2 (`tf_keras`); TensorFlow picks the Keras it uses
when it is first imported, so the environment is set before that import, here.
"""

from __future__ import annotations

import gc
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
    """Declare this process compress's own (the CLI, the run's worker, a tune trial process):
    from now on, each time a framework is first imported here, every object alive (garbage
    collected first) is moved to the garbage collector's permanent generation (gc.freeze), so
    later collections skip the ~300,000 objects of TensorFlow and Keras. The TFLite converter
    calls gc.collect() on each conversion: 0.39 -> 0.26 s a conversion of the attention model
    (AMD EPYC, 1 thread), and Keras tracing triggers full collections too. Frozen objects are
    still freed by reference counting; what is alive at an import is modules, the run's config
    and its data, which live as long as the process anyway. Not done in a process that merely
    imports compress as a library: its objects are its own."""
    global _owned
    if not _owned:
        _owned = True
        _freeze_imports()


def _freeze_imports() -> None:
    """Freeze what is alive now (once garbage is collected, so no dead cycle is kept)."""
    if _owned and "tensorflow" in sys.modules:
        gc.collect()
        gc.freeze()


def tf() -> ModuleType:
    _configure_env()
    first = "tensorflow" not in sys.modules
    import tensorflow

    tensorflow.get_logger().setLevel("ERROR")
    if first:
        _freeze_imports()
    return tensorflow


def tfmot() -> ModuleType:
    tf()
    first = "tensorflow_model_optimization" not in sys.modules
    import tensorflow_model_optimization

    if first:
        _freeze_imports()
    return tensorflow_model_optimization


def keras() -> ModuleType:
    tf()
    first = "tf_keras" not in sys.modules
    import tf_keras

    if first:
        _freeze_imports()
    return tf_keras
