"""Recipes that share work (one calibration, one pre-processed graph) give the same artifacts
as building each recipe from scratch."""

from __future__ import annotations

import numpy as np

from compress.backends import BACKENDS, Sources
from compress.backends.litert import convert
from compress.keras import _tf


def _small_model():
    keras = _tf.keras()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16,), name="x")
    hidden = keras.layers.Dense(32, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(4, activation="softmax", name="y")(hidden))


def test_shared_calibration_gives_the_converters_int8(tmp_path):
    model = _small_model()
    x = np.random.default_rng(0).random((64, 16), dtype=np.float32)
    litert = BACKENDS["litert"]
    src = Sources(model, x)
    for spec in litert.candidates("int8"):
        shared = tmp_path / f"{spec.id}.tflite"
        litert.build(spec, src, shared)
        alone = tmp_path / f"{spec.id}-alone.tflite"
        alone.write_bytes(convert(model, spec.knobs, x))
        a = litert.open_runner(shared).predict(x)["y"]
        b = litert.open_runner(alone).predict(x)["y"]
        np.testing.assert_array_equal(a, b)
        assert shared.stat().st_size == alone.stat().st_size
    assert "calibrated" in src.memo  # calibrated once, for both candidates


def test_shared_preprocessing_gives_the_same_onnx(tmp_path):
    model = _small_model()
    x = np.random.default_rng(0).random((64, 16), dtype=np.float32)
    ort = BACKENDS["onnxruntime"]
    fp32 = ort.make(tmp_path, ort.recipe("fp32"), Sources(model))
    shared = Sources(model, x, fp32)
    for spec in ort.candidates("int8"):
        ort.build(spec, shared, tmp_path / f"{spec.id}.onnx")
        ort.build(spec, Sources(model, x, fp32), tmp_path / f"{spec.id}-alone.onnx")
        a = ort.open_runner(tmp_path / f"{spec.id}.onnx").predict(x)["y"]
        b = ort.open_runner(tmp_path / f"{spec.id}-alone.onnx").predict(x)["y"]
        np.testing.assert_array_equal(a, b)
    assert "preprocessed" in shared.memo


def test_one_export_per_model_and_weights_serves_every_conversion(tmp_path):
    """TFLite conversions of one model share one SavedModel export; weights changed after a
    conversion (a model trained further) get a fresh one, never the stale file."""
    from compress.backends import litert

    model = _small_model()
    x = np.random.default_rng(0).random((8, 16), dtype=np.float32)

    def tflite_outputs(blob: bytes) -> np.ndarray:
        path = tmp_path / "m.tflite"
        path.write_bytes(blob)
        return litert.LiteRTBackend().open_runner(path).predict(x)["y"]

    first = convert(model, {})
    convert(model, {"optimize": True})
    assert len(litert._EXPORTS[model]) == 1  # the dynamic-range conversion reused the export
    np.testing.assert_allclose(tflite_outputs(first), model.predict(x, verbose=0), atol=1e-5)
    kernel = model.layers[1].kernel
    kernel.assign(kernel.numpy() * -1.0)  # "trained further"
    again = convert(model, {})
    assert len(litert._EXPORTS[model]) == 2
    np.testing.assert_allclose(tflite_outputs(again), model.predict(x, verbose=0), atol=1e-5)
    assert not np.allclose(tflite_outputs(again), tflite_outputs(first), atol=1e-3)
