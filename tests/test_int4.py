"""Weight-only int4 (onnxruntime MatMulNBits): MatMul weights packed in 4 bits with per-block
scales, verified like every artifact; TFLite says it has no int4 path instead of faking one."""

from __future__ import annotations

import json

import numpy as np

from compress.cli import main


def test_int4_packs_matmul_weights_and_tflite_says_why_it_has_none(tmp_path, capsys):
    argv = ["run", "multitask", "--quantize", "int4", "--epochs", "2", "--out", str(tmp_path),
            "--json", "--quiet", "--max-drift", "100",
            "--set", "verify.timing_budget_s=0.02"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    run_dir = tmp_path / "multitask" / report["run_id"]
    rows = {a["name"]: a for a in report["verification"]["artifacts"]}
    int4, fp32 = rows["model_int4.onnx"], rows["model_fp32.onnx"]
    assert int4["precision"] == "int4" and int4["recipe"]["id"] == "weight-only-int4"
    assert int4["size_bytes"] < 0.3 * fp32["size_bytes"]  # 4 bits + scales vs 32 bits
    import onnx

    graph = onnx.load(str(run_dir / "model_int4.onnx")).graph
    nbits = [n for n in graph.node if n.op_type == "MatMulNBits"]
    assert len(nbits) == 3  # the three Dense kernels
    attrs = {a.name: a.i for a in nbits[0].attribute}
    assert attrs["bits"] == 4 and attrs["block_size"] == 32
    packed = {i.name: i for i in graph.initializer}[nbits[0].input[1]]
    assert packed.data_type == onnx.TensorProto.UINT8  # two weights per byte
    for m in int4["heads"].values():
        assert np.isfinite(m["drift"]) and m["agreement"] > 90.0
    (skip,) = [s for s in report["skipped"] if s["name"] == "model_int4.tflite"]
    assert skip["runtime"] == "litert"
    assert "TFLite has no general int4 weight path" in skip["reason"]
    assert "model_int4.tflite" not in rows
