"""Every registered model through every stage (1 epoch), and the model-specific hazards:
stateful LSTM in LiteRT, multi-output name mapping, the custom layer's serialization."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import shared_cache_root

from compress import PipelineConfig, StageCache, run
from compress.backends.litert import LiteRTRunner
from compress.keras import models
from compress.stages.verify import is_repeatable


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory) -> dict:
    """Each registered model: build, train 1 epoch, export, int8, verify (short timing); the
    standard pipeline of `compress run NAME --epochs 1`, so its trained models and exports are
    the session cache's for every test that runs a model for one epoch."""
    out = tmp_path_factory.mktemp("models")
    cache = StageCache(shared_cache_root(tmp_path_factory))
    # max_drift 100: one epoch leaves int8 drift as noise; these runs check the exports and
    # each model's hazards (int8 at the shipped gate: test_compression.py)
    overrides = {"train.epochs": 1, "quantize.mode": "int8", "quantize.select": False,
                 "verify.batch_sizes": [1], "verify.timing_budget_s": 0.02,
                 "verify.max_drift": 100.0, "out": str(out)}  # fmt: skip
    sized = {"build.size": "tiny", "verify.generate_tokens": 4}  # models that come in sizes
    return {
        name: run(
            PipelineConfig.for_model(
                name, {**overrides, **(sized if models.REGISTRY[name].sizes else {})}
            ),
            cache=cache,
        )
        for name in models.REGISTRY
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", list(models.REGISTRY))
def test_every_model_builds_trains_exports_and_verifies(quick_runs, name):
    result = quick_runs[name]
    rows = {a["name"]: a for a in result.report["verification"]["artifacts"]}
    expected = {"model.keras", "model_fp32.tflite", "model_fp32.onnx"}
    assert expected <= set(rows)
    made_or_skipped = set(rows) | {s["name"] for s in result.report["skipped"]}
    assert {"model_int8.tflite", "model_int8.onnx"} <= made_or_skipped
    heads = {"next_token"} if name == "lm" else set(models.REGISTRY[name].targets(np.arange(10)))
    for row in rows.values():
        assert set(row["heads"]) == heads
        assert row["repeatable"] is True if row["runtime"] != "keras" else "repeatable" not in row
        assert (result.run_dir / row["name"]).stat().st_size == row["size_bytes"]
    for fp32 in ("model_fp32.tflite", "model_fp32.onnx"):
        for m in rows[fp32]["heads"].values():
            assert m["agreement"] == 100.0 and m["max_abs_diff"] < 1e-4


@pytest.mark.slow
def test_multitask_reports_and_gates_every_head(quick_runs):
    report = quick_runs["multitask"].report
    int8 = next(a for a in report["verification"]["artifacts"] if a["name"] == "model_int8.tflite")
    assert set(int8["heads"]) == {"digit", "pair"}
    # one epoch reaches 81% (digit, chance 10%) and 72% (pair, chance 50%)
    assert report["verification"]["reference_accuracy"]["digit"] > 70.0
    assert report["verification"]["reference_accuracy"]["pair"] > 65.0
    from compress.stages.verify import gate_failures

    failures = gate_failures([int8], max_drift=-100.0, min_speedup=None)
    assert [f.split(":")[0] for f in failures] == [
        "model_int8.tflite (digit)", "model_int8.tflite (pair)",
    ]  # fmt: skip


@pytest.mark.slow
def test_lstm_state_is_reset_per_call_and_verify_catches_a_stateful_runner(quick_runs):
    run_dir = quick_runs["rnn"].run_dir
    x = np.random.default_rng(0).random((6, 8, 8), dtype=np.float32)
    assert is_repeatable(LiteRTRunner(run_dir / "model_fp32.tflite", reset_state=True), x)
    assert not is_repeatable(LiteRTRunner(run_dir / "model_fp32.tflite", reset_state=False), x)


@pytest.mark.slow
def test_onnx_static_int8_reports_lstm_left_float(quick_runs):
    rows = quick_runs["rnn"].report["verification"]["artifacts"]
    onnx_int8 = next(a for a in rows if a["name"] == "model_int8.onnx")
    assert onnx_int8["left_float"] == ["LSTM"]


@pytest.mark.slow
def test_attention_model_reloads_in_a_fresh_process_with_same_predictions(quick_runs, tmp_path):
    run_dir = quick_runs["attention"].run_dir
    x = np.random.default_rng(1).random((16, 8, 8), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    code = (
        "import sys, json, numpy as np\n"
        "from compress import load_model\n"
        f"m = load_model({str(run_dir / 'model.keras')!r})\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
        "print(json.dumps([m.layers[2].__class__.__name__, m.predict(x, verbose=0).tolist()]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    cls, preds = json.loads(out.stdout.strip().splitlines()[-1])
    assert cls == "AttentionLayer"
    from compress import load_model

    here = load_model(run_dir / "model.keras").predict(x, verbose=0)
    np.testing.assert_allclose(np.array(preds), here, rtol=0, atol=1e-6)


def test_attention_layer_config_roundtrip():
    from compress.keras.layers import AttentionLayer

    layer = AttentionLayer(7, name="att")
    clone = AttentionLayer.from_config(layer.get_config())
    assert clone.units == 7 and clone.name == "att"
    with pytest.raises(ValueError, match="units must be an integer >= 1"):
        AttentionLayer(0)


def test_loading_compress_layers_leaves_tfmot_unimported_until_a_stage_needs_it():
    """tfmot costs 1.4 s of every process that imports it: loading a model does not; pruning,
    clustering and QAT get it through with_tfmot, which registers the layers' hooks."""
    code = (
        "import sys\nfrom compress.keras import layers\n"
        "print('tensorflow_model_optimization' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"
    from compress.keras import layers

    tfmot = layers.with_tfmot()
    layer = layers.AttentionLayer(3)
    assert isinstance(layer, tfmot.sparsity.keras.PrunableLayer)
    assert isinstance(layer, tfmot.clustering.keras.ClusterableLayer)
    config = layers.quantize_configs()[layers.AttentionLayer]
    assert issubclass(config, tfmot.quantization.keras.QuantizeConfig)
    assert "compress>AttentionQuantizeConfig" in layers.quantize_objects()
