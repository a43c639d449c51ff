"""Models of the kinds people bring, end to end through `compress run --quantize int8`: each is
built with tf_keras, trained for a few epochs on digits here, saved as `.keras` with an `.npz`,
and run as a user would. Every run must end with exit 0 (or 1 from a gate, named in the report),
every artifact verified or skipped with a reason, and nothing left behind in --out."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from compress.cli import main
from compress.keras import _tf

# user models of every layer kind, each built, trained and exported
pytestmark = pytest.mark.slow

EPOCHS = 4


def _digits():
    from sklearn.datasets import load_digits

    raw = load_digits()
    return raw.images.astype(np.float32) / 16.0, raw.images.astype(np.int32), raw.target


def _gru(L, keras):
    i = keras.Input((8, 8), name="rows")
    h = L.GRU(48)(i)
    h = L.Dense(32, activation="relu")(h)
    return keras.Model(i, L.Dense(10, activation="softmax", name="digit")(h))


def _bilstm(L, keras):
    i = keras.Input((8, 8), name="rows")
    h = L.Bidirectional(L.LSTM(24))(i)
    return keras.Model(i, L.Dense(10, activation="softmax", name="digit")(h))


def _conv1d_bn(L, keras):
    i = keras.Input((8, 8), name="rows")
    h = L.Conv1D(16, 3, padding="same")(i)
    h = L.BatchNormalization()(h)
    h = L.ReLU()(h)
    h = L.GlobalAveragePooling1D()(h)
    return keras.Model(i, L.Dense(10, activation="softmax", name="digit")(h))


def _separable(L, keras):
    i = keras.Input((8, 8, 1), name="image")
    h = L.Conv2D(8, 3, padding="same", activation="relu")(i)
    h = L.DepthwiseConv2D(3, padding="same", activation="relu")(h)
    h = L.Conv2D(16, 1, activation="relu")(h)  # pointwise
    h = L.SeparableConv2D(16, 3, activation="relu")(h)
    h = L.Flatten()(h)
    return keras.Model(i, L.Dense(10, activation="softmax", name="digit")(h))


def _embedding(L, keras):
    i = keras.Input((64,), dtype="int32", name="pixel_ids")  # token ids 0..16
    h = L.Embedding(17, 16)(i)
    h = L.Flatten()(h)
    return keras.Model(i, L.Dense(10, activation="softmax", name="digit")(h))


def _transformer(L, keras):
    i = keras.Input((8, 8), name="rows")
    x = L.Dense(32)(i)
    a = L.MultiHeadAttention(num_heads=2, key_dim=16)(x, x)
    x = L.LayerNormalization()(x + a)  # residual: a TFOpLambda (__operators__.add)
    f = L.Dense(32)(L.Dense(64, activation="relu")(x))
    x = L.LayerNormalization()(x + f)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(i, L.Dense(10, activation="softmax", name="digit")(x))


def _regression(L, keras):
    i = keras.Input((64,), name="pixels")
    h = L.Dense(64, activation="relu")(i)
    return keras.Model(i, L.Dense(1, name="value")(h))


def _two_inputs(L, keras):
    image = keras.Input((8, 8, 1), name="image")
    totals = keras.Input((8,), name="row_totals")
    h = L.Concatenate()([L.Flatten()(L.Conv2D(8, 3, activation="relu")(image)), totals])
    h = L.Dense(32, activation="relu")(h)
    return keras.Model([image, totals], L.Dense(10, activation="softmax", name="digit")(h))


def _two_kinds(L, keras):
    i = keras.Input((64,), name="pixels")
    h = L.Dense(64, activation="relu")(i)
    digit = L.Dense(10, activation="softmax", name="digit")(h)
    ink = L.Dense(1, name="ink")(h)  # a number: the image's mean intensity
    return keras.Model(i, [digit, ink])


# name -> (builder, data layout, output heads and their task)
ZOO = {
    "gru": (_gru, "rows", {"digit": "classify"}),
    "bilstm": (_bilstm, "rows", {"digit": "classify"}),
    "conv1d_bn": (_conv1d_bn, "rows", {"digit": "classify"}),
    "separable": (_separable, "image", {"digit": "classify"}),
    "embedding": (_embedding, "ids", {"digit": "classify"}),
    "transformer": (_transformer, "rows", {"digit": "classify"}),
    "regression": (_regression, "flat", {"value": "regress"}),
    "two_inputs": (_two_inputs, "two", {"digit": "classify"}),
    "two_kinds": (_two_kinds, "flat", {"digit": "classify", "ink": "regress"}),
}


def _inputs(layout: str, images: np.ndarray, ids: np.ndarray) -> dict[str, np.ndarray]:
    if layout == "rows":
        return {"x": images}
    if layout == "image":
        return {"x": images[..., None]}
    if layout == "ids":
        return {"x": ids.reshape(len(ids), 64)}
    if layout == "two":
        return {"x_image": images[..., None], "x_row_totals": images.sum(axis=2) / 8}
    return {"x": images.reshape(len(images), 64)}


def _targets(heads: dict[str, str], images: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Class ids for a classifier head; for a numeric one the digit as a number (`value`) or
    the image's mean intensity (`ink`)."""
    numbers = {"value": y.astype(np.float32), "ink": images.reshape(len(images), -1).mean(1)}
    out = {h: y if task == "classify" else numbers[h] for h, task in heads.items()}
    if len(out) == 1:
        return {"y": next(iter(out.values()))}
    return {f"y_{h}": a for h, a in out.items()}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """Every zoo model trained for EPOCHS epochs and saved with its data, once."""
    keras = _tf.keras()
    d = tmp_path_factory.mktemp("zoo")
    images, ids, y = _digits()
    for name, (builder, layout, heads) in ZOO.items():
        keras.utils.set_random_seed(0)
        model = builder(keras.layers, keras)
        inputs, targets = _inputs(layout, images, ids), _targets(heads, images, y)
        x = [inputs[f"x_{n}"] for n in model.input_names] if len(inputs) > 1 else inputs["x"]
        losses = ["sparse_categorical_crossentropy" if t == "classify" else "mse"
                  for t in heads.values()]  # fmt: skip
        model.compile("adam", losses)
        fit_y = list(targets.values())
        model.fit(x, fit_y if len(fit_y) > 1 else fit_y[0], epochs=EPOCHS, verbose=0)
        model.save(d / f"{name}.keras")
        np.savez(d / f"{name}.npz", **inputs, **targets)
    return d


def _run(zoo, name, out, capsys, *extra):
    argv = ["run", str(zoo / f"{name}.keras"), "--data", str(zoo / f"{name}.npz"),
            "--quantize", "int8", "--out", str(out), "--json", "--quiet", "--no-cache",
            "--set", "verify.timing_budget_s=0.05", *extra]  # fmt: skip
    code = main(argv)
    captured = capsys.readouterr()
    assert captured.out, f"{name}: no report (exit {code}): {captured.err}"
    return code, json.loads(captured.out), captured.err


@pytest.mark.parametrize("name", list(ZOO))
def test_user_model_runs_end_to_end_with_int8(name, zoo, tmp_path, capsys):
    out = tmp_path / "out"
    code, report, err = _run(zoo, name, out, capsys)
    v = report["verification"]
    # exit 0, or 1 only from a gate, each failure named in the report
    assert code == (1 if v["failures"] else 0), (code, v["failures"], err)
    for failure in v["failures"]:
        assert "exceeds max_" in failure or "speedup" in failure, failure
    assert v["tasks"] == ZOO[name][2]
    rows = {a["name"]: a for a in v["artifacts"]}
    skipped = {s["name"]: s["reason"] for s in report["skipped"]}
    for artifact in ("model_fp32.tflite", "model_fp32.onnx", "model_int8.tflite",
                     "model_int8.onnx"):  # fmt: skip
        assert (artifact in rows) != (artifact in skipped), (artifact, sorted(rows), skipped)
        if artifact in skipped:
            assert skipped[artifact].strip(), artifact
    # the fp32 exports compute what the Keras model does, head by head
    for artifact in ("model_fp32.tflite", "model_fp32.onnx"):
        for head, m in rows.get(artifact, {}).get("heads", {}).items():
            if m["task"] == "classify":
                assert m["agreement"] >= 99.0, (artifact, head, m)
            else:
                assert m["relative_error"] < 1e-3, (artifact, head, m)
    # int8 artifacts hold int8 weights, or say loudly that they do not pay (the converters
    # leave tensors under 1024 weights float in dynamic range: a tiny model's may all be)
    for artifact in ("model_int8.tflite", "model_int8.onnx"):
        if artifact in rows:
            dtypes = {t["dtype"] for t in (rows[artifact]["weights"] or {}).get("tensors", [])}
            warned = any(w.startswith(artifact) and ("is not smaller" in w or "holds no integer"
                         in w) for w in v["warnings"])  # fmt: skip
            assert dtypes & {"int8", "uint8"} or warned, (artifact, dtypes, v["warnings"])
            for head, m in rows[artifact]["heads"].items():
                assert m["task"] == ZOO[name][2][head]
                if m["task"] == "regress":
                    assert 0.0 <= m["relative_error"] < 0.5 and m["mean_abs_error"] >= 0
    # every candidate the recipe search could not build says why
    for a in v["artifacts"]:
        for c in a["recipe"].get("candidates", []):
            assert "p50_ms_b1" in c or c.get("error"), (a["name"], c)
    # nothing left behind: one complete run directory, no temporary one
    parent = out / name
    assert sorted(p.name for p in parent.iterdir()) == [report["run_id"]]
    assert (parent / report["run_id"] / "manifest.json").is_file()
    assert main(["verify-artifacts", str(parent / report["run_id"])]) == 0


def test_integer_inputs_stay_integers_in_every_runtime(zoo):
    """Token ids are fed as the integers they are: the TFLite and ONNX files take int32 ids."""
    from compress.backends import open_runner

    d = zoo
    out = d / "ids-out"
    code = main(["run", str(d / "embedding.keras"), "--data", str(d / "embedding.npz"),
                 "--quantize", "none", "--out", str(out), "--quiet", "--no-cache"])  # fmt: skip
    assert code == 0
    run_dir = next((out / "embedding").iterdir())
    ids = np.load(d / "embedding.npz")["x"][:5]
    keras_model = _tf.keras().models.load_model(run_dir / "model.keras", compile=False)
    expected = keras_model.predict(ids, verbose=0)
    for name, runtime in (("model_fp32.tflite", "litert"), ("model_fp32.onnx", "onnxruntime")):
        got = next(iter(open_runner(run_dir / name, runtime).predict(ids).values()))
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=name)
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(run_dir / "model_fp32.tflite"))
    assert interp.get_input_details()[0]["dtype"] == np.int32


def test_regress_task_is_overridable_per_head(zoo, tmp_path, capsys):
    """verify.task forces a head's task: the classifier head, given as one-hot rows (which
    alone would classify), verified numerically instead."""
    arrays = dict(np.load(zoo / "two_kinds.npz"))
    arrays["y_digit"] = np.eye(10, dtype=np.float32)[arrays["y_digit"]]
    np.savez(tmp_path / "two_kinds.npz", **arrays)
    (tmp_path / "two_kinds.keras").write_bytes((zoo / "two_kinds.keras").read_bytes())
    code, report, _ = _run(tmp_path, "two_kinds", tmp_path / "out", capsys, "--set",
                           'verify.task={digit = "regress"}')  # fmt: skip
    assert report["verification"]["tasks"] == {"digit": "regress", "ink": "regress"}
    row = next(a for a in report["verification"]["artifacts"] if a["name"] == "model_int8.onnx")
    assert "relative_error" in row["heads"]["digit"] and "accuracy" not in row["heads"]["digit"]
    assert code in (0, 1)


def test_a_numeric_gate_failure_names_max_error(zoo, tmp_path, capsys):
    """--max-error 0: any difference at all from the float model fails the numeric head."""
    code, report, _ = _run(zoo, "regression", tmp_path / "out", capsys, "--max-error", "0")
    failures = report["verification"]["failures"]
    assert code == 1
    assert any("(value): relative error" in f and "exceeds max_error 0" in f for f in failures)


def test_converter_crash_skips_the_export_and_the_run_goes_on(zoo, tmp_path, capsys, monkeypatch):
    """A TFLite converter that dies with SIGSEGV (injected in the worker at its conversion
    step) costs the TFLite files, not the run: ONNX is still built and verified."""
    monkeypatch.setenv("COMPRESS_FAULT_INJECT", "TFLite converter: conversion")
    out = tmp_path / "out"
    code, report, _ = _run(zoo, "regression", out, capsys)
    assert code == 0, report["verification"]["failures"]
    skipped = {s["name"]: s["reason"] for s in report["skipped"]}
    assert "TFLite converter crashed (SIGSEGV) during conversion" in skipped["model_fp32.tflite"]
    names = {a["name"] for a in report["verification"]["artifacts"]}
    assert {"model_fp32.onnx", "model_int8.onnx"} <= names
    assert not names & {"model_fp32.tflite", "model_int8.tflite"}
    assert [p.name for p in (out / "regression").iterdir()] == [report["run_id"]]


def test_worker_crash_is_reported_with_its_signal_and_the_worker_restarts(tmp_path):
    import ctypes
    import tempfile

    from compress.backends.worker import Worker, WorkerCrashed
    from compress.core.fileio import shared_temp

    log = tmp_path / "log.txt"
    with Worker(log=log) as worker:
        assert worker.call(os.getpid) != os.getpid()  # a separate process
        # its temp files (a converter's SavedModel) go to its own directory, shared ones not
        made = Path(worker.call(tempfile.mkdtemp))
        assert made.is_dir() and made.parent.name.startswith("compress-worker-tmp-")
        assert worker.call(shared_temp) == Path(tempfile.gettempdir())
        with pytest.raises(WorkerCrashed) as crash:
            worker.call(ctypes.string_at, 0)  # reads address 0: SIGSEGV
        assert crash.value.exitcode == -11
        assert "crashed (SIGSEGV)" in str(crash.value)
        assert "Fatal Python error: Segmentation fault" in str(crash.value)  # from the log
        assert not made.parent.exists()  # the crashed worker left no files behind
        assert worker.call(sum, [1, 2, 3]) == 6  # a fresh worker takes the next call
        with pytest.raises(ZeroDivisionError):
            worker.call(divmod, 1, 0)  # an ordinary exception comes back as itself
        later = Path(worker.call(tempfile.mkdtemp))
        assert later.is_dir() and later.parent != made.parent
    assert not later.parent.exists()  # nor did the one that was stopped


def test_an_op_outside_tflite_builtins_skips_tflite_naming_the_op_and_layer(tmp_path, capsys):
    """tf.linalg.det (MatrixDeterminant) has no TFLite builtin: compress converts to builtins
    only (a Flex op would fail in the LiteRT interpreter), so the TFLite files are skipped with
    one line naming the op and the layer; ONNX is made and verified."""
    keras, tf = _tf.keras(), _tf.tf()
    keras.utils.set_random_seed(0)
    i = keras.Input((64,), name="pixels")
    h = keras.layers.Reshape((10, 2, 2))(keras.layers.Dense(40, name="proj")(i))
    model = keras.Model(i, keras.layers.Softmax(name="digit")(tf.linalg.det(h)))
    model.save(tmp_path / "det.keras")
    images, _, y = _digits()
    np.savez(tmp_path / "det.npz", x=images.reshape(-1, 64), y=y)
    argv = ["run", str(tmp_path / "det.keras"), "--data", str(tmp_path / "det.npz"),
            "--quantize", "none", "--out", str(tmp_path / "out"), "--json", "--quiet",
            "--set", "verify.timing_budget_s=0.01"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    (skip,) = [s for s in report["skipped"] if s["name"] == "model_fp32.tflite"]
    assert "MatrixDeterminant (layer 'tf.linalg.det')" in skip["reason"], skip
    assert "Flex (Select TF) ops" in skip["reason"] and "\n" not in skip["reason"]
    names = {a["name"] for a in report["verification"]["artifacts"]}
    assert "model_fp32.onnx" in names and not any(n.endswith(".tflite") for n in names)
