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


@contextmanager
def tflite_converter_collect(collect: bool) -> Iterator[None]:
    """The TFLite converter (`TFLiteSavedModelConverterV2.convert`, tensorflow 2.21) runs a full
    `gc.collect()` after loading the SavedModel for its debug information, to free that copy of
    the weights: in a long-lived worker holding many objects it took 0.3-1 s per conversion
    (60 s of a test session's CPU). With `collect` False, that collection is skipped (the copy
    is freed by reference counting or the collector's next pass); keep it for large models."""
    from tensorflow.lite.python import lite

    original = lite.gc
    if not collect:
        lite.gc = _NoCollect(original)
    try:
        yield
    finally:
        lite.gc = original


class _NoCollect:
    """The `gc` module, with `collect()` a no-op."""

    def __init__(self, gc: Any) -> None:
        self._gc = gc

    def collect(self, *args: Any) -> int:
        return 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._gc, name)


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


def tf2onnx_keras_function(model: Any, signature: Any) -> tuple[Any, list, list, dict]:
    """The first half of `tf2onnx.convert.from_keras` (tf2onnx 1.17.0, TensorFlow 2): the
    model's concrete function, its input and output tensor names (captures left out, outputs
    in the model's order) and tf2onnx's renaming of them to the Keras names."""
    import tensorflow as tf
    from tf2onnx import convert

    renamed = convert._rename_duplicate_keras_model_names(model)
    func = convert._get_concrete_function(model, signature)
    captured = {t.name for t in func.graph.function_captures.by_val_internal.values()}
    inputs = [t.name for t in func.inputs if t.name not in captured]
    outputs = [t.name for t in func.outputs if t.dtype != tf.dtypes.resource]
    rename = convert.tensor_names_from_structed(func, inputs, outputs)
    reverse = {v: k for k, v in rename.items()}
    names = convert._get_output_names(model)
    if names:
        outputs = [reverse[name] for name in names]
    elif isinstance(func.structured_outputs, dict):
        outputs = [reverse[name] for name in func.structured_outputs]
    if renamed is not None:
        convert._set_output_names(model, renamed)
    return func, inputs, outputs, rename


def freeze_leaving_out(func: Any, captures: dict[str, Any]) -> Any:
    """`func`'s GraphDef with its variables frozen into constants, as tf2onnx freezes them
    (TensorFlow 2.21's convert_to_constants internals, aggressive inlining, no control-flow
    lowering), except the variables of `captures` (`capture_names`: capture tensor name ->
    variable): each becomes a Placeholder of its dtype and shape, named after its capture, and
    its values are never read (no copy of them is made)."""
    import numpy as np
    import tensorflow as tf
    from tensorflow.python.framework import convert_to_constants as c2c
    from tensorflow.python.framework import tensor_util

    left_out = {id(v) for v in captures.values()}

    class Data(c2c._FunctionConverterDataInEager):
        def _eval(self, tensor: Any) -> Any:
            if id(tensor) in left_out:  # a zero-strided view: no memory behind it
                return np.broadcast_to(np.zeros((), tensor.dtype.as_numpy_dtype), tensor.shape)
            return super()._eval(tensor)

    original = tensor_util.make_tensor_proto

    def make_tensor_proto(values: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(values, np.ndarray) and values.size > 1 and not any(values.strides):
            return tf.make_tensor_proto(0, values.dtype, [1])  # replaced by a Placeholder below
        return original(values, *args, **kwargs)

    tensor_util.make_tensor_proto = make_tensor_proto
    try:
        data = Data(func=func, lower_control_flow=False, aggressive_inlining=True)
        graph_def, _ = c2c._replace_variables_by_constants(converter_data=data)
    finally:
        tensor_util.make_tensor_proto = original
    names = {n.split(":")[0] for n in captures}
    for node in graph_def.node:
        if node.name in names and node.op == "Const":
            dtype = node.attr["dtype"].type
            shape = data.tensor_data[node.name].numpy.shape
            node.op = "Placeholder"
            node.ClearField("attr")
            node.attr["dtype"].type = dtype
            node.attr["shape"].shape.CopyFrom(tf.TensorShape(shape).as_proto())
    return graph_def


def capture_names(func: Any, variables: set[int]) -> dict[str, Any]:
    """Tensor name of the capture inside `func` -> variable, for the variables (by `id()`) it
    captures."""
    by_handle = {id(v.handle): v for v in func.graph.variables if id(v) in variables}
    return {
        inner.name: by_handle[id(outer)]
        for outer, inner in func.graph.captures
        if id(outer) in by_handle
    }


def tf2onnx_from_frozen(graph_def: Any, name: str, opset: int, inputs: list, outputs: list,
                        rename: dict) -> Any:  # fmt: skip
    """The second half of tf2onnx's conversion (tf2onnx 1.17.0): TensorFlow's graph optimizer
    on the frozen GraphDef, then tf2onnx's; the ONNX ModelProto."""
    import tensorflow as tf
    from tf2onnx import convert, tf_loader

    graph_def = tf_loader.fix_freezing_errors_part2(graph_def)
    with tf.device("/cpu:0"), tf.Graph().as_default():
        graph_def = tf_loader.tf_optimize(inputs, outputs, graph_def)
        proto, _ = convert._convert_common(
            graph_def, name=name, continue_on_error=True, opset=opset, input_names=inputs,
            output_names=outputs, tensors_to_rename=rename,
        )  # fmt: skip
    return proto


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
