"""int4 in both runtimes: onnxruntime MatMulNBits (int8 compute at accuracy_level 4, or float)
and TFLite through ai-edge-quantizer (int4 weights two per byte, dynamic int8 activations,
channel-wise or blockwise), chosen by measurement and verified like every artifact; the file's
own int4 weights are read back; mixed 4/8 when the budget needs it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from compress.backends.litert import LiteRTBackend, unpack_int4
from compress.cli import main


@pytest.fixture(scope="module")
def int4_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("int4")
    argv = ["run", "multitask", "--quantize", "int4", "--epochs", "2", "--out", str(out),
            "--json", "--max-drift", "100", "--set", "verify.timing_budget_s=0.02"]  # fmt: skip
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(argv)
    report = json.loads(buf.getvalue())
    rows = {a["name"]: a for a in report["verification"]["artifacts"]}
    return {"code": code, "report": report, "rows": rows,
            "dir": out / "multitask" / report["run_id"]}  # fmt: skip


def test_onnx_int4_packs_matmul_weights_with_the_chosen_accuracy_level(int4_run):
    import onnx

    assert int4_run["code"] == 0
    int4, fp32 = int4_run["rows"]["model_int4.onnx"], int4_run["rows"]["model_fp32.onnx"]
    recipe = int4["recipe"]
    assert int4["precision"] == "int4"
    assert {c["id"] for c in recipe["candidates"]} >= {"int4-int8-compute", "weight-only-int4"}
    assert int4["size_bytes"] < 0.3 * fp32["size_bytes"]  # 4 bits + scales vs 32 bits
    graph = onnx.load(str(int4_run["dir"] / "model_int4.onnx")).graph
    nbits = [n for n in graph.node if n.op_type == "MatMulNBits"]
    assert len(nbits) == 3  # the three Dense kernels
    attrs = {a.name: a.i for a in nbits[0].attribute}
    assert attrs["bits"] == 4 and attrs["block_size"] == 32
    assert attrs.get("accuracy_level", 0) == (recipe["knobs"].get("accuracy_level") or 0)
    packed = {i.name: i for i in graph.initializer}[nbits[0].input[1]]
    assert packed.data_type == onnx.TensorProto.UINT8  # two weights per byte
    for m in int4["heads"].values():
        assert np.isfinite(m["drift"]) and m["agreement"] > 90.0


def test_tflite_int4_is_built_by_ai_edge_quantizer_and_holds_int4_weights(int4_run):
    report, rows = int4_run["report"], int4_run["rows"]
    assert "model_int4.tflite" not in {s["name"] for s in report["skipped"]}
    int4, fp32 = rows["model_int4.tflite"], rows["model_fp32.tflite"]
    ids = {c["id"] for c in int4["recipe"]["candidates"]}
    assert {"aeq-dynamic-int4-channel", "aeq-dynamic-int4-block32", "aeq-weight-only-int4"} <= ids
    assert int4["recipe"]["id"] in ids and int4["precision"] == "int4"
    # the three Dense kernels, read back from the flatbuffer and unpacked: 4-bit values
    kernels = [t for t in int4["weights"]["tensors"] if t["dtype"] == "int4"]
    assert len(kernels) == 3 and all(t["unique"] <= 16 for t in kernels)
    assert int4["size_bytes"] < 0.3 * fp32["size_bytes"]
    assert fp32["bits_per_weight"] > 32 and int4["bits_per_weight"] < 8
    counted = LiteRTBackend().count_weights(int4_run["dir"] / "model_int4.tflite")
    assert counted["weight_count"] == int4["weights"]["weight_count"]
    for m in int4["heads"].values():
        assert np.isfinite(m["drift"]) and m["agreement"] > 90.0


def test_unpack_int4_reads_ai_edge_quantizers_packing():
    from ai_edge_quantizer.transformations.transformation_utils import pack_data

    values = np.array([[-8, -1, 0, 7, 3], [1, -2, 5, -7, 2]], dtype=np.int8)
    packed = pack_data(4, values)
    assert packed.size == 5  # 10 values, two per byte
    np.testing.assert_array_equal(unpack_int4(np.asarray(packed, np.uint8), (2, 5)), values)


def test_every_artifact_carries_its_op_profile(int4_run):
    """onnxruntime's profiler gives each op type's kernel time per call; LiteRT says which op
    types XNNPACK ran (every FULLY_CONNECTED of these files, int4 ones included)."""
    import onnx

    rows = int4_run["rows"]
    onnx_int4 = rows["model_int4.onnx"]["op_profile"]
    ops = {r["op"]: r for r in onnx_int4["op_types"]}
    graph_ops = {n.op_type for n in onnx.load(str(int4_run["dir"] / "model_int4.onnx")).graph.node}
    assert "MatMulNBits" in ops and "MatMulNBits" in graph_ops
    assert ops["MatMulNBits"]["kernels"] == {"CPUExecutionProvider": 3}
    assert sum(r["share"] for r in ops.values()) == pytest.approx(100.0)
    assert all(r["ms"] > 0 for r in ops.values()) and onnx_int4["calls"] == 20
    kernels = {r["op"]: r["kernels"] for r in rows["model_fp32.tflite"]["op_profile"]["op_types"]}
    assert kernels["FULLY_CONNECTED"] == {"XNNPACK": 3}
    kernels = {r["op"]: r["kernels"] for r in rows["model_int4.tflite"]["op_profile"]["op_types"]}
    assert sum(kernels["FULLY_CONNECTED"].values()) == 3
    if rows["model_int4.tflite"]["recipe"]["id"] == "aeq-weight-only-int4":
        assert "DEQUANTIZE" in kernels  # int4 weights dequantized to float before each op
    assert "op_profile" not in rows["model.keras"]
