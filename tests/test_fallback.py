"""The drift fallback on a model made sensitive on purpose: one hidden unit's incoming weights
are scaled up 1000x and its outgoing weights down 1000x. In float the model is unchanged; in
int8 the hidden activation's per-tensor scale is set by that one unit, so the other 31 units
quantize to almost nothing and accuracy collapses. Keeping the sensitive layers float fixes it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from compress.cli import main
from compress.keras import _tf


@pytest.fixture(scope="module")
def sensitive(tmp_path_factory):
    from sklearn.datasets import load_digits

    keras = _tf.keras()
    keras.utils.set_random_seed(0)
    raw = load_digits()
    x, y = (raw.data / 16.0).astype(np.float32), raw.target
    inputs = keras.Input((64,), name="pixels")
    hidden = keras.layers.Dense(32, activation="relu", name="hidden")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="digit")(hidden))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    w1, b1 = model.get_layer("hidden").get_weights()
    w2, b2 = model.get_layer("digit").get_weights()
    unit = int(np.argmax(np.abs(w2).sum(axis=1)))  # a unit the output relies on
    w1[:, unit] *= 1000.0
    b1[unit] *= 1000.0
    w2[unit, :] /= 1000.0
    model.get_layer("hidden").set_weights([w1, b1])
    model.get_layer("digit").set_weights([w2, b2])
    d = tmp_path_factory.mktemp("sensitive")
    model.save(d / "sensitive.keras")
    np.savez(d / "digits.npz", x=x, y=y)
    return d


def _run(d, out, capsys, *extra):
    # the default (first) recipe of each runtime, so the test does not depend on the search
    code = main(["run", str(d / "sensitive.keras"), "--data", str(d / "digits.npz"),
                 "--set", "quantize.select=false", "--set", "verify.timing_budget_s=0.01",
                 "--out", str(out), "--json", "--quiet", *extra])  # fmt: skip
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def test_without_fallback_int8_breaks_the_drift_gate(sensitive, tmp_path, capsys):
    code, report, _ = _run(sensitive, tmp_path, capsys, "--set", "quantize.fallback=false")
    assert code == 1
    failing = {f.split(" ")[0] for f in report["verification"]["failures"]}
    assert "model_int8.tflite" in failing, report["verification"]["failures"]


def test_fallback_keeps_the_sensitive_layers_float_until_the_drift_fits(
    sensitive, tmp_path, capsys
):
    code, report, err = _run(sensitive, tmp_path, capsys)
    rows = {a["name"]: a for a in report["verification"]["artifacts"]}
    tflite = rows["model_int8.tflite"]
    fallback = tflite["recipe"]["fallback"]
    assert fallback["drift_before"] > 1.0 >= fallback["drift_after"], fallback
    assert fallback["kept_float"] and len(fallback["steps"]) >= 1
    assert tflite["recipe"]["knobs"]["denylisted_nodes"] == fallback["kept_float"]
    # what verify measured on the held-out split agrees: the gate passes
    assert tflite["heads"]["digit"]["drift"] <= 1.0
    assert code == 0, report["verification"]["failures"]
    # per-layer errors of the corrected artifact, worst first, in the report
    layers = tflite["layer_errors"]["layers"]
    assert layers and layers == sorted(layers, key=lambda r: r["sqnr_db"])
    md = (tmp_path / "sensitive" / report["run_id"] / "report.md").read_text()
    assert "fallback model_int8.tflite: drift" in md and "layers model_int8.tflite:" in md


def test_onnx_fallback_keeps_the_quantizers_own_nodes_float(sensitive, tmp_path, capsys):
    """onnxruntime's quantizer names nodes after its pre-processing (MatMul + Add -> Gemm), not
    as the quantized file does: the fallback names layers by tensor, resolved to the nodes that
    hold their weights, so keeping a layer float changes the file and its drift."""
    code, report, _ = _run(sensitive, tmp_path, capsys)
    onnx_row = next(a for a in report["verification"]["artifacts"]
                    if a["name"] == "model_int8.onnx")  # fmt: skip
    fallback = onnx_row["recipe"]["fallback"]
    assert fallback["drift_before"] > 1.0 >= fallback["drift_after"], fallback
    assert onnx_row["recipe"]["knobs"]["keep_float"] == fallback["kept_float"]
    assert onnx_row["heads"]["digit"]["drift"] <= 1.0
    assert code == 0, report["verification"]["failures"]
