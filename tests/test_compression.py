"""Prune, cluster and QAT: every combination with int8/QAT for every model, and the reported
sparsity and distinct-value counts checked against an independent count of the exported weights.

Each model is trained once to a real accuracy (digits, 5 epochs: 83-95% held out) in
a stage cache the combinations share, so the product's own drift gate (1 point) means something:
an int8 artifact that scrambles its outputs fails it, where a model near chance would not."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import shared_cache_root

from compress import PipelineConfig, StageCache, run
from compress.keras import models

# every run here trains and exports a model (the quick tier skips them)
pytestmark = pytest.mark.slow

COMBOS = [
    (prune, cluster, mode)
    for prune, cluster in itertools.product([False, True], repeat=2)
    for mode in ("int8", "qat")
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return StageCache(shared_cache_root(tmp_path_factory))


def _config(model, prune, cluster, mode, out):
    # verify.max_drift is left at the shipped default
    overrides = {"train.epochs": TRAIN_EPOCHS, "quantize.mode": mode, "quantize.select": False,
                 "quantize.qat_epochs": 1,
                 "verify.timing_budget_s": 0.01, "verify.batch_sizes": [1],
                 "out": str(out)}  # fmt: skip
    if model in TRAIN_SAMPLES:
        overrides["build.train_samples"] = TRAIN_SAMPLES[model]
    if prune:
        overrides.update({"prune.sparsity": 0.5, "prune.epochs": 1})
    if cluster:
        overrides.update({"cluster.clusters": 8, "cluster.epochs": 1})
    return PipelineConfig.for_model(model, overrides)


TRAIN_EPOCHS = 5
# The CNN's 3.9M-weight Dense makes each epoch of training, pruning, clustering and QAT the
# slowest of the suite: its combinations train on 500 samples of the training split (95% held
# out after 5 epochs, measured; the test split is unchanged).
TRAIN_SAMPLES = {"cnn": 500}
ACCURACY_FLOOR = 80.0  # held-out accuracy each model reaches in TRAIN_EPOCHS (chance: 10%)
# Top-1 agreement with the float Keras model, held-out split. Post-training int8 measured 98.0-100%.
# QAT fine-tunes the model it is compared with (measured 93.9-99.7%, while its accuracy rose by
# up to 2.2 points), so its floor is lower; its drift is held to the same 1-point gate.
AGREEMENT_FLOOR = {"int8": 97.0, "qat": 90.0}
# the CNN's: test_compression_cnn.py; the transformer's (trained longer): test_transformer.py
# the language model's: test_lm.py (judged by perplexity, not accuracy)
SMALL_MODELS = [m for m in models.REGISTRY if m not in ("cnn", "transformer", "lm")]


@pytest.mark.parametrize(("prune", "cluster", "mode"), COMBOS)
@pytest.mark.parametrize("model", SMALL_MODELS)
def test_every_combination_runs_for_every_model(model, prune, cluster, mode, cache, tmp_path):
    check_combination(model, prune, cluster, mode, cache, tmp_path)


# Artifacts a combination may not produce, pinned with the reason the converter gives: any other
# skip fails the test. (model, prune, cluster, mode, artifact) -> start of the reason.
EXPECTED_SKIPS: dict[tuple, str] = {}


def known_findings(model: str, cluster: bool, mode: str) -> set[str]:
    """Quantized artifacts known not to be stored smaller or in int8, each with its cause; any
    other finding fails the test. The product prints each as a WARNING line and lists it in
    `verification.warnings`. These runs take each mode's default recipe (`quantize.select`
    off); the measured choice is tested below (test_searched_quantization_...)."""
    known = set()
    if model in ("rnn", "attention") and mode == "int8":
        # the default onnxruntime recipe (static QDQ) leaves the LSTM float and adds Q/DQ nodes
        known.add("model_int8.onnx: not smaller than fp32")
    if model in ("rnn", "attention") and mode == "qat":
        # the QAT LSTM converts to TFLite with float weights plus fake-quant parameters
        known.add("model_qat.tflite: not smaller than fp32")
    if mode == "qat" and (model in ("rnn", "attention") or cluster):
        # tf2onnx folds fake-quant into float weights; after clustering (and for the LSTM) they
        # are not found on an int8 grid, so they stay float32
        known |= {"model_qat.onnx: not smaller than fp32", "model_qat.onnx: no int8 weights"}
    return known


def _int8_weights(path) -> int:
    """Weight tensors (rank >= 2) stored as 8-bit integers in the file (ONNX: int8, or uint8 with
    a zero point, as QAT weights are stored), counted by the runtime's own reader, not by
    compress."""
    if str(path).endswith(".onnx"):
        import onnx
        from onnx import TensorProto

        graph = onnx.load(str(path)).graph
        assert any(n.op_type in ("DequantizeLinear", "DynamicQuantizeLinear") for n in graph.node)
        eight_bit = (TensorProto.INT8, TensorProto.UINT8)
        return sum(1 for i in graph.initializer
                   if i.data_type in eight_bit and len(i.dims) >= 2)  # fmt: skip
    return sum(1 for a in _tflite_constants(path).values() if a.dtype == np.int8)


def check_combination(model, prune, cluster, mode, cache, tmp_path):
    result = run(_config(model, prune, cluster, mode, tmp_path), cache=cache)
    verification = result.report["verification"]
    rows = {a["name"]: a for a in verification["artifacts"]}
    assert verification["max_drift"] == 1.0  # the gate the product ships with
    assert verification["failures"] == [] and result.passed, verification["failures"]
    for head, accuracy in verification["reference_accuracy"].items():
        assert accuracy >= ACCURACY_FLOOR, (head, accuracy)
    for name in (f"model_{mode}.tflite", f"model_{mode}.onnx"):
        for head, m in rows.get(name, {}).get("heads", {}).items():
            assert m["drift"] <= 1.0 and m["agreement"] >= AGREEMENT_FLOOR[mode], (name, head, m)
    for s in result.report["skipped"]:
        expected = EXPECTED_SKIPS.get((model, prune, cluster, mode, s["name"]))
        assert expected is not None and s["reason"].startswith(expected), s
    made = set(rows) | {s["name"] for s in result.report["skipped"]}
    assert {f"model_{mode}.tflite", f"model_{mode}.onnx"} <= made
    assert f"model_{mode}.tflite" in rows  # TFLite can do every mode for every model
    findings = set()  # what a quantized artifact fails to deliver, read from the files
    for name in (f"model_{mode}.tflite", f"model_{mode}.onnx"):
        if name not in rows:
            continue
        if _int8_weights(result.run_dir / name) == 0:
            findings.add(f"{name}: no int8 weights")
        if rows[name]["size_bytes"] >= rows[name.replace(mode, "fp32")]["size_bytes"]:
            findings.add(f"{name}: not smaller than fp32")
    assert findings <= known_findings(model, cluster, mode), sorted(findings)
    reported = " ".join(result.report["verification"]["warnings"])
    for finding in findings:
        if "not smaller" in finding:  # the product shows it too
            assert f"{finding.split(':')[0]} is not smaller than" in reported
    stages = result.report["stages"]
    if prune:
        assert min(stages["prune"]["layers"].values()) >= 0.45, stages["prune"]
        assert rows[f"model_{mode}.tflite"]["sparsity"] > 0.2
    if cluster:
        values = stages["cluster"]["unique_values"]
        assert values and max(values.values()) <= 8 + 1, values  # + the preserved zero
    for row in rows.values():
        assert row["repeatable"] is True if row["runtime"] != "keras" else "repeatable" not in row


def _tflite_constants(path):
    """name -> array of every constant tensor, read through the LiteRT interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    out = {}
    for d in interp.get_tensor_details():
        if len(d["shape"]) >= 2:
            try:
                out[d["name"]] = interp.get_tensor(d["index"])
            except ValueError:
                continue
    return out


def test_reported_sparsity_and_clusters_match_an_independent_count(cache, tmp_path):
    """CNN, dense layer pruned to 0.8 and clustered to 16: count the file's weights directly."""
    cfg = PipelineConfig.for_model("cnn", {
        "build.train_samples": 256, "train.epochs": 2, "prune.sparsity": 0.8,
        "prune.layers": ["dense"], "prune.epochs": 1,
        "cluster.clusters": 16, "cluster.layers": ["dense"], "cluster.epochs": 1,
        "verify.timing_budget_s": 0.01, "verify.batch_sizes": [1], "out": str(tmp_path),
    })  # fmt: skip
    result = run(cfg, cache=cache)
    rows = {a["name"]: a for a in result.report["verification"]["artifacts"]}
    int8 = rows["model_int8.tflite"]
    dense = next(t for t in int8["weights"]["tensors"] if t["shape"] == [128, 30752])
    constants = _tflite_constants(result.run_dir / "model_int8.tflite")
    found = constants[dense["name"]]
    assert found.shape == (128, 30752) and found.dtype == np.int8
    assert dense["sparsity"] == pytest.approx(float((found == 0).mean()))
    assert dense["sparsity"] == pytest.approx(0.8, abs=0.02)
    assert dense["unique"] == len(np.unique(found))
    per_channel = max(len(np.unique(row)) for row in found)
    assert dense["unique_per_channel_max"] == per_channel <= 16 + 1
    assert result.report["stages"]["prune"]["layers"] == pytest.approx({"dense": 0.8}, abs=0.02)
    # the float model: 16 centroids (one of them the preserved zero)
    assert result.report["stages"]["cluster"]["unique_values"]["dense"] <= 17
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(result.run_dir / "model_int8.onnx")).graph
    weight = next(
        numpy_helper.to_array(i) for i in graph.initializer if list(i.dims) == [30752, 128]
    )
    onnx_row = rows["model_int8.onnx"]["weights"]["tensors"][0]
    assert onnx_row["sparsity"] == pytest.approx(float((weight == 0).mean()))
    assert int8["size_gzip_bytes"] < rows["model_fp32.tflite"]["size_gzip_bytes"]
    assert int8["compression_ratio"] == pytest.approx(
        result.report["verification"]["float_weight_bytes"] / int8["size_gzip_bytes"]
    )


def test_prune_2_of_4_reports_what_each_layer_reached(cache, tmp_path):
    cfg = PipelineConfig.for_model("multitask", {
        "train.epochs": TRAIN_EPOCHS, "prune.sparsity": "2:4", "prune.epochs": 1,
        "verify.timing_budget_s": 0.01, "verify.batch_sizes": [1], "out": str(tmp_path),
    })  # fmt: skip
    result = run(cfg, cache=cache)
    assert result.passed, result.report["verification"]["failures"]
    reached = result.report["stages"]["prune"]["layers"]
    assert reached and all(abs(s - 0.5) < 0.01 for s in reached.values()), reached


def test_attention_layer_is_pruned_and_clustered_not_skipped(cache, tmp_path):
    cfg = PipelineConfig.for_model("attention", {
        "train.epochs": TRAIN_EPOCHS, "prune.sparsity": 0.5,
        "prune.layers": ["attention", "lstm"],
        "prune.epochs": 1, "cluster.clusters": 4, "cluster.layers": ["attention"],
        "cluster.epochs": 1, "verify.timing_budget_s": 0.01, "verify.batch_sizes": [1],
        "out": str(tmp_path),
    })  # fmt: skip
    result = run(cfg, cache=cache)
    assert result.passed, result.report["verification"]["failures"]
    stages = result.report["stages"]
    assert stages["prune"]["not_pruned"] == {} and stages["prune"]["layers"]["attention"] > 0.4
    assert stages["cluster"]["not_clustered"] == {}
    assert stages["cluster"]["unique_values"]["attention"] <= 4 + 1


@pytest.mark.parametrize(("model", "mode"), [("rnn", "int8"), ("attention", "int8"),
                                            ("rnn", "qat")])  # fmt: skip
def test_searched_quantization_of_recurrent_models_is_smaller_than_fp32(
    model, mode, cache, tmp_path
):
    """With the recipe search on (the default), each runtime's int8 (or QAT) file of an LSTM
    model is smaller than its fp32 file and stores int8 weights: the search prefers candidates
    smaller than fp32 (static QDQ and the QAT graph leave the LSTM float and are bigger;
    DynamicQuantizeLSTM and the recurrent-weight TFLite recipes are not). Its speed is a
    benchmark's, not a test's."""
    cfg = PipelineConfig.for_model(model, {
        "train.epochs": TRAIN_EPOCHS, "quantize.mode": mode, "quantize.qat_epochs": 1,
        "verify.timing_budget_s": 0.01, "verify.batch_sizes": [1], "out": str(tmp_path),
    })  # fmt: skip
    result = run(cfg, cache=cache)
    assert result.passed, result.report["verification"]["failures"]
    rows = {a["name"]: a for a in result.report["verification"]["artifacts"]}
    for runtime_file in (f"model_{mode}.tflite", f"model_{mode}.onnx"):
        row, fp32 = rows[runtime_file], rows[runtime_file.replace(mode, "fp32")]
        assert row["size_bytes"] < fp32["size_bytes"], (runtime_file, row["recipe"]["candidates"])
        assert _int8_weights(result.run_dir / runtime_file) > 0
        assert len(row["recipe"]["candidates"]) >= (4 if mode == "int8" else 2)
        assert not any("not smaller" in w for w in result.report["verification"]["warnings"])
