"""Gates: a drift or speedup past its gate is a failure naming the artifact, the value and the
gate; a failing run still writes its complete report and exits 1."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from compress.cli import main
from compress.measure.gates import compression_warnings
from compress.stages.verify import gate_failures


def _row(name, precision, drift, speedup):
    return {
        "name": name, "runtime": "litert", "precision": precision,
        "heads": {"digit": {"drift": drift}}, "speedup": {"b1": speedup},
    }  # fmt: skip


def test_drift_past_gate_names_artifact_drift_and_gate():
    rows = [_row("model_fp32.tflite", "fp32", 0.0, 1.0), _row("model_int8.tflite", "int8", 1.39, 3)]
    assert gate_failures(rows, max_drift=1.0, min_speedup=None) == [
        "model_int8.tflite (digit): accuracy drift 1.39 pts exceeds max_drift 1"
    ]


def test_drift_equal_to_gate_passes_and_improvement_passes():
    rows = [_row("a.tflite", "int8", 1.0, 2.0), _row("b.onnx", "int8", -0.5, 2.0)]
    assert gate_failures(rows, max_drift=1.0, min_speedup=None) == []


def test_speedup_gate_ignores_fp32_and_flags_slow_quantized():
    rows = [_row("model_fp32.onnx", "fp32", 0.0, 1.0), _row("model_int8.onnx", "int8", 0.0, 1.4)]
    assert gate_failures(rows, max_drift=1.0, min_speedup=2.0) == [
        "model_int8.onnx: speedup 1.40x at batch 1 is below min_speedup 2"
    ]


@pytest.mark.slow
def test_too_tight_gate_exits_1_and_still_leaves_report(tmp_path, capsys):
    junit = tmp_path / "ci" / "junit.xml"
    code = main(["run", "cnn", "--quantize", "dynamic", "--epochs", "1", "--out", str(tmp_path),
                 "--min-speedup", "1000", "--quiet", "--junit", str(junit)])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "gate failed: model_dynamic.tflite: speedup" in err and "min_speedup 1000" in err
    (run_dir,) = list((tmp_path / "cnn").iterdir())
    suite = ET.parse(junit).getroot().find("testsuite")
    cases = suite.findall("testcase")
    failed = [
        c.get("classname") + " " + c.get("name") for c in cases if c.find("failure") is not None
    ]
    assert sorted(failed) == [
        "cnn.model_dynamic.onnx min_speedup",
        "cnn.model_dynamic.tflite min_speedup",
    ]
    # per non-keras artifact: drift + repeatable; speedup only on the quantized ones
    assert len(cases) == 4 * 2 + 2 and suite.get("failures") == "2"
    report = json.loads((run_dir / "report.json").read_text())
    assert report["passed"] is False
    assert len(report["verification"]["failures"]) == 2
    assert {p.name for p in run_dir.iterdir()} >= {"model_dynamic.onnx", "manifest.json"}


def test_a_missing_speedup_fails_the_speedup_gate():
    rows = [_row("model_fp32.onnx", "fp32", 0.0, None), _row("model_int8.onnx", "int8", 0.0, None)]
    assert gate_failures(rows, max_drift=1.0, min_speedup=2.0) == [
        "model_int8.onnx: speedup at batch 1 was not measured, so min_speedup 2 is not met"
    ]
    assert gate_failures(rows, max_drift=1.0, min_speedup=None) == []


def _run_gated(tmp_path, capsys, *extra):
    argv = ["run", *extra, "--epochs", "2", "--set", "build.train_samples=400", "--set",
            "verify.timing_budget_s=0.02", "--set", "quantize.select=false",
            "--out", str(tmp_path), "--quiet"]  # fmt: skip
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


def test_drift_gate_fires_end_to_end_when_int8_outputs_are_wrong(tmp_path, capsys, monkeypatch):
    """int8 outputs scrambled (each sample gets another sample's answer): the drift gate fails
    the run with exit 1, naming the artifact, the head, the drift and the gate."""
    from compress.backends.litert import LiteRTRunner

    predict = LiteRTRunner.predict

    def scrambled(self, x):
        out = predict(self, x)
        return (
            {k: np.roll(v, 1, axis=0) for k, v in out.items()} if "int8" in self.path.name else out
        )

    monkeypatch.setattr(LiteRTRunner, "predict", scrambled)
    code, err = _run_gated(tmp_path, capsys, "multitask")
    assert code == 1 and err.count("\n") == 1
    assert "gate failed: model_int8.tflite (digit): accuracy drift" in err
    assert "exceeds max_drift 1" in err and "model_int8.onnx" not in err
    (run_dir,) = (tmp_path / "multitask").iterdir()
    report = json.loads((run_dir / "report.json").read_text())
    assert report["passed"] is False
    assert report["verification"]["failures"][0].startswith("model_int8.tflite (digit)")


def test_repeatability_gate_fires_end_to_end_for_a_runner_that_keeps_state(
    tmp_path, capsys, monkeypatch
):
    """The fused LSTM keeps state between invokes: without the reset, verify must fail the run."""
    from compress.backends.litert import LiteRTBackend

    monkeypatch.setattr(LiteRTBackend, "runner_options", lambda self, model: {"reset_state": False})
    # --max-drift 100: only the gate under test may fire (2 epochs leave the LSTM's drift noisy)
    code, err = _run_gated(tmp_path, capsys, "rnn", "--max-drift", "100")
    assert code == 1 and err.count("\n") == 1
    assert "model_fp32.tflite: outputs depend on earlier calls" in err
    assert "model_int8.tflite: outputs depend on earlier calls" in err
    assert "onnx" not in err.split("(report:")[0]


def test_speedup_gate_fails_when_a_speedup_could_not_be_measured(tmp_path, capsys, monkeypatch):
    from compress.backends.onnxruntime import OnnxRuntimeRunner

    timed_call = OnnxRuntimeRunner.timed_call

    def untimable(self, x, batch):
        return None if "int8" in self.path.name else timed_call(self, x, batch)

    monkeypatch.setattr(OnnxRuntimeRunner, "timed_call", untimable)
    # --max-drift 100: only the gate under test may fire
    code, err = _run_gated(tmp_path, capsys, "multitask", "--max-drift", "100",
                           "--min-speedup", "0.01")  # fmt: skip
    assert code == 1 and err.count("\n") == 1
    assert "model_int8.onnx: speedup at batch 1 was not measured" in err
    assert "model_int8.tflite" not in err  # measured, and far above 0.01x


def _sized(name, precision, size, speedup=None, candidates=(), runtime="onnxruntime"):
    return {"name": name, "runtime": runtime, "precision": precision, "size_bytes": size,
            "speedup": {"b1": speedup}, "heads": {},
            "recipe": {"id": "r", "candidates": list(candidates),
                       "selection": {"min_agreement": 99.0}}}  # fmt: skip


def test_a_file_a_hair_smaller_than_fp32_is_not_smaller_and_fp32_is_the_one_to_ship():
    """EfficientNetB0's ONNX "int8" file: only the last Dense quantized, 0.07% under fp32."""
    cands = [{"id": "static-qdq-matmul-only", "chosen": True, "speedup_b1": 1.0},
             {"id": "static-qdq-all-ops", "speedup_b1": 1.16, "size_bytes": 4_900_000,
              "eligible": False, "lost": "agreement 30.0% < 99% floor"}]  # fmt: skip
    rows = [_sized("model_fp32.onnx", "fp32", 15_966_724, 1.0),
            _sized("model_int8.onnx", "int8", 15_955_308, 1.02, cands)]  # fmt: skip
    (warning,) = compression_warnings(rows)
    assert warning.startswith("model_int8.onnx is not smaller than model_fp32.onnx by 5% ")
    # the faster candidate failed the floor: it is not offered as the alternative
    assert "no other recipe measured passes the accuracy floor (99% agreement)" in warning
    assert "static-qdq-all-ops: agreement 30.0% < 99% floor" in warning
    assert warning.endswith("the fp32 file (model_fp32.onnx) is the one to ship in onnxruntime")


def test_slower_means_slower_beyond_the_noise_and_a_contradicted_search_is_unsure():
    fp32 = _sized("model_fp32.tflite", "fp32", 1000, 1.0, runtime="litert")
    same = _sized("model_int8.tflite", "int8", 300, 0.97, runtime="litert")
    assert compression_warnings([fp32, same]) == []  # 3% slower: one speed on a busy CPU
    searched = [{"id": "full-int8", "chosen": True, "speedup_b1": 1.38}]
    contradicted = _sized("model_int8.tflite", "int8", 300, 0.90, searched, runtime="litert")
    warnings = compression_warnings([fp32, contradicted])
    assert any("slower than model_fp32.tflite at batch 1 (0.90x" in w for w in warnings)
    unsure = ("model_int8.tflite: unsure timing: the recipe search measured full-int8 at 1.38x "
              "fp32 and verify at 0.90x")  # fmt: skip
    assert any(w.startswith(unsure) for w in warnings)


def test_a_choice_below_the_accuracy_floor_is_said_and_fp32_is_the_one_to_ship():
    """A 600M-parameter random MLP's int4 search: no candidate reached 99% agreement, and the
    closest (72%) was kept; the search marks it, and the run says so rather than ship it as a
    choice that passed. QAT searches rank without the floor (min_agreement 0): nothing said."""
    from compress.backends.select import annotate

    def searched(min_agreement, max_ppl=None, ppl=None, agreement=72.0):
        entries = [
            {"id": "int4-kquant", "p50_ms_b1": 1.0, "speedup_b1": 5.35, "size_bytes": 400,
             "agreement": agreement},
            {"id": "int4-rtn", "p50_ms_b1": 1.03, "speedup_b1": 5.17, "size_bytes": 400,
             "agreement": 66.5},
        ]  # fmt: skip
        if ppl is not None:
            entries[0]["ppl_increase"], entries[1]["ppl_increase"] = ppl, ppl + 1
        annotate(entries, min_agreement, "latency", 2000, max_ppl)
        return _sized("model_int4.onnx", "int4", 400, 5.09, entries)

    fp32 = _sized("model_fp32.onnx", "fp32", 2000, 1.0)
    (warning,) = compression_warnings([fp32, searched(99.0)])
    assert warning.startswith(
        "model_int4.onnx was chosen below its search's accuracy floor (no recipe candidate "
        "reached it; int4-kquant came closest: agreement 72.0% < 99% floor)"
    )
    assert warning.endswith("the fp32 file (model_fp32.onnx) is the one to ship in onnxruntime")
    assert compression_warnings([fp32, searched(99.0, agreement=99.5)]) == []
    assert compression_warnings([fp32, searched(0.0)]) == []  # QAT
    (warning,) = compression_warnings([fp32, searched(99.0, max_ppl=1.0, ppl=3.5)])
    assert "int4-kquant came closest: perplexity +3.50% over the 1% budget)" in warning
