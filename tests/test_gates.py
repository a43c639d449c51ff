"""Gates: a drift or speedup past its gate is a failure naming the artifact, the value and the
gate; a failing run still writes its complete report and exits 1."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from compress.cli import main
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
