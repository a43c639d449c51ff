"""The user's own .keras model with .npz data, end to end, held to the shipped drift gate.
(Refused models and bad data files: test_bad_inputs.py.)"""

from __future__ import annotations

import json

import numpy as np
import pytest

from compress.cli import main
from compress.keras import _tf


@pytest.fixture(scope="module")
def digits8():
    from sklearn.datasets import load_digits

    raw = load_digits()
    return (raw.images / 16.0).astype(np.float32)[..., None], raw.target


@pytest.fixture(scope="module")
def user_files(tmp_path_factory, digits8):
    """A small conv net the project never saw (8x8x1 input, output `label`), and its data."""
    keras = _tf.keras()
    tmp = tmp_path_factory.mktemp("user")
    inputs = keras.Input((8, 8, 1), name="pixels")
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(32, activation="relu")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="label")(x)
    model = keras.Model(inputs, outputs)
    model.save(tmp / "mine.keras")
    x, y = digits8
    np.savez(tmp / "data.npz", x=x, y=y)
    return tmp


def test_user_model_runs_end_to_end(user_files, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["run", str(user_files / "mine.keras"), "--data", str(user_files / "data.npz"),
                 "--epochs", "3", "--out", str(out), "--json", "--quiet"])  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report["verification"]["failures"]
    assert report["model"] == "mine"
    names = {a["name"] for a in report["verification"]["artifacts"]}
    assert {"model_int8.tflite", "model_int8.onnx", "model_fp32.onnx"} <= names
    assert report["data"]["test_samples"] == 359
    # 3 epochs reach 88.9% held out (chance 10%): a broken training or data path falls far below
    assert report["verification"]["reference_accuracy"]["label"] > 80.0
    assert (out / "mine" / report["run_id"] / "manifest.json").is_file()


def test_multi_input_multi_output_user_model(tmp_path, digits8, capsys):
    """Two named inputs, two named heads: data keyed by name, every artifact verified per head."""
    keras = _tf.keras()
    image = keras.Input((8, 8, 1), name="image")
    rowsum = keras.Input((8,), name="rowsum")
    x = keras.layers.Concatenate()([keras.layers.Flatten()(image), rowsum])
    x = keras.layers.Dense(32, activation="relu")(x)
    digit = keras.layers.Dense(10, activation="softmax", name="digit")(x)
    parity = keras.layers.Dense(2, activation="softmax", name="parity")(x)
    keras.Model([image, rowsum], [digit, parity]).save(tmp_path / "two.keras")
    x8, y = digits8
    np.savez(tmp_path / "two.npz", x_image=x8, x_rowsum=x8[..., 0].sum(axis=2) / 8,
             y_digit=y, y_parity=y % 2)  # fmt: skip
    code = main(["run", str(tmp_path / "two.keras"), "--data", str(tmp_path / "two.npz"),
                 "--epochs", "3", "--out", str(tmp_path / "out"),
                 "--json", "--quiet"])  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report["verification"]["failures"]  # the shipped 1-point drift gate
    rows = {a["name"]: a for a in report["verification"]["artifacts"]}
    assert {"model_fp32.tflite", "model_int8.tflite", "model_fp32.onnx", "model_int8.onnx"} <= set(
        rows
    )
    for name in ("model_fp32.tflite", "model_fp32.onnx"):
        assert set(rows[name]["heads"]) == {"digit", "parity"}
        for m in rows[name]["heads"].values():
            assert m["agreement"] == 100.0
    # 3 epochs reach 78% (digit, chance 10%) and 87% (parity, chance 50%)
    assert rows["model.keras"]["heads"]["digit"]["accuracy"] > 70.0
    assert rows["model.keras"]["heads"]["parity"]["accuracy"] > 80.0
    for name in ("model_int8.tflite", "model_int8.onnx"):
        for head, m in rows[name]["heads"].items():
            assert m["drift"] <= 1.0 and m["agreement"] >= 97.0, (name, head, m)


def test_a_keras_applications_layer_tf_keras_does_not_register_loads(tmp_path):
    """ConvNeXt's LayerScale is Keras's own class, unregistered: tf_keras alone cannot load a
    ConvNeXt file (`'str' object is not callable`); compress finds it in tf_keras's package."""
    import numpy as np

    from compress.keras import _tf
    from compress.keras.model_io import load_keras_model

    keras = _tf.keras()
    from tf_keras.src.applications.convnext import LayerScale

    i = keras.Input((8,))
    model = keras.Model(i, LayerScale(0.5, 4, name="scale")(keras.layers.Dense(4)(i)))
    model.save(tmp_path / "m.keras")
    loaded, original = load_keras_model(tmp_path / "m.keras")
    x = np.random.default_rng(0).random((3, 8), dtype=np.float32)
    assert original is None and type(loaded.get_layer("scale")).__name__ == "LayerScale"
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
