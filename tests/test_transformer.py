"""The transformer reference model through every stage: trained to >= 95% held out, int8 and
prune 0.8 + int8 within the shipped 1-point gate in both runtimes, the attention projections
pruned and clustered (tfmot alone does not reach them), QAT keeping what tfmot cannot annotate
float and saying so, and its .keras reloading in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from compress.cli import main

# trains the transformer (40 epochs) and runs it through every stage
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("transformer")
    reports = {}
    for name, extra in [("int8", []), ("prune", ["--prune", "0.8"])]:
        argv = ["run", "transformer", "--quantize", "int8", *extra, "--out", str(out / name),
                "--json", "--quiet", "--set", "verify.timing_budget_s=0.05"]  # fmt: skip
        import contextlib
        import io

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            code = main(argv)
        report = json.loads(buf.getvalue())
        reports[name] = {"code": code, "report": report,
                         "run_dir": out / name / "transformer" / report["run_id"]}  # fmt: skip
    return reports


@pytest.mark.parametrize("name", ["int8", "prune"])
def test_int8_passes_the_shipped_gate_in_both_runtimes(runs, name):
    run = runs[name]
    v = run["report"]["verification"]
    assert run["code"] == 0 and v["failures"] == [], v["failures"]
    # the float model reaches 95%; 80% of its weights pruned costs a few points (its own gate is
    # the pruned float model's, as for every model)
    assert (v.get("baseline_accuracy") or v["reference_accuracy"])["digit"] >= 95.0
    assert v["reference_accuracy"]["digit"] >= 90.0
    rows = {a["name"]: a for a in v["artifacts"]}
    for artifact in ("model_int8.tflite", "model_int8.onnx"):
        m = rows[artifact]["heads"]["digit"]
        assert m["drift"] <= 1.0 and m["agreement"] >= 97.0, (artifact, m)
        assert rows[artifact]["size_bytes"] < rows[artifact.replace("int8", "fp32")]["size_bytes"]


def test_pruning_reaches_the_attention_projections(runs):
    prune = runs["prune"]["report"]["stages"]["prune"]
    assert prune["not_pruned"] == {}
    for block in ("attention_0", "attention_1"):
        assert prune["layers"][block] > 0.7, prune["layers"]  # its four projection kernels
    for dense in ("ff_0_in", "ff_0_out", "ff_1_in", "ff_1_out"):
        assert prune["layers"][dense] == pytest.approx(0.8, abs=0.01)


def test_clustering_reaches_the_attention_projections(tmp_path, capsys):
    import numpy as np

    from compress import load_model

    argv = ["run", "transformer", "--cluster", "8", "--quantize", "none", "--out", str(tmp_path),
            "--json", "--quiet", "--set", "verify.timing_budget_s=0.02",
            "--set", "cluster.epochs=1"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    cluster = report["stages"]["cluster"]
    assert cluster["not_clustered"] == {}
    assert cluster["unique_values"]["attention_0"] <= 8 and cluster["unique_values"]["ff_1_in"] <= 8
    # the file itself: each projection kernel holds at most 8 values; the layer reloads whole
    model = load_model(tmp_path / "transformer" / report["run_id"] / "model_clustered.keras")
    attention = model.get_layer("attention_1")
    kernels = [w for w in attention.weights if w.name.endswith("kernel:0")]
    assert len(kernels) == 4
    assert all(len(np.unique(k.numpy())) <= 8 for k in kernels)
    assert all(len(np.unique(w.numpy())) > 8 for w in attention.weights if "bias" in w.name)


def test_the_keras_file_reloads_in_a_fresh_process(runs):
    path = runs["int8"]["run_dir"] / "model.keras"
    code = (
        "import sys, numpy as np\nfrom compress import load_model\n"
        f"m = load_model({str(path)!r})\n"
        "assert [type(l).__name__ for l in m.layers].count('SelfAttention') == 2\n"
        "print(m.predict(np.zeros((1, 8, 8), 'float32'), verbose=0).shape)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0 and "(1, 10)" in proc.stdout, proc.stderr[-2000:]


def test_qat_keeps_what_tfmot_cannot_annotate_float_and_says_so(tmp_path, capsys):
    argv = ["run", "transformer", "--quantize", "qat", "--out", str(tmp_path), "--json",
            "--quiet", "--max-drift", "100", "--set", "verify.timing_budget_s=0.02",
            "--set", "quantize.qat_epochs=1"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    rows = {a["name"]: a for a in report["verification"]["artifacts"]}
    left = set(rows["model_qat.tflite"]["left_float"])
    assert {"SelfAttention", "LayerNormalization"} <= left, left
