"""The one place TensorFlow and Keras are imported.

tfmot and the TFLite converter need Keras 2 (`tf_keras`); TensorFlow picks the Keras it uses
when it is first imported, so the environment is set before that import, here.
"""

from __future__ import annotations

import os
from types import ModuleType


def _configure_env() -> None:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")


def tf() -> ModuleType:
    _configure_env()
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
