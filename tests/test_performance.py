"""The int8 recipe search and `compress bench`: what they report is what they measured."""

from __future__ import annotations

import json
import shutil

from compress.backends.select import choose
from compress.cli import main


def test_int8_recipe_is_chosen_by_measurement_per_runtime(cnn_run, row):
    from compress.backends import BACKENDS

    report = cnn_run["report"]
    for name, runtime in [("model_int8.tflite", "litert"), ("model_int8.onnx", "onnxruntime")]:
        recipe = row(report, name)["recipe"]
        entries = recipe["candidates"]
        # the CNN has no recurrent layer: rows that need one are not candidates
        table = [s.id for s in BACKENDS[runtime].candidates("int8") if s.needs is None]
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
        # the chooser's rule (tests/test_select.py) applied to what was reported picks it
        unchosen = [{k: v for k, v in e.items() if k != "chosen"} for e in entries]
        fp32_size = row(report, name.replace("int8", "fp32"))["size_bytes"]
        objective = recipe["selection"]["objective"]
        assert choose(unchosen, 99.0, objective, fp32_size)["id"] == winner["id"]
        rounds = recipe["selection"]["rounds"]  # timed until the winner held 3 rounds (or 8)
        assert rounds[-1] == winner["id"] and (
            rounds[-3:] == [winner["id"]] * 3 or len(rounds) == 8
        )


def test_int8_cnn_artifacts_are_smaller_and_faster_than_fp32(cnn_run, row):
    """Compression must pay: on the CNN (a 3.9 M-weight Dense), each runtime's int8 file is a
    quarter of its fp32 twin and faster at batch 1 at all (measured 1.6-3.7x across machines;
    the speed goals themselves live in benchmarks/speedup.py)."""
    report = cnn_run["report"]
    for fp32, int8 in [("model_fp32.tflite", "model_int8.tflite"),
                       ("model_fp32.onnx", "model_int8.onnx")]:  # fmt: skip
        assert row(report, int8)["size_bytes"] < row(report, fp32)["size_bytes"] / 3.5
        assert row(report, int8)["speedup"]["b1"] > 1.0, row(report, int8)["speedup"]


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
