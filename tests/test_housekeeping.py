"""A run writes only into its run directory and the cache: never into the current directory."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from compress.cli import main
from compress.keras import _tf


def _listing(path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def _two_input_model(where):
    """Two inputs joined by Concatenate: onnxruntime's symbolic shape inference cannot infer
    every shape of it and, left alone, writes its scratch files into the current directory."""
    from sklearn.datasets import load_digits

    keras = _tf.keras()
    image = keras.Input((8, 8, 1), name="image")
    rowsum = keras.Input((8,), name="rowsum")
    x = keras.layers.Concatenate()([keras.layers.Flatten()(image), rowsum])
    x = keras.layers.Dense(16, activation="relu")(x)
    digit = keras.layers.Dense(10, activation="softmax", name="digit")(x)
    keras.Model([image, rowsum], digit).save(where / "two.keras")
    raw = load_digits()
    x8 = (raw.images / 16.0).astype(np.float32)[..., None]
    np.savez(where / "two.npz", x_image=x8, x_rowsum=x8[..., 0].sum(axis=2) / 8, y=raw.target)
    return where / "two.keras", where / "two.npz"


@pytest.mark.slow
def test_runs_leave_the_current_directory_as_it_was(tmp_path, monkeypatch, capsys):
    inputs, cwd, out = tmp_path / "inputs", tmp_path / "cwd", tmp_path / "out"
    inputs.mkdir()
    cwd.mkdir()
    (cwd / "mine.txt").write_text("the user's own file")
    model, data = _two_input_model(inputs)
    before_cwd, before_inputs = _listing(cwd), _listing(inputs)
    monkeypatch.chdir(cwd)
    for args in (
        [str(model), "--data", str(data), "--epochs", "1"],
        ["rnn", "--epochs", "1", "--set", "build.train_samples=300"],
    ):
        # --max-drift 100: 1-epoch models, drift is noise; this is about files left behind (a
        # short timing: which recipe wins does not matter here)
        code = main(["run", *args, "--out", str(out), "--max-drift", "100", "--json", "--quiet",
                     "--set", "verify.timing_budget_s=0.02"])  # fmt: skip
        report = json.loads(capsys.readouterr().out)
        assert code == 0, report["verification"]["failures"]
        assert "model_int8.onnx" in {a["name"] for a in report["verification"]["artifacts"]}
        assert os.getcwd() == str(cwd)
        assert _listing(cwd) == before_cwd
        assert _listing(inputs) == before_inputs
    assert (cwd / "mine.txt").read_text() == "the user's own file"
