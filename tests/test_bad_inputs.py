"""Bad input of every kind: CLI flags, pipeline files, model files, data files. Each must give
one line naming what is wrong, exit 2, and leave no run directory behind."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from compress.cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory, request):
    """Model and data files, good and bad, made once."""
    from compress.keras import _tf

    keras = _tf.keras()
    d = tmp_path_factory.mktemp("bad-inputs")
    from sklearn.datasets import load_digits

    raw = load_digits()
    x = (raw.images / 16.0).astype(np.float32)[..., None]
    y = raw.target
    inputs = keras.Input((8, 8, 1), name="pixels")
    h = keras.layers.Dense(16, activation="relu")(keras.layers.Flatten()(inputs))
    good = keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="label")(h))
    good.save(d / "good.keras")
    good.save(d / "good.h5")
    np.savez(d / "good.npz", x=x, y=y)

    marker = d / "lambda-ran"

    def touch(t, path=str(marker)):
        open(path, "w").close()
        return t

    lam_in = keras.Input((8, 8, 1))
    lam = keras.layers.Lambda(touch)(lam_in)
    lam_model = keras.Model(lam_in, keras.layers.Dense(10)(keras.layers.Flatten()(lam)))
    lam_model.save(d / "lambda.keras")
    lam_model.save(d / "lambda.h5")
    marker.unlink(missing_ok=True)  # building the model here ran it; loading must not

    # `x + x` is recorded as a TFOpLambda naming tf.__operators__.add; rewrite the name it
    # records into ones that must be refused
    op_in = keras.Input((8, 8, 1))
    doubled = keras.layers.Flatten()(op_in + op_in)
    keras.Model(op_in, keras.layers.Dense(10, activation="softmax")(doubled)).save(d / "op.keras")
    for name, symbol in (("unknown", "os.system"), ("io", "io.write_file"),
                         ("garbage", "import os; os.system")):  # fmt: skip
        with (
            zipfile.ZipFile(d / "op.keras") as src,
            zipfile.ZipFile(d / f"op-{name}.keras", "w") as dst,
        ):
            for item in src.infolist():
                data = src.read(item.filename)
                if item.filename == "config.json":
                    data = data.replace(b'"__operators__.add"', f'"{symbol}"'.encode())
                dst.writestr(item, data)

    (d / "random.keras").write_bytes(np.random.default_rng(0).bytes(4096))
    blob = (d / "good.keras").read_bytes()
    (d / "truncated.keras").write_bytes(blob[: len(blob) // 2])
    with zipfile.ZipFile(d / "traversal.keras", "w") as zf:
        zf.writestr("config.json", "{}")
        zf.writestr("../../evil.py", "print('pwned')")
    with zipfile.ZipFile(d / "bomb.keras", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.json", "{}")
        zf.writestr("weights.bin", b"\0" * (64 * 1024 * 1024))
    with zipfile.ZipFile(d / "custom.keras", "w") as zf:
        zf.writestr(
            "config.json",
            '{"class_name": "Functional", "config": {"layers": '
            '[{"class_name": "Evil", "module": "evil.layers", "config": {}}]}}',
        )
    (d / "model.tflite").write_bytes(b"\x1c\0\0\0TFL3" + b"\0" * 64)
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Relu", ["a"], ["b"])
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [1])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [1])
    graph = helper.make_graph([node], "g", [a], [b])
    onnx.save(helper.make_model(graph), d / "model.onnx")
    (d / "notes.keras").write_text("just some text")

    def npz(name, **arrays):
        np.savez(d / name, **arrays)

    npz("keys.npz", inputs=x, targets=y)
    npz("shape.npz", x=x[:, :4], y=y)
    npz("range.npz", x=x, y=y + 5)
    npz("nan.npz", x=np.where(x > 0.5, np.nan, x), y=y)
    npz("inf.npz", x=np.where(x > 0.5, np.inf, x), y=y)
    npz("rows.npz", x=x, y=y[:10])
    npz("floaty.npz", x=x, y=y + 0.5)
    npz("strings.npz", x=x.astype(str), y=y)
    npz("empty.npz", x_train=x[:0], y_train=y[:0], x_test=x, y_test=y)
    npz("calib.npz", x=x, y=y, x_calib=x[:0])
    npz("onehot.npz", x=x, y=np.eye(7)[y % 7])
    npz("negative.npz", x=x, y=y - 3)
    npz("notest.npz", x_train=x, y_train=y)
    np.savez(d / "object.npz", x=np.array([object()] * 3, dtype=object), y=np.arange(3))
    (d / "text.npz").write_text("not a zip")
    return d, marker


CLI = [
    (["run", "resnet"], "unknown model 'resnet'. Expected one of: cnn, rnn, attention"),
    (["run", "cnn", "--quantize", "int2"], "argument --quantize: invalid choice: 'int2'"),
    (["run", "cnn", "--epochs", "-1"], "--epochs (train.epochs) must be >= 0. Got -1"),
    (["run", "cnn", "--epochs", "two"], "argument --epochs: invalid int value: 'two'"),
    (
        ["run", "cnn", "--max-drift", "-0.5"],
        "--max-drift (verify.max_drift) must be >= 0.0. Got -0.5",
    ),
    (
        ["run", "cnn", "--max-drift", "nan"],
        "--max-drift (verify.max_drift) must be a finite number",
    ),
    (["run", "cnn", "--min-speedup", "0"], "--min-speedup (verify.min_speedup) must be > 0.0"),
    (["run", "cnn", "--threads", "0"], "--threads must be >= 1"),
    (["run", "cnn", "--seed", "-3"], "--seed must be >= 0. Got -3 instead."),
    (["run", "cnn", "--opset", "19"], "--opset (export_onnx.opset) must be <= 18"),
    (["run", "cnn", "--opset", "12"], "--opset (export_onnx.opset) must be >= 13"),
    (["run", "cnn", "--prune", "1.5"], "--prune (prune.sparsity) must be in [0, 1). Got 1.5"),
    (["run", "cnn", "--prune", "lots"], "argument --prune: expected a fraction like 0.8 or 2:4"),
    (["run", "cnn", "--cluster", "1"], "--cluster (cluster.clusters) must be >= 2"),
    (["run", "cnn", "--cluster", "300"], "--cluster (cluster.clusters) must be <= 256"),
    (["run", "cnn", "--set", "quantize.mode"], "--set expects KEY=VALUE"),
    (["run", "cnn", "--set", "distill.t=2"], "the pipeline has no stage 'distill'"),
    (["run", "cnn", "--set", "colour=red"], "--set colour: unknown key"),
    (["run", "cnn", "--set", "train.epochs=many"], "--set train.epochs must be an integer"),
    (["run", "cnn", "--set", "seed=-1"], "--set seed must be >= 0. Got -1 instead."),
    (["run", "cnn", "--set", "threads=0"], "--set threads must be >= 1. Got 0 instead."),
    (["run", "cnn", "--bogus"], "unrecognized arguments: --bogus"),
    (["run"], "the following arguments are required: TARGET"),
    (["run", "cnn", "--data", "x.npz"], "--data is for Keras model files"),
    (["run", "missing.keras", "--data", "x.npz"], "model file 'missing.keras' does not exist"),
    (["run", "missing.toml"], "pipeline file 'missing.toml' does not exist"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["verify-artifacts", "/nonexistent/run"], "has no manifest.json"),
]


def _check(argv, message, out, capsys, code=2):
    assert main(argv) == code, capsys.readouterr().err
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("compress: error: ") and message in err, err
    leftovers = (
        [p for p in out.rglob("*") if p.is_dir() and p.parent != out] if out.exists() else []
    )
    assert not leftovers, leftovers
    return err


@pytest.mark.parametrize(("args", "message"), CLI, ids=[m for _, m in CLI])
def test_bad_cli_flag(args, message, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [*args, "--out", str(out)] if args[0] == "run" and len(args) > 1 else args
    _check(argv, message, out, capsys)


def test_unwritable_out(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    _check(["run", "cnn", "--out", str(tmp_path / "file" / "sub")], "is not writable",
           tmp_path / "file", capsys)  # fmt: skip


def test_junit_under_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    junit = str(tmp_path / "file" / "j.xml")
    _check(["run", "cnn", "--junit", junit, "--out", str(tmp_path / "o")], "--junit",
           tmp_path / "o", capsys)  # fmt: skip


PIPELINE_FILES = [
    ('model = "cnn"\ncolour = "red"\n[stages.verify]\n', "colour is not a known setting"),
    ('model = "cnn"\n[stages.distill]\nt = 2\n', "unknown stage 'distill'. Expected one of"),
    ('model = "cnn"\n[stages.prune]\nsparsity = 1.5\n',
     "prune.sparsity must be in [0, 1). Got 1.5 instead."),
    ('model = "cnn"\n[stages.cluster]\nclusters = 1\n', "cluster.clusters must be >= 2"),
    ('model = "cnn"\n[stages.train]\nepochs = "five"\n',
     "train.epochs must be an integer. Got 'five' instead."),
    ('model = "cnn"\n[stages.build]\ntest_size = 1.5\n',
     "build.test_size must be < 1.0. Got 1.5 instead."),
    ('model = "cnn"\n[stages.quantize]\nmode = "int2"\n',
     "quantize.mode must be one of 'int8', 'auto', 'dynamic', 'float16', 'int4', 'qat' or "
     "'none'. Got 'int2'"),
    ('model = "cnn"\n[stages.verify]\nmax_drift = -1\n', "verify.max_drift must be >= 0.0"),
    ('model = "cnn"\n[stages.build]\nmodel = "rnn"\n', "build.model is set by the top-level"),
    ('model = "cnn"\nstages = 3\n', "stages must be a table"),
    ('model = "cnn"\n', "stages must list at least one stage"),
    ("[stages.train]\n", "model is required."),
    ('model = "cnn"\n[stages.train\n', "not valid TOML"),
    ('model = "vgg"\n[stages.train]\n', "unknown model 'vgg'"),
    ('model = "cnn"\nseed = -1\n[stages.train]\n', "seed must be >= 0. Got -1 instead."),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), PIPELINE_FILES, ids=[m for _, m in PIPELINE_FILES])
def test_bad_pipeline_file(text, message, tmp_path, capsys):
    """From the library (UsageError), `validate` and `run` alike: the file, the key, exit 2."""
    from compress.core.errors import UsageError
    from compress.runs.config import load_pipeline_file

    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(UsageError) as exc:
        load_pipeline_file(path)
    assert str(exc.value).startswith(f"{path}: ") and message in str(exc.value)
    for argv in (["validate", str(path)], ["run", str(path), "--out", str(tmp_path / "out")]):
        err = _check(argv, message, tmp_path / "out", capsys)
        assert f"{path}: " in err
    assert not (tmp_path / "out").exists()


def test_pipeline_file_that_is_binary(tmp_path, capsys):
    path = tmp_path / "p.toml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    _check(["validate", str(path)], "cannot be read", tmp_path, capsys)


MODELS = [
    ("missing.keras", "does not exist"),
    ("random.keras", "is not a Keras model"),
    ("truncated.keras", "is not a Keras model"),
    ("notes.keras", "is not a Keras model"),
    ("traversal.keras", "unsafe member path '../../evil.py'"),
    ("bomb.keras", "refused as a zip bomb"),
    ("custom.keras", "names class 'Evil' from module 'evil.layers'"),
    ("lambda.keras", "holds Lambda layer"),
    ("lambda.h5", "holds Lambda layer"),
    ("model.tflite", "is a TFLITE model; compress compresses Keras models"),
    ("model.onnx", "is a ONNX model; compress compresses Keras models"),
    ("op-unknown.keras", "whose op tf.os.system is not in TensorFlow's public API"),
    ("op-io.keras", "whose op tf.io.write_file reaches outside the model's graph"),
    ("op-garbage.keras", "whose op name 'import os; os.system' is not a TensorFlow API name"),
]


def test_model_file_without_data_names_the_flag(files, tmp_path, capsys):
    d, _ = files
    out = tmp_path / "out"
    expected = f"--data is required: model file '{d / 'good.keras'}' needs an .npz"
    _check(["run", str(d / "good.keras"), "--out", str(out)], expected, out, capsys)


@pytest.mark.parametrize(("name", "message"), MODELS, ids=[n for n, _ in MODELS])
def test_bad_model_file(name, message, files, tmp_path, capsys):
    d, marker = files
    out = tmp_path / "out"
    _check(["run", str(d / name), "--data", str(d / "good.npz"), "--out", str(out), "--no-cache",
            "--quiet"], message, out, capsys)  # fmt: skip
    assert not marker.exists(), "code from a model file ran"


DATA = [
    ("missing.npz", "does not exist"),
    ("text.npz", "is not a valid .npz"),
    ("object.npz", "pickle is refused"),
    ("keys.npz", "must hold x_train, y_train, x_test, y_test"),
    ("shape.npz", "x has shape (1797, 4, 8, 1), the model expects (n, 8, 8, 1)"),
    ("range.npz", "labels in [5, 14], but output 'label' has 10 classes"),
    ("negative.npz", "labels in [-3, 6]"),
    ("nan.npz", "x contains NaN or Inf"),
    ("inf.npz", "x contains NaN or Inf"),
    ("rows.npz", "labels for 'label' have 10 rows but x has 1797"),
    ("floaty.npz", "must be integer class labels"),
    ("strings.npz", "x must be numeric"),
    ("empty.npz", "x_train is empty"),
    ("calib.npz", "x_calib is empty"),
    ("onehot.npz", "must be integer class labels of shape (n,) or one-hot (n, 10)"),
    ("notest.npz", "has x_train but no x_test"),
]


@pytest.mark.parametrize(("name", "message"), DATA, ids=[n for n, _ in DATA])
def test_bad_data_file(name, message, files, tmp_path, capsys):
    d, _ = files
    out = tmp_path / "out"
    _check(["run", str(d / "good.keras"), "--data", str(d / name), "--out", str(out),
            "--no-cache", "--quiet"], message, out, capsys)  # fmt: skip


def test_tf_op_recorded_by_name_is_allowed(files, tmp_path, capsys):
    """A TFOpLambda whose op resolves in TensorFlow's public API (`x + x`) loads and runs."""
    d, _ = files
    code = main(["run", str(d / "op.keras"), "--data", str(d / "good.npz"), "--epochs", "1",
                 "--quantize", "none", "--out", str(tmp_path), "--quiet",
                 "--no-cache"])  # fmt: skip
    assert code == 0, capsys.readouterr().err


def test_h5_model_without_code_runs(files, tmp_path, capsys):
    """Content decides, not the extension: a plain HDF5 Keras model is accepted."""
    d, _ = files
    # --max-drift 100: a 1-epoch model's int8 drift is noise; this test is about loading .h5
    code = main(["run", str(d / "good.h5"), "--data", str(d / "good.npz"), "--epochs", "1",
                 "--out", str(tmp_path), "--quiet", "--no-cache",
                 "--max-drift", "100"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
