"""SavedModels without Keras metadata (Keras 3's `model.export`, any TensorFlow SavedModel with a
serving signature) run the post-training path, verified against the signature's own outputs;
hostile or broken ones, and stages that need Keras layers, are refused in one line, exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from compress.cli import main
from compress.keras import _tf, keras3, signature
from compress.runs.cache import input_fingerprint


def _module(tf, kind: str):
    class Plain(tf.Module):
        def __init__(self):
            self.w = tf.Variable(tf.random.stateless_normal((64, 10), seed=(1, 2)))
            self.v = tf.Variable(tf.random.stateless_normal((3, 1), seed=(3, 4)))

        specs = [tf.TensorSpec([None, 64], tf.float32, name="pixels"),
                 tf.TensorSpec([None, 3], tf.float32, name="meta")]  # fmt: skip

        @tf.function(input_signature=specs)
        def serve(self, pixels, meta):
            if kind == "reads_file":  # reaches outside the graph: must be refused
                pixels += tf.cast(tf.strings.length(tf.io.read_file("/etc/hostname")), tf.float32)
            return {"digit": tf.nn.softmax(pixels @ self.w), "score": meta @ self.v}

    return Plain()


def _save(tmp_path, kind: str = "plain"):
    tf = _tf.tf()
    module = _module(tf, kind)
    path = tmp_path / f"{kind}_sm"
    signatures = {"predict" if kind == "no_signature" else "serving_default": module.serve}
    tf.saved_model.save(module, str(path), signatures=signatures)
    return module, path


def _data(tmp_path, module):
    rng = np.random.default_rng(0)
    px, meta = rng.random((300, 64), dtype=np.float32), rng.random((300, 3), dtype=np.float32)
    out = module.serve(px, meta)
    np.savez(tmp_path / "plain.npz", x_pixels=px, x_meta=meta,
             y_digit=out["digit"].numpy().argmax(1), y_score=out["score"].numpy())  # fmt: skip
    return tmp_path / "plain.npz", px, meta


def test_a_signature_becomes_a_model_with_its_names_and_outputs(tmp_path):
    from compress.backends.keras import KerasRunner

    module, path = _save(tmp_path)
    model = signature.load(path)
    assert model.input_names == ["meta", "pixels"] and model.output_names == ["digit", "score"]
    assert signature.directory(model) == str(path.resolve())
    assert len(model.get_weights()) == 2  # the signature's variables are the model's weights
    _, px, meta = _data(tmp_path, module)
    got = KerasRunner(model).predict({"pixels": px[:40], "meta": meta[:40]})
    want = module.serve(px[:40], meta[:40])
    for k in ("digit", "score"):
        np.testing.assert_allclose(got[k], want[k].numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("reads_file", r"signature runs op ReadFile \(node .*\): refused"),
        ("no_signature", r"has no 'serving_default' signature \(found: predict\)"),
        ("corrupt", r"saved_model.pb is not a readable SavedModel"),
    ],
)
def test_bad_savedmodels_are_one_line_exit_2(kind, expected, tmp_path, capsys):
    _, path = _save(tmp_path, "plain" if kind == "corrupt" else kind)
    if kind == "corrupt":
        (path / "saved_model.pb").write_bytes(b"\x0a\xff\xff not a protobuf")
    np.savez(tmp_path / "d.npz", x_pixels=np.zeros((4, 64)), x_meta=np.zeros((4, 3)))
    out = tmp_path / "out"
    code = main(["run", str(path), "--data", str(tmp_path / "d.npz"), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert path.name in err[0]
    import re

    assert re.search(expected, err[0]), err[0]
    assert not out.exists()  # refused before any work: nothing written


@pytest.mark.parametrize("flags", [["--prune", "0.5"], ["--cluster", "8"], ["--quantize", "qat"],
                                   ["--epochs", "2"]])  # fmt: skip
def test_stages_that_change_layers_refuse_a_savedmodel_in_one_line(flags, tmp_path, capsys):
    module, path = _save(tmp_path)
    data, _, _ = _data(tmp_path, module)
    out = tmp_path / "out"
    code = main(["run", str(path), "--data", str(data), "--out", str(out), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "needs a Keras model with its layers" in err[0] and path.name in err[0]
    assert not out.exists()


def test_a_savedmodel_is_fingerprinted_by_its_content(tmp_path):
    _, path = _save(tmp_path)
    before = input_fingerprint([str(path)])
    assert input_fingerprint([str(path)]) == before
    (path / "variables" / "variables.data-00000-of-00001").write_bytes(b"other weights")
    assert input_fingerprint([str(path)]) != before


@pytest.mark.slow
def test_a_savedmodel_runs_the_post_training_path(tmp_path, capsys):
    module, path = _save(tmp_path)
    data, _, _ = _data(tmp_path, module)
    argv = ["run", str(path), "--data", str(data), "--out", str(tmp_path / "out"), "--json",
            "--quiet", "--no-cache", "--set", "verify.timing_budget_s=0.05"]  # fmt: skip
    code = main(argv)
    report = json.loads(capsys.readouterr().out)
    v = report["verification"]
    assert code == (1 if v["failures"] else 0)
    assert report["stages"]["build"]["savedmodel"]["outputs"] == ["digit", "score"]
    rows = {a["name"]: a for a in v["artifacts"]}
    assert {"model_fp32.tflite", "model_fp32.onnx", "model_int8.tflite",
            "model_int8.onnx"} <= set(rows), (sorted(rows), report["skipped"])  # fmt: skip
    assert "model.keras" not in rows  # the user's SavedModel is the float model
    for name, row in rows.items():
        assert row["heads"]["digit"]["agreement"] >= (99.0 if "fp32" in name else 95.0), name
        assert row["heads"]["score"]["relative_error"] <= (1e-5 if "fp32" in name else 0.05)


@pytest.mark.slow
def test_keras3_exported_cnn_runs_int8_and_agrees_with_keras3(tmp_path, capsys):
    from ai_edge_litert.interpreter import Interpreter

    from tests.test_user_zoo import _digits

    keras = keras3.keras3()
    keras.utils.set_random_seed(0)
    L = keras.layers
    layers = [keras.Input((8, 8, 1)), L.Conv2D(8, 3, activation="relu"), L.MaxPooling2D(),
              L.Flatten(), L.Dense(10, activation="softmax")]  # fmt: skip
    model = keras.Sequential(layers)
    images, _, y = _digits()
    x = images.reshape(-1, 8, 8, 1)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, verbose=0)
    model.export(str(tmp_path / "cnn_export"))  # what Keras 3 users write for serving
    np.savez(tmp_path / "cnn.npz", x=x, y=y)
    capsys.readouterr()  # Keras's export prints what it wrote
    argv = ["run", str(tmp_path / "cnn_export"), "--data", str(tmp_path / "cnn.npz"),
            "--quantize", "int8", "--out", str(tmp_path / "out"), "--json", "--quiet",
            "--no-cache", "--set", "verify.timing_budget_s=0.05"]  # fmt: skip
    code = main(argv)
    report = json.loads(capsys.readouterr().out)
    v = report["verification"]
    assert code == (1 if v["failures"] else 0), v["failures"]
    rows = {a["name"]: a for a in v["artifacts"]}
    assert {"model_fp32.tflite", "model_fp32.onnx", "model_int8.tflite",
            "model_int8.onnx"} <= set(rows), (sorted(rows), report["skipped"])  # fmt: skip
    for name, row in rows.items():
        (head,) = row["heads"].values()
        assert head["agreement"] >= (99.0 if "fp32" in name else 90.0), name
    run_dir = tmp_path / "out" / "cnn_export" / report["run_id"]
    runner = Interpreter(str(run_dir / "model_int8.tflite")).get_signature_runner()
    (out,) = runner(**{runner.get_input_details().popitem()[0]: x[:100]}).values()
    assert (out.argmax(1) == model.predict(x[:100], verbose=0).argmax(1)).mean() >= 0.95


def test_tune_searches_only_post_training_modes_of_a_savedmodel(tmp_path):
    from compress.tune.space import DEFAULT_SPACE, is_signature, post_training, space_points

    _, path = _save(tmp_path)
    assert is_signature(str(path)) and not is_signature(str(tmp_path / "missing.keras"))
    points = space_points(post_training(dict(DEFAULT_SPACE)))
    assert {(p["prune"], p["cluster"], p["qat"]) for p in points} == {(None, None, False)}
    assert sorted(p["quantize"] for p in points) == sorted(DEFAULT_SPACE["quantize"])
