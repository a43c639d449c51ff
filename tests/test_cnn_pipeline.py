"""End to end: `compress run cnn --quantize int8` (2 epochs) and an independent re-evaluation of
every artifact it wrote, with the runtimes called directly rather than through compress."""

from __future__ import annotations

import json

import numpy as np
import pytest

from compress.core.fileio import sha256_file
from compress.keras.data import digits_layout

EXPECTED_FILES = {
    "model.keras", "model_fp32.tflite", "model_int8.tflite", "model_fp32.onnx",
    "model_int8.onnx", "report.json", "report.md", "report.html", "manifest.json", "log.txt",
}  # fmt: skip


def test_run_exits_0_and_leaves_one_complete_run_directory(cnn_run):
    assert cnn_run["code"] == 0
    assert [p.name for p in (cnn_run["out"] / "cnn").iterdir()] == [cnn_run["run_dir"].name]
    assert {p.name for p in cnn_run["run_dir"].iterdir()} == EXPECTED_FILES
    assert json.loads((cnn_run["run_dir"] / "report.json").read_text()) == cnn_run["report"]


def test_float_model_learns_digits(cnn_run):
    assert cnn_run["report"]["verification"]["reference_accuracy"]["digit"] >= 90.0


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_int8_artifacts_are_at_least_3_5x_smaller_than_fp32(cnn_run, row, fmt):
    fp32 = row(cnn_run["report"], f"model_fp32.{fmt}")["size_bytes"]
    int8 = row(cnn_run["report"], f"model_int8.{fmt}")["size_bytes"]
    assert fp32 / int8 >= 3.5
    assert int8 == (cnn_run["run_dir"] / f"model_int8.{fmt}").stat().st_size


@pytest.mark.parametrize("name", ["model_int8.tflite", "model_int8.onnx"])
def test_int8_drift_within_default_gate(cnn_run, row, name):
    m = row(cnn_run["report"], name)["heads"]["digit"]
    assert m["drift"] <= 1.0
    assert m["agreement"] >= 97.0


def test_fp32_exports_match_keras(cnn_run, row):
    for name in ("model_fp32.tflite", "model_fp32.onnx"):
        m = row(cnn_run["report"], name)["heads"]["digit"]
        assert m["agreement"] == 100.0
        assert m["max_abs_diff"] < 1e-4


def test_speedup_is_measured_against_same_runtime_fp32(cnn_run, row):
    for fmt in ("tflite", "onnx"):
        fp32, int8 = (row(cnn_run["report"], f"model_{p}.{fmt}") for p in ("fp32", "int8"))
        for b in ("b1", "b32"):
            ratio = fp32["latency_ms"][b]["p50_ms"] / int8["latency_ms"][b]["p50_ms"]
            assert int8["speedup"][b] == pytest.approx(ratio)
            assert fp32["speedup"][b] == 1.0
            assert int8["latency_ms"][b]["calls"] >= 30
    assert cnn_run["report"]["verification"]["threads"] == 1


def test_manifest_hashes_and_sizes_match_files(cnn_run):
    run_dir = cnn_run["run_dir"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert set(manifest["files"]) == EXPECTED_FILES - {"manifest.json"}
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == sha256_file(run_dir / name)
        assert entry["size_bytes"] == (run_dir / name).stat().st_size
    assert manifest["seed"] == 0 and manifest["config"]["stages"]["quantize"]["mode"] == "int8"
    assert [s["stage"] for s in manifest["pipeline"]][-2:] == ["quantize", "verify"]
    assert manifest["packages"]["tf2onnx"] == "1.17.0"


def _held_out(report):
    from sklearn.datasets import load_digits

    raw = load_digits()
    idx = np.array(report["data"]["test_indices"])
    return digits_layout(raw.images[idx], "image64"), raw.target[idx]


def _litert_probs(path, x):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    runner = interp.get_signature_runner()
    return np.concatenate([runner(input=x[i : i + 1])["digit"] for i in range(len(x))])


def _ort_probs(path, x):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(["digit"], {"input": x[i : i + 1]})[0] for i in range(len(x))])


def test_report_numbers_match_independent_reevaluation(cnn_run, row):
    from compress.keras import _tf

    report, run_dir = cnn_run["report"], cnn_run["run_dir"]
    x, y = _held_out(report)
    keras_model = _tf.keras().models.load_model(run_dir / "model.keras", safe_mode=True)
    ref = keras_model.predict(x, verbose=0)
    ref_acc = (ref.argmax(1) == y).mean() * 100
    assert report["verification"]["reference_accuracy"]["digit"] == pytest.approx(ref_acc)
    for name, probs in [
        ("model_fp32.tflite", _litert_probs(run_dir / "model_fp32.tflite", x)),
        ("model_int8.tflite", _litert_probs(run_dir / "model_int8.tflite", x)),
        ("model_fp32.onnx", _ort_probs(run_dir / "model_fp32.onnx", x)),
        ("model_int8.onnx", _ort_probs(run_dir / "model_int8.onnx", x)),
    ]:
        m = row(report, name)["heads"]["digit"]
        acc = (probs.argmax(1) == y).mean() * 100
        assert m["accuracy"] == pytest.approx(acc), name
        assert m["drift"] == pytest.approx(ref_acc - acc), name
        assert m["agreement"] == pytest.approx((probs.argmax(1) == ref.argmax(1)).mean() * 100)
        assert m["max_abs_diff"] == pytest.approx(np.abs(probs - ref).max(), abs=1e-5), name


def test_report_md_holds_the_table(cnn_run):
    md = (cnn_run["run_dir"] / "report.md").read_text()
    for name in ("model_int8.tflite", "model_int8.onnx", "speedup b1", "passed"):
        assert name in md


def test_onnx_float16_weights_halve_the_file_and_keep_predictions(cnn_run, tmp_path):
    from compress.backends.onnxruntime import RECIPES, quantize

    fp32 = cnn_run["run_dir"] / "model_fp32.onnx"
    half = tmp_path / "model_float16.onnx"
    float16 = next(r for r in RECIPES if r.mode == "float16")
    quantize(fp32, half, float16.knobs, np.zeros((1, 64, 64, 3), np.float32))
    assert fp32.stat().st_size / half.stat().st_size > 1.9
    x, _ = _held_out(cnn_run["report"])
    a, b = _ort_probs(fp32, x[:64]), _ort_probs(half, x[:64])
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.98
    assert np.abs(a - b).max() < 0.05
