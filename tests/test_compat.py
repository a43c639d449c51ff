"""Every private API compress calls lives in compress/core/compat.py, checked against the pinned
version: these fail when a pin moves (check the function, then its CHECKED entry) or when the
private attribute is gone."""

from __future__ import annotations

import ast
import importlib.metadata
from pathlib import Path

import numpy as np
import pytest

import compress
from compress.core import compat

ROOT = Path(compress.__file__).parent


@pytest.mark.parametrize("dist", sorted(compat.CHECKED))
def test_installed_version_is_the_one_compat_was_checked_against(dist):
    assert importlib.metadata.version(dist) == compat.CHECKED[dist], (
        f"{dist} changed: re-check compress/core/compat.py against it, then update CHECKED"
    )


def test_optuna_private_storage_calls(tmp_path):
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    trial = study.ask()
    assert compat.optuna_storage(study) is study._storage
    frozen = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))[0]
    compat.optuna_mark_failed(study, frozen)
    assert study.get_trials(deepcopy=False)[0].state == TrialState.FAIL
    assert trial.number == 0


def test_process_pool_processes():
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    try:
        assert pool.submit(abs, -2).result(timeout=60) == 2
        processes = compat.pool_processes(pool)
        assert len(processes) == 1 and processes[0].is_alive()
    finally:
        pool.shutdown()


def test_tflite_converter_knobs_and_litert_ops():
    from compress.keras import _tf

    tf, keras = _tf.tf(), _tf.keras()
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    compat.tflite_quantization_knobs(converter, per_channel=False, calibrate_only=True)
    assert converter._experimental_disable_per_channel is True
    assert converter._experimental_calibrate_only is True
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=tf.lite.TFLiteConverter.from_keras_model(model).convert())
    interp.allocate_tensors()
    ops = compat.litert_ops(interp)
    assert ops and {"op_name", "inputs", "outputs"} <= set(ops[0])


def test_keras_and_tfmot_private_pieces():
    from compress.keras import _tf

    dense = _tf.keras().layers.Dense(3)
    dense.build((None, 2))
    assert compat.keras_trainable_weights(dense) == dense.trainable_weights
    registry = compat.tfmot_default_8bit_registry()
    assert hasattr(registry, "Default8BitQuantizeRegistry")
    assert hasattr(registry, "Default8BitQuantizeConfigRNN")
    assert {"relu", "linear", "softmax", "gelu"} <= compat.tfmot_quantizable_activations()


def test_tf2onnx_without_weight_copies_converts_to_the_same_bytes():
    """The patched conversion keeps one copy of the constants and writes the same file."""
    import tf2onnx
    from onnx import numpy_helper

    from compress.keras import _tf

    keras, tf = _tf.keras(), _tf.tf()
    keras.utils.set_random_seed(0)
    pixels = keras.Input((8, 8), name="x")
    seq = keras.layers.LSTM(6)(pixels)  # a loop body graph, folded constants
    image = keras.layers.Reshape((8, 8, 1))(pixels)
    conv = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, activation="relu")(image))
    joined = keras.layers.Concatenate()([seq, conv, keras.layers.Flatten()(pixels) * 2.0])
    model = keras.Model(pixels, keras.layers.Dense(3, activation="softmax", name="y")(joined))
    spec = (tf.TensorSpec((None, 8, 8), tf.float32, name="x"),)

    def convert():
        """The file's content up to tf2onnx's generated names (a process-wide counter): each
        node's op type (in any order), every initializer's values, and onnxruntime's outputs."""
        import onnxruntime

        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=17)
        session = onnxruntime.InferenceSession(
            proto.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        x = np.random.default_rng(0).random((4, 8, 8), dtype=np.float32)
        return (
            sorted(n.op_type for n in proto.graph.node),
            sorted(numpy_helper.to_array(i).tobytes() for i in proto.graph.initializer),
            session.run(None, {"x": x})[0].tobytes(),
        )

    plain = convert()
    for collect in (False, True):
        with compat.tf2onnx_without_weight_copies(collect):
            assert convert() == plain
    from tf2onnx.graph import Graph, Node

    with compat.tf2onnx_without_weight_copies():  # a constant changed after it was written
        const = Graph([], opset=17).make_const("c", np.ones(3, np.float32))
        const.update_proto()
        const.set_tensor_value(np.full(3, 2.0, np.float32))
        const.update_proto()
        assert numpy_helper.to_array(const.op.attribute[0].t).tolist() == [2.0, 2.0, 2.0]

    from tf2onnx.optimizer.optimizer_base import GraphOptimizerBase

    assert "tf2onnx_without" not in Node.update_proto.__qualname__  # put back afterwards
    assert "tf2onnx_without" not in GraphOptimizerBase.optimize.__qualname__


def test_the_tflite_converter_collects_only_when_asked(monkeypatch):
    import inspect

    from compress.keras import _tf

    _tf.tf()
    from tensorflow.lite.python import lite

    source = inspect.getsource(lite.TFLiteSavedModelConverterV2.convert)
    assert "gc.collect()" in source  # what tensorflow 2.21's converter runs per conversion
    calls = []
    monkeypatch.setattr(lite.gc, "collect", lambda *a: calls.append(1) or 0)
    with compat.tflite_converter_collect(False):
        assert lite.gc.collect() == 0 and calls == [] and lite.gc.isenabled() in (True, False)
    with compat.tflite_converter_collect(True):
        lite.gc.collect()
    assert calls == [1] and lite.gc is __import__("gc")


def test_freezing_leaves_chosen_variables_out_as_placeholders_without_reading_them():
    from compress.keras import _tf

    keras = _tf.keras()
    tf = _tf.tf()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(4, name="y")(inputs))
    signature = (tf.TensorSpec((None, 8), tf.float32, name="x"),)
    func, ins, outs, rename = compat.tf2onnx_keras_function(model, signature)
    assert [rename[o] for o in outs] == ["y"] and [rename[i] for i in ins] == ["x"]
    kernel = model.layers[1].kernel
    captured = compat.capture_names(func, {id(kernel)})
    assert list(captured.values()) == [kernel]
    graph_def = compat.freeze_leaving_out(func, captured)
    nodes = {n.name: n for n in graph_def.node}
    placeholder = nodes[next(iter(captured)).split(":")[0]]
    assert placeholder.op == "Placeholder"
    assert [d.size for d in placeholder.attr["shape"].shape.dim] == [8, 4]
    consts = [n for n in graph_def.node if n.op == "Const" and n.attr["value"].tensor.dtype == 1]
    assert any(len(c.attr["value"].tensor.tensor_content) == 4 * 4 for c in consts)  # the bias
    assert not any(len(c.attr["value"].tensor.tensor_content) >= 4 * 32 for c in consts)
    proto = compat.tf2onnx_from_frozen(graph_def, "m", 17, ins + list(captured), outs, rename)
    assert [i.name for i in proto.graph.input] == ["x", next(iter(captured))]
    assert [o.name for o in proto.graph.output] == ["y"]


def test_no_private_attribute_of_a_dependency_outside_compat():
    """`obj._name` on something not our own (self, cls, a module of ours) is compat's job."""
    ours = {"self", "cls"}
    found = []
    for path in ROOT.rglob("*.py"):
        if path.name == "compat.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name)
                and node.value.id not in ours
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value.id}.{node.attr}")
    assert not found, found
