"""Keras 3 models in, as users on TensorFlow >= 2.16 save them (`import keras`): the zoo of
test_user_zoo built with Keras 3, its translation to tf_keras proven exact, runs through every
stage, and the run's model files load in Keras 3 again. Bad Keras 3 files: one line, exit 2."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from compress.cli import main
from compress.keras import _tf, keras3
from tests.test_user_zoo import ZOO, _digits, _inputs, _targets


def _keras3_model(name: str):
    keras = keras3.keras3()
    keras.utils.set_random_seed(0)
    return keras, ZOO[name][0](keras.layers, keras)


def _x(name: str, model, n: int = 64):
    images, ids, _ = _digits()
    inputs = _inputs(ZOO[name][1], images[:n], ids[:n])
    if len(inputs) == 1:
        return inputs["x"]
    return {t.name: inputs[f"x_{t.name}"] for t in model.inputs}


@pytest.mark.parametrize("name", list(ZOO))
def test_keras3_translation_is_exact_and_goes_back(name):
    keras, model = _keras3_model(name)
    twin = keras3.to_tf_keras(model)
    assert isinstance(twin, _tf.keras().Model)
    x = _x(name, model)
    assert keras3.max_difference(model, twin, x) <= keras3.TOLERANCE
    # the twin's weights are the model's, layer by layer (not re-initialised)
    for layer in model.layers:
        for a, b in zip(layer.get_weights(), twin.get_layer(layer.name).get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    # back to Keras 3 with changed weights: the user's architecture, the new values
    for w in twin.weights:
        if "kernel" in w.name:
            w.assign(w.numpy() * 0.5)
    back = keras3.to_keras3(twin)
    assert type(back).__module__.startswith("keras.")
    assert keras3.max_difference(back, twin, x) <= keras3.TOLERANCE


def test_keras3_ops_become_tensorflow_ops():
    keras = keras3.keras3()
    ops = keras.ops
    i = keras.Input((6, 8), name="seq")
    y = ops.mean(i * 2.0 + 1.0, axis=1)
    z = ops.concatenate([y, i[:, 0, :]], axis=-1)
    t = ops.reshape(ops.transpose(i, (0, 2, 1)), (-1, 48))
    model = keras.Model(i, [z, t])
    x = np.random.default_rng(0).random((5, 6, 8), dtype=np.float32)
    twin = keras3.to_tf_keras(model)
    assert keras3.max_difference(model, twin, x) <= keras3.TOLERANCE
    assert "TFOpLambda" in {type(layer).__name__ for layer in twin.layers}


def test_a_keras3_layer_without_counterpart_is_named():
    keras = keras3.keras3()
    i = keras.Input((8,))
    model = keras.Model(i, keras.layers.RMSNormalization(name="rms")(i))
    with pytest.raises(keras3.TranslationError, match="'rms'.*RMSNormalization"):
        keras3.to_tf_keras(model)


def _save_bad(tmp_path, kind: str):
    keras = keras3.keras3()
    i = keras.Input((64,), name="pixels")
    if kind == "lambda":
        model = keras.Model(i, keras.layers.Dense(10)(keras.layers.Lambda(lambda t: t * 2)(i)))
    elif kind == "custom":

        @keras.saving.register_keras_serializable(package="userpkg")
        class Scale(keras.layers.Layer):
            def call(self, t):
                return t * 2

        model = keras.Model(i, keras.layers.Dense(10)(Scale()(i)))
    else:
        model = keras.Model(i, keras.layers.Dense(10)(i))
    path = tmp_path / f"{kind}.keras"
    model.save(path)
    if kind == "corrupt":  # the weights member truncated: the archive itself is damaged
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    if kind == "lookalike":  # a class from a module whose name only starts like Keras's
        with zipfile.ZipFile(path) as zf:
            members = {n: zf.read(n) for n in zf.namelist()}
        config = json.loads(members["config.json"])
        config["config"]["layers"][-1]["module"] = "kerasx.layers"
        members["config.json"] = json.dumps(config).encode()
        with zipfile.ZipFile(path, "w") as zf:
            for n, b in members.items():
                zf.writestr(n, b)
    if kind == "no_weights":  # a valid archive whose weights file is missing
        with zipfile.ZipFile(path) as zf:
            members = {n: zf.read(n) for n in zf.namelist() if not n.endswith(".h5")}
        with zipfile.ZipFile(path, "w") as zf:
            for n, b in members.items():
                zf.writestr(n, b)
    return path


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("lambda", "Lambda layer"),
        ("custom", "registered as 'userpkg>Scale'"),
        ("lookalike", "from module 'kerasx.layers', which compress does not trust"),
        ("corrupt", "is not a Keras model"),
        ("no_weights", "cannot be loaded safely"),
    ],
)
def test_bad_keras3_files_are_one_line_exit_2(kind, expected, tmp_path, capsys):
    model = _save_bad(tmp_path, kind)
    images, _, y = _digits()
    np.savez(tmp_path / "d.npz", x=images.reshape(-1, 64)[:100], y=y[:100])
    out = tmp_path / "out"
    code = main(["run", str(model), "--data", str(tmp_path / "d.npz"), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    errors = [line for line in err if line.startswith("compress: error:")]
    assert len(errors) == 1 and expected in errors[0] and model.name in errors[0], err
    assert len(errors[0]) < 400 and "Traceback" not in "\n".join(err)
    assert not any(p.is_file() for p in out.rglob("*")) if out.exists() else True


# ---- end to end: trained Keras 3 models through the CLI ----------------------------------------


def _cnn(L, keras):
    return keras.Sequential([
        keras.Input((8, 8, 1)), L.Conv2D(8, 3, activation="relu"), L.BatchNormalization(),
        L.MaxPooling2D(), L.Flatten(), L.Dense(32, activation="relu"),
        L.Dense(10, activation="softmax"),
    ], name="cnn")  # fmt: skip


def _lstm(L, keras):
    i = keras.Input((8, 8), name="rows")
    return keras.Model(i, L.Dense(10, activation="softmax", name="digit")(L.LSTM(24)(i)))


E2E = {"cnn": (_cnn, "image"), "transformer": (ZOO["transformer"][0], "rows"),
       "lstm": (_lstm, "rows")}  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Each end-to-end model trained in Keras 3 for 2 epochs and saved as a user would."""
    keras = keras3.keras3()
    d = tmp_path_factory.mktemp("keras3")
    images, ids, y = _digits()
    for name, (builder, layout) in E2E.items():
        keras.utils.set_random_seed(0)
        model = builder(keras.layers, keras)
        x = _inputs(layout, images, ids)["x"]
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=2, verbose=0)
        model.save(d / f"{name}.keras")
        np.savez(d / f"{name}.npz", x=x, **_targets({"digit": "classify"}, images, y))
    return d


def _run(trained, name, out, capsys, *extra):
    argv = ["run", str(trained / f"{name}.keras"), "--data", str(trained / f"{name}.npz"),
            "--out", str(out), "--json", "--quiet", "--no-cache",
            "--set", "verify.timing_budget_s=0.05", *extra]  # fmt: skip
    code = main(argv)
    captured = capsys.readouterr()
    assert captured.out, f"{name}: no report (exit {code}): {captured.err}"
    report = json.loads(captured.out)
    return code, report, out / name / report["run_id"]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(E2E))
def test_keras3_model_runs_int8_and_every_artifact_agrees(name, trained, tmp_path, capsys):
    code, report, run_dir = _run(trained, name, tmp_path / "out", capsys, "--quantize", "int8")
    v = report["verification"]
    assert code == (1 if v["failures"] else 0), v["failures"]
    proof = report["stages"]["build"]["keras3"]
    assert proof["max_abs_difference"] <= proof["tolerance"] == keras3.TOLERANCE
    assert proof["keras_version"].startswith("3.")
    rows = {a["name"]: a for a in v["artifacts"]}
    assert {"model_fp32.tflite", "model_fp32.onnx", "model_int8.tflite",
            "model_int8.onnx"} <= set(rows), (sorted(rows), report["skipped"])  # fmt: skip
    for artifact in ("model_int8.tflite", "model_int8.onnx"):  # Keras 3's own int8, measured
        k3 = {c["id"]: c for c in rows[artifact]["recipe"]["candidates"]}["keras3-int8"]
        assert k3.get("error") or (k3["size_bytes"] > 0 and k3["agreement"] >= 0), k3
    for artifact, row in rows.items():
        (head,) = row["heads"].values()  # a Sequential names its head after its last layer
        agreement = head["agreement"]
        assert agreement >= (99.0 if "fp32" in artifact or artifact.endswith(".keras") else 90.0)
    # the run's model file is a Keras 3 file that Keras 3 loads, with the user's architecture
    keras = keras3.keras3()
    assert keras3.is_keras3_file(run_dir / "model.keras")
    loaded = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    original = keras.saving.load_model(trained / f"{name}.keras", safe_mode=True)
    assert [type(layer).__name__ for layer in loaded.layers] == [
        type(layer).__name__ for layer in original.layers
    ]
    if name == "cnn":  # independently of verify: the TFLite file against Keras 3's own outputs
        from ai_edge_litert.interpreter import Interpreter

        x = np.load(trained / "cnn.npz")["x"][:100]
        runner = Interpreter(str(run_dir / "model_fp32.tflite")).get_signature_runner()
        (out,) = runner(**{runner.get_input_details().popitem()[0]: x}).values()
        assert (out.argmax(1) == original.predict(x, verbose=0).argmax(1)).mean() >= 0.99


@pytest.mark.slow
def test_keras3_cnn_prunes_to_sparse_artifacts_saved_as_keras3(trained, tmp_path, capsys):
    code, report, run_dir = _run(trained, "cnn", tmp_path / "out", capsys,
                                 "--prune", "0.5", "--quantize", "int8")  # fmt: skip
    assert code in (0, 1), report["verification"]["failures"]
    rows = {a["name"]: a for a in report["verification"]["artifacts"]}
    for artifact in ("model_pruned.keras", "model_fp32.tflite", "model_fp32.onnx"):
        assert rows[artifact]["sparsity"] >= 0.4, (artifact, rows[artifact]["sparsity"])
    keras = keras3.keras3()
    pruned = keras.saving.load_model(run_dir / "model_pruned.keras", safe_mode=True)
    kernel = pruned.get_layer(index=-2).get_weights()[0]
    assert (kernel == 0).mean() >= 0.4


@pytest.mark.slow
def test_keras3_transformer_runs_qat(trained, tmp_path, capsys):
    code, report, _ = _run(trained, "transformer", tmp_path / "out", capsys, "--quantize", "qat")
    rows = {a["name"]: a for a in report["verification"]["artifacts"]}
    assert code in (0, 1) and {"model_qat.tflite", "model_qat.onnx"} & set(rows), rows.keys()
    for row in rows.values():
        assert row["heads"]["digit"]["agreement"] >= 80.0, row["name"]  # fine-tuned weights


@pytest.mark.slow
@pytest.mark.parametrize("flavor", ["keras3", "tf_keras"])
def test_a_model_in_memory_runs_without_files(flavor, tmp_path):
    import compress

    keras = keras3.keras3() if flavor == "keras3" else _tf.keras()
    keras.utils.set_random_seed(0)
    layers = [keras.Input((64,)), keras.layers.Dense(16, activation="relu"),
              keras.layers.Dense(10, activation="softmax")]  # fmt: skip
    model = keras.Sequential(layers, name="mlp")
    images, _, y = _digits()
    result = compress.run_model(model, (images.reshape(-1, 64), y),
                                {"verify.timing_budget_s": 0.05}, out=tmp_path)  # fmt: skip
    rows = {a["name"]: a for a in result.report["verification"]["artifacts"]}
    assert {"model_fp32.tflite", "model_int8.onnx"} <= set(rows)
    assert ("keras3" in result.report["stages"]["build"]) == (flavor == "keras3")
    assert [p.name for p in tmp_path.iterdir()] == ["mlp"]


def test_a_model_in_memory_with_misnamed_data_is_refused(tmp_path):
    import compress
    from compress.core.errors import UsageError

    with pytest.raises(UsageError, match=r"data keys \['labels'\]"):
        compress.run_model(object(), {"x": np.zeros((4, 64)), "labels": np.zeros(4)}, out=tmp_path)


def test_keras3_graphs_nested_shared_masked_and_dict_io_translate_exactly():
    keras, rng = keras3.keras3(), np.random.default_rng(0)
    L = keras.layers
    block = keras.Sequential([L.Dense(8, activation="relu"), L.Dense(8)], name="block")
    i, shared = keras.Input((8,), name="a"), L.Dense(8, name="shared")
    h = shared(block(i))
    nested = keras.Model(i, L.Dense(3, name="out")(shared(h) + h))  # a layer used twice
    a, b = keras.Input((4,), name="img"), keras.Input((3,), name="meta")
    h = L.Concatenate()([a, b])
    dicts = keras.Model({"img": a, "meta": b}, {"cls": L.Dense(2, name="cls")(h),
                                                "reg": L.Dense(1, name="reg")(h)})  # fmt: skip
    ids = keras.Input((10,), dtype="int32")
    masked = keras.Model(ids, L.Dense(2)(L.LSTM(8)(L.Embedding(20, 8, mask_zero=True)(ids))))
    tokens = rng.integers(1, 20, (6, 10)).astype(np.int32)
    tokens[:, 6:] = 0  # padding: the mask (a Keras 3 not_equal op node) must be honoured
    cases = [(nested, rng.random((6, 8), dtype=np.float32)), (masked, tokens),
             (dicts, {"img": rng.random((6, 4), dtype=np.float32),
                      "meta": rng.random((6, 3), dtype=np.float32)})]  # fmt: skip
    for model, x in cases:
        twin = keras3.to_tf_keras(model)
        assert keras3.max_difference(model, twin, x) <= keras3.TOLERANCE, model.name
        assert keras3.max_difference(keras3.to_keras3(twin), twin, x) <= keras3.TOLERANCE
    assert keras3.to_tf_keras(dicts).output_names == ["cls", "reg"]


def test_a_keras3_hdf5_file_is_read_as_keras3(tmp_path):
    from compress.keras.model_io import load_keras_model

    keras, model = _keras3_model("conv1d_bn")
    model.save(tmp_path / "m.h5")  # Keras 3's legacy format: keras_version 3.x in its attributes
    assert keras3.is_keras3_file(tmp_path / "m.h5")
    twin, original = load_keras_model(tmp_path / "m.h5")
    assert original is not None
    assert keras3.max_difference(original, twin, _x("conv1d_bn", model)) <= keras3.TOLERANCE


@pytest.fixture(scope="module")
def untranslatable(tmp_path_factory):
    """A Keras 3 model with a layer tf_keras lacks (RMSNormalization) and two list outputs whose
    names are not in sorted order, trained 2 epochs and saved as a user would."""
    keras = keras3.keras3()
    keras.utils.set_random_seed(0)
    L = keras.layers
    images, _, y = _digits()
    x = images.reshape(-1, 64)
    i = keras.Input((64,), name="pixels")
    h = L.RMSNormalization(name="rms")(L.Dense(32, activation="relu")(i))
    model = keras.Model(i, [L.Dense(10, activation="softmax", name="digit")(h),
                            L.Dense(2, activation="softmax", name="parity")(h)])  # fmt: skip
    model.compile("adam", ["sparse_categorical_crossentropy"] * 2)
    model.fit(x, [y, y % 2], epochs=2, verbose=0)
    d = tmp_path_factory.mktemp("untranslatable")
    model.save(d / "rmsnet.keras")
    np.savez(d / "rmsnet.npz", x=x, y_digit=y, y_parity=y % 2)
    return d


@pytest.mark.slow
def test_a_keras3_model_without_tf_keras_twin_runs_the_post_training_path(
    untranslatable, tmp_path, capsys
):
    """No tf_keras counterpart for one layer: the model runs as Keras 3's own SavedModel export,
    proven against the Keras 3 model, heads named as the model names its outputs; the
    artifacts agree with Keras 3's own predictions, read independently of compress."""
    code, report, run_dir = _run(untranslatable, "rmsnet", tmp_path / "out", capsys,
                                 "--quantize", "int8")  # fmt: skip
    build = report["stages"]["build"]
    assert build["keras3"]["translated_to"] == "its own SavedModel export"
    assert build["keras3"]["max_abs_difference"] <= keras3.TOLERANCE
    assert "layer 'rms'" in build["savedmodel"]["reason"]
    assert "RMSNormalization" in build["savedmodel"]["reason"]
    rows = {a["name"]: a for a in report["verification"]["artifacts"]}
    assert {"model_fp32.tflite", "model_fp32.onnx", "model_int8.tflite",
            "model_int8.onnx"} <= set(rows), (sorted(rows), report["skipped"])  # fmt: skip
    assert code == (1 if report["verification"]["failures"] else 0)
    for row in rows.values():
        assert set(row["heads"]) == {"digit", "parity"}
    keras = keras3.keras3()
    original = keras.saving.load_model(untranslatable / "rmsnet.keras", safe_mode=True)
    x = np.load(untranslatable / "rmsnet.npz")["x"][:200]
    digit, parity = original.predict(x, verbose=0)
    import onnxruntime as ort

    session = ort.InferenceSession(str(run_dir / "model_fp32.onnx"))
    names = [o.name for o in session.get_outputs()]
    outs = dict(zip(names, session.run(None, {session.get_inputs()[0].name: x}), strict=True))
    digit_onnx = next(v for k, v in outs.items() if "digit" in k)
    parity_onnx = next(v for k, v in outs.items() if "parity" in k)
    np.testing.assert_allclose(digit_onnx, digit, atol=1e-4)
    np.testing.assert_allclose(parity_onnx, parity, atol=1e-4)
    assert rows["model_int8.tflite"]["heads"]["digit"]["agreement"] >= 95.0
    assert rows["model_int8.onnx"]["heads"]["digit"]["agreement"] >= 95.0
    assert "run as its own SavedModel export" in (run_dir / "report.md").read_text()


@pytest.mark.parametrize("flag", [["--prune", "0.5"], ["--quantize", "qat"], ["--cluster", "8"]])
def test_a_stage_that_changes_layers_names_the_untranslatable_layer(
    flag, untranslatable, tmp_path, capsys
):
    argv = ["run", str(untranslatable / "rmsnet.keras"), "--data",
            str(untranslatable / "rmsnet.npz"), "--out", str(tmp_path / "out"), "--quiet",
            *flag]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    stage = {"--prune": "prune", "--quantize": "quantize", "--cluster": "cluster"}[flag[0]]
    assert f"stage '{stage}' needs a Keras model whose every layer has a tf_keras" in err
    assert "layer 'rms'" in err and "RMSNormalization" in err
    assert not any((tmp_path / "out").rglob("*.tflite"))


# ---- Keras 3's own quantizers as recipe rows ---------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["transformer", "embedding"])
def test_keras3_quantizers_are_recipe_rows_built_from_the_users_keras3_model(name, tmp_path):
    """`keras3-int8` / `keras3-int4` apply Keras 3's own `model.quantize` to the user's Keras 3
    architecture (with the twin's weights) and convert its export: the ONNX file computes what
    the quantized Keras 3 model computes and stores its int8 weights; the TFLite converter
    cannot take Keras 3's int8 Dense (one line naming the op and layer) but builds int4."""
    from compress.backends import BACKENDS, Sources
    from compress.backends.tflite import ConverterRefused

    keras, model = _keras3_model(name)
    x = _x(name, model)
    twin = keras3.to_tf_keras(model)
    ort, lite = BACKENDS["onnxruntime"], BACKENDS["litert"]
    src = Sources(model=twin, opset=17)
    for backend in (ort, lite):
        assert {"keras3-int8"} <= {s.id for s in backend.candidates("int8", src)}
        assert {"keras3-int4"} <= {s.id for s in backend.candidates("auto", src)}
    # rows that need a Keras 3 model are not candidates for a tf_keras one
    plain = Sources(model=_tf.keras().models.clone_model(twin))
    assert not any(s.id.startswith("keras3") for s in ort.candidates("auto", plain))
    # int4's defaults are ai-edge-quantizer's block-32 file and MatMulNBits with int8 compute;
    # Keras 3's int4 is a measured candidate (TFLite: only under auto, it stores int4 unpacked)
    assert lite.default("int4", src).id == "aeq-dynamic-int4-block32"
    assert ort.default("int4", src).id == "int4-int8-compute"
    int4_rows = {"int4-int8-compute", "int4-kquant-int8-compute", "weight-only-int4",
                 "keras3-int4"}  # fmt: skip
    # (and int4-gptq-int8-compute where PyTorch is installed: the gptq extra)
    assert {s.id for s in ort.candidates("int4", src)} - {"int4-gptq-int8-compute"} == int4_rows
    assert "keras3-int4" not in {s.id for s in lite.candidates("int4", src)}

    quantized = keras.models.clone_model(model)
    quantized.set_weights(model.get_weights())
    quantized.quantize("int8")
    expected = quantized.predict(x, verbose=0)
    path = tmp_path / "k3.onnx"
    ort.build(ort.recipe("keras3-int8"), src, path)
    (out,) = ort.open_runner(path).predict(x).values()
    assert np.abs(out - expected).max() < 1e-4
    assert np.abs(out - model.predict(x, verbose=0)).max() > 0  # quantized, not the float model
    dtypes = {t["dtype"] for t in ort.count_weights(path)["tensors"]}
    assert "int8" in dtypes, dtypes
    if name == "transformer":
        with pytest.raises(ConverterRefused, match=r"FULLY_CONNECTED for layer '\w+'") as err:
            lite.build(lite.recipe("keras3-int8"), src, tmp_path / "k3.tflite")
        assert "\n" not in str(err.value) and len(str(err.value)) < 300
        lite.build(lite.recipe("keras3-int4"), src, tmp_path / "k3_int4.tflite")
        (out4,) = lite.open_runner(tmp_path / "k3_int4.tflite").predict(x).values()
        quantized = keras.models.clone_model(model)
        quantized.set_weights(model.get_weights())
        quantized.quantize("int4")
        assert np.abs(out4 - quantized.predict(x, verbose=0)).max() < 1e-4


def test_keras3_applications_translate_exactly(tmp_path):
    """Keras 3's own model zoo translates exactly: MobileNetV3's `hard_silu` activation (tf_keras
    has none; its `hard_sigmoid` computes clip(0.2 x + 0.5) where Keras 3's is relu6(x + 3) / 6)
    and ConvNeXt's unregistered `LayerScale` (found in tf_keras's applications package)."""
    from compress.keras.model_io import load_keras_model

    keras = keras3.keras3()
    keras.utils.set_random_seed(0)
    from keras.src.applications.convnext import LayerScale

    i = keras.Input((8, 8, 3), name="image")
    h = keras.layers.Conv2D(4, 3, activation="hard_silu")(i)
    h = keras.layers.Activation("hard_sigmoid")(LayerScale(0.5, 4, name="scale")(h))
    small = keras.Model(i, keras.layers.Dense(3, activation="hard_swish")(h))
    mobile = keras.applications.MobileNetV3Small(
        input_shape=(32, 32, 3), weights=None, classes=10, include_preprocessing=False
    )
    twins = []
    for model, shape in ((small, (16, 8, 8, 3)), (mobile, (4, 32, 32, 3))):
        path = tmp_path / f"{model.name}.keras"
        model.save(path)
        twin, original = load_keras_model(path)
        assert original is not None and twin.get_layer(model.layers[-1].name) is not None
        x = np.random.default_rng(0).uniform(-4, 4, shape).astype("float32")
        assert keras3.max_difference(original, twin, x) <= keras3.TOLERANCE
        twins.append(twin)
    assert type(twins[1].layers[1]).__module__.startswith("tf_keras")
    # a model holding the translated activations and LayerScale is pruned like any other
    from compress.keras.layers import with_tfmot

    tk, prune = _tf.keras(), with_tfmot().sparsity.keras.prune_low_magnitude
    pruned = tk.models.clone_model(
        twins[0], clone_function=lambda la: prune(la) if isinstance(la, tk.layers.Dense) else la
    )
    assert pruned.count_params() > twins[0].count_params()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "flags"),
    [("cnn", ["--cluster", "8", "--quantize", "qat"]),
     ("lstm", ["--prune", "0.5", "--cluster", "8", "--quantize", "int8"])],
)  # fmt: skip
def test_keras3_models_are_clustered_pruned_and_quantization_aware_trained(
    name, flags, trained, tmp_path, capsys
):
    """Clustering on two Keras 3 models (with QAT on the CNN, pruning on the LSTM): the clustered
    weights reach the artifacts, and the run's clustered model file is Keras 3 and keeps them."""
    epochs = ["--set", "cluster.epochs=1", *(["--set", "prune.epochs=1"] if "--prune" in flags
                                              else [])]  # fmt: skip
    code, report, run_dir = _run(trained, name, tmp_path / "out", capsys, "--max-drift", "100",
                                 *epochs, *flags)  # fmt: skip
    assert code == 0, report["verification"]["failures"]
    stages = report["stages"]
    clustered = stages["cluster"]["unique_values"]
    assert clustered and max(clustered.values()) <= 8 + 1, clustered  # + a preserved zero
    if "--prune" in flags:
        assert min(stages["prune"]["layers"].values()) >= 0.45, stages["prune"]
    rows = {a["name"]: a for a in report["verification"]["artifacts"]}
    mode = flags[-1]
    assert {f"model_{mode}.tflite", f"model_{mode}.onnx"} <= set(rows), sorted(rows)
    keras = keras3.keras3()
    path = run_dir / "model_clustered.keras"
    assert keras3.is_keras3_file(path)
    model = keras.saving.load_model(path, safe_mode=True)
    layer = next(iter(clustered))
    kernel = model.get_layer(layer).get_weights()[0]
    assert len(np.unique(kernel)) <= 8 + 1, layer
