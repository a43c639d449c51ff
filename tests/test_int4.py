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


def test_tflite_layer_errors_carry_ai_edge_quantizers_per_tensor_validation(int4_run):
    """Each layer's SQNR comes with ai-edge-quantizer's own per-tensor SNR (XNNPACK kernels);
    where the reference kernels cannot stand in for the deployed ones, its rows are the ones."""
    errors = int4_run["rows"]["model_int4.tflite"]["layer_errors"]
    assert "unavailable" not in errors and errors["layers"], errors
    for r in errors["layers"]:
        db = r.get("validator_sqnr_db", r["sqnr_db"] if r.get("source") else None)
        assert isinstance(db, float) and db > 0, r


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


def test_kquant_int4_quantizes_every_matmul_including_odd_block_counts(tmp_path):
    """k-quant through onnxruntime 1.32 fails to pack a weight with an odd number of blocks per
    column (96 rows: 3 blocks of 32): that MatMul rounds to nearest, the other gets k-quant's
    asymmetric blocks, and the file computes what the fp32 graph computes within 4-bit error."""
    import onnx

    from compress.backends import onnxruntime as ort_backend
    from compress.backends.onnx_weights import odd_block_matmuls

    fp32, graph, w1, w2 = _two_matmuls(tmp_path, 96)
    assert odd_block_matmuls(graph, 32) == ["first"]
    backend = ort_backend.OnnxRuntimeBackend()
    out = tmp_path / "kquant.onnx"
    ort_backend.quantize(fp32, out, backend.recipe("int4-kquant-int8-compute").knobs, None)
    assert [n.op_type for n in onnx.load(str(out)).graph.node] == ["MatMulNBits", "MatMulNBits"]
    x = np.random.default_rng(1).normal(size=(1, 96)).astype(np.float32)
    (got,) = backend.open_runner(out).predict(x).values()
    expected = x @ w1 @ w2
    assert np.abs(got - expected).max() < 0.1 * np.abs(expected).max()


def _two_matmuls(tmp_path, rows: int):
    """An ONNX graph x (1 x rows) -> MatMul(rows x 64) -> MatMul(64 x 16), and its weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(rows, 64)).astype(np.float32)
    w2 = rng.normal(size=(64, 16)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"], name="first"),
         helper.make_node("MatMul", ["h", "w2"], ["y"], name="second")],
        "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, rows])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )  # fmt: skip
    path = tmp_path / "mlp.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path, graph, w1, w2


def test_gptq_row_is_a_candidate_only_where_torch_is_installed(monkeypatch):
    import importlib.util

    from compress.backends import BACKENDS, Sources

    ort = BACKENDS["onnxruntime"]
    src = Sources(model=None)
    find_spec = importlib.util.find_spec

    def without_torch(name, *args):
        return None if name == "torch" else find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_torch)
    ids = {s.id for s in ort.candidates("int4", src)}
    assert "int4-kquant-int8-compute" in ids and "int4-gptq-int8-compute" not in ids


def test_gptq_int4_is_calibrated_and_rounds_weights_too_large_for_its_hessian(
    tmp_path, monkeypatch
):
    """GPTQ (needs the gptq extra: PyTorch), calibrated on samples whose features differ in
    scale, errs less than rounding to nearest on other samples of the same kind (its
    asymmetric blocks: onnxruntime's symmetric GPTQ erred more than rounding, measured); a
    weight over GPTQ_MAX_ROWS rows rounds to nearest instead of building its Hessian."""
    pytest.importorskip("torch")
    import onnx

    from compress.backends import onnx_weights
    from compress.backends import onnxruntime as ort_backend

    fp32, graph, w1, w2 = _two_matmuls(tmp_path, 128)
    x = np.random.default_rng(1).normal(size=(512, 128)).astype(np.float32)
    x[:, 64:] *= 0.05
    calib, held_out = x[:256], x[256:]
    backend = ort_backend.OnnxRuntimeBackend()

    def rms_error(recipe: str) -> float:
        out = tmp_path / f"{recipe}.onnx"
        ort_backend.quantize(fp32, out, backend.recipe(recipe).knobs, calib)
        assert [n.op_type for n in onnx.load(str(out)).graph.node] == ["MatMulNBits"] * 2
        runner = backend.open_runner(out)
        got = np.concatenate([next(iter(runner.predict(s[None]).values())) for s in held_out])
        return float(np.sqrt(((got - held_out @ w1 @ w2) ** 2).mean()))

    assert rms_error("int4-gptq-int8-compute") < rms_error("int4-int8-compute")
    monkeypatch.setattr(onnx_weights, "GPTQ_MAX_ROWS", 64)
    assert onnx_weights.large_matmuls(graph, 64) == ["first"]
    rms_error("int4-gptq-int8-compute")  # the first rounded to nearest, the second GPTQ
