"""Models past 2 GB: the ONNX export with external data (model_fp32.onnx + model_fp32.onnx.data),
forced here on a small model (export_onnx.external_data = "always") through the whole run: every
quantizer reads it, verify measures it, sizes count both files, the manifest and the stage cache
carry the data file."""

from __future__ import annotations

import json

import pytest

from compress.cli import main

pytestmark = pytest.mark.slow


def _run(out, capsys) -> tuple[int, dict]:
    code = main(["run", "multitask", "--quantize", "auto", "--epochs", "1",
                 "--set", "export_onnx.external_data=always", "--max-drift", "100",
                 "--set", "verify.timing_budget_s=0.02",
                 "--out", str(out), "--json", "--quiet"])  # fmt: skip
    return code, json.loads(capsys.readouterr().out)


def test_an_onnx_export_with_external_data_runs_end_to_end(tmp_path, capsys):
    code, report = _run(tmp_path / "out", capsys)
    assert code == 0, report["verification"]["failures"]
    run_dir = tmp_path / "out" / "multitask" / report["run_id"]
    onnx_files = sorted(p.name for p in run_dir.glob("model_*.onnx*"))
    chosen = next(a for a in report["verification"]["artifacts"]
                  if a["runtime"] == "onnxruntime" and a["precision"] != "fp32")  # fmt: skip
    assert onnx_files == sorted(["model_fp32.onnx", "model_fp32.onnx.data", chosen["name"]])
    rows = {a["name"]: a for a in report["verification"]["artifacts"]}
    fp32 = rows["model_fp32.onnx"]
    main_file, data = run_dir / "model_fp32.onnx", run_dir / "model_fp32.onnx.data"
    assert fp32["external_data"] == {"file": data.name, "size_bytes": data.stat().st_size}
    assert fp32["size_bytes"] == main_file.stat().st_size + data.stat().st_size
    assert data.stat().st_size > 4 * 64 * 128 > main_file.stat().st_size  # the Dense kernel
    assert report["stages"]["export_onnx"]["external_data"] is True
    for head in fp32["heads"].values():  # the file with its data is the Keras model's outputs
        assert head["agreement"] == 100.0 and head["max_abs_diff"] < 1e-5
    # every quantizer (static, dynamic, MatMulNBits int4, float16) read the external data
    built = {c["id"] for c in chosen["recipe"]["candidates"] if not c.get("error")}
    errors = [c["error"] for c in chosen["recipe"]["candidates"] if c.get("error")]
    assert {"static-qdq-all-ops", "dynamic-int8", "int4-int8-compute"} <= built, errors
    assert not (run_dir / (chosen["name"] + ".data")).exists()  # quantized: one file
    assert "note model_fp32.onnx: its weights are in model_fp32.onnx.data" in _text(run_dir)

    assert main(["verify-artifacts", str(run_dir)]) == 0
    capsys.readouterr()
    with open(data, "r+b") as f:  # tampered weights are caught like any other file
        f.truncate(data.stat().st_size - 4)
    assert main(["verify-artifacts", str(run_dir)]) != 0
    assert "model_fp32.onnx.data" in capsys.readouterr().err

    # a rerun takes the export from the stage cache, data file included
    code, again = _run(tmp_path / "out", capsys)
    assert code == 0 and again["cache"]["export_onnx"] == "hit"
    rerun_dir = tmp_path / "out" / "multitask" / again["run_id"]
    assert (rerun_dir / "model_fp32.onnx.data").stat().st_size == fp32["external_data"][
        "size_bytes"
    ]
    again_fp32 = next(
        a for a in again["verification"]["artifacts"] if a["name"] == "model_fp32.onnx"
    )
    assert again_fp32["size_bytes"] == fp32["size_bytes"]
    assert main(["verify-artifacts", str(rerun_dir)]) == 0


def _text(run_dir) -> str:
    return (run_dir / "report.md").read_text(encoding="utf-8")
