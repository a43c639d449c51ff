"""The user's own .keras model with .npz data: end to end, safe loading, and data checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from compress import _tf
from compress.cli import main


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
    assert report["verification"]["reference_accuracy"]["label"] > 30.0
    assert (out / "mine" / report["run_id"] / "manifest.json").is_file()


def test_lambda_model_is_refused_and_its_code_never_runs(tmp_path, digits8, capsys):
    keras = _tf.keras()
    marker = tmp_path / "marker"

    def touch(x, path=str(marker)):
        open(path, "w").close()
        return x

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Lambda(touch)(inputs)
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(x))
    keras.Model(inputs, outputs).save(tmp_path / "lambda.keras")
    marker.unlink()  # building the model ran the function once, here in the test
    np.savez(tmp_path / "d.npz", x=digits8[0][:50], y=digits8[1][:50])
    code = main(["run", str(tmp_path / "lambda.keras"), "--data", str(tmp_path / "d.npz"),
                 "--out", str(tmp_path / "out"), "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "holds a Lambda layer" in err
    assert not marker.exists()
    assert not (tmp_path / "out").exists()  # refused before any work


def _bad(tmp_path, **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda x, y: {"inputs": x, "targets": y}, "must hold x_train, y_train, x_test, y_test"),
        (lambda x, y: {"x": x[:, :4], "y": y}, "x has shape (1797, 4, 8, 1), the model expects"),
        (lambda x, y: {"x": x, "y": y + 5}, "labels in [5, 14], but output 'label' has 10"),
        (lambda x, y: {"x": np.where(x > 0.5, np.nan, x), "y": y}, "x contains NaN or Inf"),
        (lambda x, y: {"x": x, "y": y[:10]}, "labels for 'label' have 10 rows but x has 1797"),
        (lambda x, y: {"x": x, "y": y.astype(np.float32) + 0.5}, "must be integer class labels"),
        (lambda x, y: {"x": x.astype(str), "y": y}, "x must be numeric"),
        (lambda x, y: {"x_train": x[:0], "y_train": y[:0], "x_test": x, "y_test": y},
         "x_train is empty"),
    ],
)  # fmt: skip
def test_bad_data_is_one_line_naming_the_array(
    user_files, tmp_path, digits8, make, message, capsys
):
    path = _bad(tmp_path, **make(*digits8))
    code = main(["run", str(user_files / "mine.keras"), "--data", str(path),
                 "--out", str(tmp_path / "out"), "--quiet", "--no-cache"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and message in err, err
    assert list((tmp_path / "out" / "mine").iterdir()) == []


def test_pickled_data_is_refused(user_files, tmp_path, capsys):
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.array([object()] * 3, dtype=object), y=np.arange(3))
    code = main(["run", str(user_files / "mine.keras"), "--data", str(path),
                 "--out", str(tmp_path / "out"), "--quiet"])  # fmt: skip
    assert code == 2
    assert "pickle is refused" in capsys.readouterr().err


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
                 "--epochs", "3", "--out", str(tmp_path / "out"), "--max-drift", "100",
                 "--json", "--quiet"])  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    rows = {a["name"]: a for a in report["verification"]["artifacts"]}
    assert {"model_fp32.tflite", "model_int8.tflite", "model_fp32.onnx", "model_int8.onnx"} <= set(
        rows
    )
    for name in ("model_fp32.tflite", "model_fp32.onnx"):
        assert set(rows[name]["heads"]) == {"digit", "parity"}
        for m in rows[name]["heads"].values():
            assert m["agreement"] == 100.0
    assert rows["model.keras"]["heads"]["parity"]["accuracy"] > 60.0
