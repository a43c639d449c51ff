"""The int8 recipe search and `compress bench`: what they report is what they measured."""

from __future__ import annotations

import json
import shutil

from compress.cli import main


def test_int8_recipe_is_chosen_by_measurement_per_runtime(cnn_run, row):
    from compress.backends import BACKENDS

    report = cnn_run["report"]
    for name, runtime in [("model_int8.tflite", "litert"), ("model_int8.onnx", "onnxruntime")]:
        recipe = row(report, name)["recipe"]
        entries = recipe["candidates"]
        table = [s.id for s in BACKENDS[runtime].candidates("int8")]
        assert [e["id"] for e in entries] == table  # every candidate of the table was measured
        chosen = [e for e in entries if e["chosen"]]
        assert len(chosen) == 1, entries
        assert all("p50_ms_b1" in e and "agreement" in e for e in entries if "error" not in e)
        winner = chosen[0]
        assert winner["id"] == recipe["id"] == report["stages"]["quantize"]["recipes"][name]
        assert winner["agreement"] >= 99.0
        spec = BACKENDS[runtime].recipe(winner["id"])
        assert recipe["description"] == spec.description
        assert spec.knobs.items() <= recipe["knobs"].items()
        fastest = min(e["p50_ms_b1"] for e in entries if e["agreement"] >= 99.0)
        # the fastest, or the default (first) recipe when within 5% or nothing beats fp32
        assert winner["p50_ms_b1"] <= fastest * 1.05 or winner is entries[0]


def test_bench_measures_every_artifact_and_writes_bench_json(cnn_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(cnn_run["run_dir"], run_dir)
    assert main(["bench", str(run_dir), "--threads", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert json.loads((run_dir / "bench.json").read_text()) == result
    names = {e["name"] for e in result["artifacts"]}
    assert names == {"model_fp32.tflite", "model_int8.tflite", "model_fp32.onnx", "model_int8.onnx"}
    for e in result["artifacts"]:
        for b in ("b1", "b32"):
            m = e[b]
            assert m["warm"]["p90_ms"] >= m["warm"]["p50_ms"] > 0 and m["cold"]["p50_ms"] > 0
            assert m["throughput_per_s"] == int(b[1:]) / m["warm"]["p50_ms"] * 1e3
        if e["precision"] == "fp32":
            assert e["b1"]["speedup"] == 1.0
    assert main(["verify-artifacts", str(run_dir)]) == 0  # bench.json is not an artifact


def test_bench_refuses_a_tampered_run(cnn_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(cnn_run["run_dir"], run_dir)
    (run_dir / "model_int8.onnx").write_bytes(b"not onnx")
    assert main(["bench", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refusing to load it" in err
