"""compress diff BASE NEW: per runtime and head deltas; gates exit 1 naming the regression; the
latency gate only between runs timed alike."""

from __future__ import annotations

import json

import pytest

from compress.cli import main


@pytest.fixture(scope="module")
def unquantized(cnn_run, tmp_path_factory):
    """The CNN run without quantization: the deliberately worse run (same training, cached)."""
    out = tmp_path_factory.mktemp("none")
    code = main(["run", "cnn", "--quantize", "none", "--epochs", "2", "--out", str(out),
                 "--quiet"])  # fmt: skip
    assert code == 0
    return next((out / "cnn").iterdir())


def _diff(capsys, *argv):
    code = main(["diff", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_run_that_stopped_quantizing_fails_the_size_gate(cnn_run, unquantized, capsys):
    code, out, err = _diff(capsys, cnn_run["run_dir"], unquantized, "--max-size-increase", "10")
    assert code == 1
    assert "litert shipped: gzip size +" in err and "model_int8.tflite -> model_fp32.tflite" in err
    assert "onnxruntime shipped" in err
    base = next(a for a in cnn_run["report"]["verification"]["artifacts"]
                if a["name"] == "model_int8.tflite")  # fmt: skip
    new = json.loads((unquantized / "report.json").read_text())
    fp32 = next(a for a in new["verification"]["artifacts"] if a["name"] == "model_fp32.tflite")
    pct = (fp32["size_gzip_bytes"] - base["size_gzip_bytes"]) / base["size_gzip_bytes"] * 100
    # int8 weights are a quarter of fp32's; gzip narrows that a little (CI measured 296%)
    assert pct > 200 and f"+{pct:.1f}%" in err  # the measured jump, as measured
    assert "REGRESSION: litert shipped" in out


def test_a_run_against_itself_passes_every_gate(cnn_run, capsys):
    run_dir = cnn_run["run_dir"]
    gates = ["--max-size-increase", "0", "--max-latency-increase", "0",
             "--max-accuracy-drop", "0"]  # fmt: skip
    code, out, _ = _diff(capsys, run_dir, run_dir / "report.json", *gates, "--json")
    assert code == 0
    result = json.loads(out)
    assert result["regressions"] == [] and result["timing_comparable"]
    rows = {r["row"]: r for r in result["rows"]}
    assert set(rows) == {"keras", "litert fp32", "litert shipped", "onnxruntime fp32",
                         "onnxruntime shipped"}  # fmt: skip
    assert rows["litert shipped"]["artifact"] == {"base": "model_int8.tflite",
                                                  "new": "model_int8.tflite"}  # fmt: skip
    assert rows["litert shipped"]["latency_ms"]["b1"]["pct"] == 0.0


def test_latency_is_not_gated_across_cpus_and_accuracy_drops_are(cnn_run, tmp_path, capsys):
    report = json.loads(json.dumps(cnn_run["report"]))
    report["environment"]["cpu"] = "Another CPU"
    for a in report["verification"]["artifacts"]:
        if a.get("latency_ms"):
            a["latency_ms"]["b1"]["p50_ms"] *= 10
        if a["name"] == "model_int8.onnx":
            a["heads"]["digit"]["accuracy"] -= 2.5
    slower = tmp_path / "report.json"
    slower.write_text(json.dumps(report))
    code, out, err = _diff(capsys, cnn_run["run_dir"], slower, "--max-latency-increase", "5",
                           "--max-accuracy-drop", "1")  # fmt: skip
    assert code == 1
    assert "latency not compared: BASE was timed on" in out and "Another CPU" in out
    assert "p50 latency" not in err
    assert "onnxruntime shipped: head digit accuracy" in err and "(-2.50 pts)" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing-dir", "missing-dir"], "'missing-dir' has no report.json"),
        (["{run}", "{run}", "--max-size-increase", "-1"], "--max-size-increase must be >= 0"),
    ],
)
def test_bad_diff_input_is_one_line(cnn_run, capsys, args, message):
    argv = [a.replace("{run}", str(cnn_run["run_dir"])) for a in args]
    code, _, err = _diff(capsys, *argv)
    assert code == 2 and message in err and err.count("\n") == 1


def test_the_ci_gate_script_keeps_the_last_good_run_as_baseline(cnn_run, unquantized, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parent.parent / "examples" / "ci" / "diff_gate.sh"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    baseline = tmp_path / "baseline" / "report.json"

    def gate(run_dir):
        return subprocess.run(["bash", str(script), str(baseline), str(run_dir)],
                              capture_output=True, text=True, env=env, timeout=120)  # fmt: skip

    first = gate(cnn_run["run_dir"])
    assert first.returncode == 0 and "this run becomes it" in first.stdout
    good = baseline.read_text()
    worse = gate(unquantized)
    assert worse.returncode == 1, worse.stderr
    assert "litert shipped: gzip size" in worse.stderr
    assert baseline.read_text() == good  # a regression does not become the baseline
    again = gate(cnn_run["run_dir"])
    assert again.returncode == 0, again.stderr + again.stdout
