"""Prune, cluster and QAT: every combination with int8/QAT for every model (tiny epochs, one
shared stage cache so combinations reuse their common prefix), and the reported sparsity and
distinct-value counts checked against an independent count of the exported weights."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from compress import PipelineConfig, StageCache, models, run

COMBOS = [
    (prune, cluster, mode)
    for prune, cluster in itertools.product([False, True], repeat=2)
    for mode in ("int8", "qat")
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return StageCache(tmp_path_factory.mktemp("compression-cache"))


def _config(model, prune, cluster, mode, out):
    overrides = {"build.train_samples": 128, "train.epochs": 1, "quantize.mode": mode,
                 "quantize.select": False,
                 "quantize.qat_epochs": 1,
                 "verify.timing_budget_s": 0.01, "verify.batch_sizes": [1],
                 "verify.max_drift": 100.0, "out": str(out)}  # fmt: skip
    if prune:
        overrides.update({"prune.sparsity": 0.5, "prune.epochs": 1})
    if cluster:
        overrides.update({"cluster.clusters": 8, "cluster.epochs": 1})
    return PipelineConfig.for_model(model, overrides)


SMALL_MODELS = [m for m in models.REGISTRY if m != "cnn"]  # the CNN's: test_compression_cnn.py


@pytest.mark.parametrize(("prune", "cluster", "mode"), COMBOS)
@pytest.mark.parametrize("model", SMALL_MODELS)
def test_every_combination_runs_for_every_model(model, prune, cluster, mode, cache, tmp_path):
    check_combination(model, prune, cluster, mode, cache, tmp_path)


def check_combination(model, prune, cluster, mode, cache, tmp_path):
    result = run(_config(model, prune, cluster, mode, tmp_path), cache=cache)
    rows = {a["name"]: a for a in result.report["verification"]["artifacts"]}
    made = set(rows) | {s["name"] for s in result.report["skipped"]}
    assert {f"model_{mode}.tflite", f"model_{mode}.onnx"} <= made
    assert f"model_{mode}.tflite" in rows  # TFLite can do every mode for every model
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
        "build.train_samples": 128, "train.epochs": 1, "prune.sparsity": "2:4", "prune.epochs": 1,
        "verify.timing_budget_s": 0.01, "verify.batch_sizes": [1], "verify.max_drift": 100.0,
        "out": str(tmp_path),
    })  # fmt: skip
    result = run(cfg, cache=cache)
    reached = result.report["stages"]["prune"]["layers"]
    assert reached and all(abs(s - 0.5) < 0.01 for s in reached.values()), reached


def test_attention_layer_is_pruned_and_clustered_not_skipped(cache, tmp_path):
    cfg = PipelineConfig.for_model("attention", {
        "build.train_samples": 128, "train.epochs": 1, "prune.sparsity": 0.5,
        "prune.layers": ["attention", "lstm"],
        "prune.epochs": 1, "cluster.clusters": 4, "cluster.layers": ["attention"],
        "cluster.epochs": 1, "verify.timing_budget_s": 0.01, "verify.batch_sizes": [1],
        "verify.max_drift": 100.0, "out": str(tmp_path),
    })  # fmt: skip
    result = run(cfg, cache=cache)
    stages = result.report["stages"]
    assert stages["prune"]["not_pruned"] == {} and stages["prune"]["layers"]["attention"] > 0.4
    assert stages["cluster"]["not_clustered"] == {}
    assert stages["cluster"]["unique_values"]["attention"] <= 4 + 1
