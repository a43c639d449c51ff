"""Every private API of a dependency compress calls, in one place, each checked against the
version pinned in pyproject.toml (CHECKED; tests/test_compat.py fails when an installed version
differs, so a pin bump re-checks these first). Frameworks are imported by the caller and passed
in, so this module imports nothing heavy."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# distribution -> the version every function below was checked against
CHECKED = {
    "optuna": "5.0.0",
    "tensorflow-cpu": "2.21.0",
    "tf-keras": "2.21.0",
    "tensorflow-model-optimization": "0.8.1",
    "ai-edge-litert": "2.3.0",
    "tf2onnx": "1.17.0",
}


def optuna_storage(study: Any) -> Any:
    """The storage object of an optuna Study (Ray's OptunaSearch takes it to share the study)."""
    return study._storage


def optuna_mark_failed(study: Any, trial: Any) -> None:
    """Mark a FrozenTrial left RUNNING by a dead process as FAIL (optuna has no public call
    for another process's trial)."""
    from optuna.trial import TrialState

    study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)


def pool_processes(pool: Any) -> list[Any]:
    """The worker processes of a concurrent.futures.ProcessPoolExecutor (stopped at once on an
    interrupt: shutdown() alone waits for the running trials)."""
    return list((pool._processes or {}).values())


def tflite_quantization_knobs(converter: Any, per_channel: bool, calibrate_only: bool) -> None:
    """The TFLite converter's per-tensor weights and calibrate-only switches (TFLiteConverterV2's
    `_experimental_disable_per_channel`, `_experimental_calibrate_only`)."""
    for name in ("_experimental_disable_per_channel", "_experimental_calibrate_only"):
        if not hasattr(converter, name):
            raise AttributeError(f"the TFLite converter has no {name} (checked on tensorflow "
                                 f"{CHECKED['tensorflow-cpu']})")  # fmt: skip
    converter._experimental_disable_per_channel = not per_channel
    converter._experimental_calibrate_only = calibrate_only


def tflite_buffer_offsets(converter: Any) -> None:
    """The TFLite converter's switch to write constant buffers after the flatbuffer, addressed by
    offset (TFLiteConverterV2's `_experimental_use_buffer_offset`): the one way its file can
    pass the flatbuffer's 2 GB limit. LiteRT and ai-edge-quantizer read such files."""
    if not hasattr(converter, "_experimental_use_buffer_offset"):
        raise AttributeError("the TFLite converter has no _experimental_use_buffer_offset "
                             f"(checked on tensorflow {CHECKED['tensorflow-cpu']})")  # fmt: skip
    converter._experimental_use_buffer_offset = True


def litert_ops(interpreter: Any) -> list[dict[str, Any]]:
    """Every op of a LiteRT Interpreter (`op_name`, `inputs`, `outputs`, ...)."""
    return interpreter._get_ops_details()


def keras_trainable_weights(layer: Any) -> list[Any]:
    """A tf_keras layer's own list of trainable variables, in order (mutable)."""
    return layer._trainable_weights


def tfmot_quantizable_activations() -> frozenset[str]:
    """The activation names tfmot's QuantizeAwareActivation can fake-quantize (a layer with any
    other activation, e.g. a registered custom function, fails quantize_apply unless its
    QuantizeConfig lists no activation)."""
    from tensorflow_model_optimization.python.core.quantization.keras import (
        quantize_aware_activation as qaa,
    )

    cls = qaa.QuantizeAwareActivation
    return frozenset(cls._PRE_QUANT_ACTIVATIONS | cls._POST_QUANT_ACTIVATIONS)


def tfmot_default_8bit_registry() -> Any:
    """tfmot's default 8-bit quantize registry module (its QuantizeConfig classes, e.g. the RNN
    one that is not registered for LSTM)."""
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry,
    )

    return default_8bit_quantize_registry


def exit_after_cleanup(code: int) -> None:
    """End the process with `code` after the atexit handlers, as a normal exit would (CPython's
    private `atexit._run_exitfuncs`, checked on 3.11). CPython remembers a KeyboardInterrupt that
    crossed a C extension's PyRun_String (TensorFlow's pybind11 code runs some) even after it was
    caught, and then ends `python -m compress` by SIGINT instead of with the code returned;
    os._exit after the cleanup keeps the documented code."""
    import atexit
    import os
    import sys

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


@contextmanager
def tf2onnx_large_model() -> Iterator[None]:
    """tf2onnx's large-model conversion (`large_model=True`: weights kept out of the ModelProto,
    in an ExternalTensorStorage) calls `np.product`, which NumPy 2 removed (tf2onnx/graph.py,
    checked on tf2onnx 1.17.0): numpy's `prod` under that name while it runs."""
    import numpy as np

    had = "product" in np.__dict__
    if not had:
        np.product = np.prod
    try:
        yield
    finally:
        if not had:
            del np.product


@contextmanager
def tf2onnx_without_weight_copies(collect: bool = False) -> Iterator[None]:
    """tf2onnx without the copies of every weight its ONNX optimizer passes leave behind (two
    dozen passes per conversion; a 101M-parameter MLP: 385 MB of weights, 20.5 GB peak).

    - Each pass's `Node.update_proto` clears a NodeProto's attributes and extends them again:
      with upb protobuf the cleared ones stay in the NodeProto's arena, one more copy of every
      constant per pass. A constant whose value attribute is the very object last written is
      skipped; any change (const folding sets a new attribute object, outputs renamed) writes it
      again, so the file is the same (tests/test_compat.py compares them).
    - Each pass works on a deep copy of the graph; the graph it replaces is cyclic garbage that
      Python's collector may not reach for many passes. `collect` runs a collection before each
      pass (0.2 s each with TensorFlow loaded, so only worth it for large models): 101M
      parameters, tf2onnx's peak 20.5 -> 9.0 GB (TensorFlow's graph optimizer sets it then)."""
    import gc

    from tf2onnx.graph import Node
    from tf2onnx.optimizer.optimizer_base import GraphOptimizerBase

    original_update, original_optimize = Node.update_proto, GraphOptimizerBase.optimize

    def update_proto(self: Any, external_tensor_storage: Any = None) -> None:
        value = self._attr.get("value")
        written = self.__dict__.get("_compress_written")
        if (
            external_tensor_storage is None
            and self.is_const()
            and written is not None
            and written[0] is value
            and written[1] == list(self.output)
            and written[2] == list(self._attr)
        ):
            return
        original_update(self, external_tensor_storage)
        self._compress_written = (value, list(self.output), list(self._attr))

    def optimize(self: Any, graph: Any, iteration: int) -> Any:
        gc.collect()
        return original_optimize(self, graph, iteration)

    Node.update_proto = update_proto
    if collect:
        GraphOptimizerBase.optimize = optimize
    try:
        yield
    finally:
        Node.update_proto, GraphOptimizerBase.optimize = original_update, original_optimize
