"""Failure behaviour: interruption, tampered artifacts, concurrent runs, a full disk."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from compress.cli import main

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
# The interrupted runs are about the run directory and the cache, not about what the CNN learns
# or which recipe wins: a smaller training split, the mode's default recipe (no search) and a
# short timing. The CNN keeps its size, so each stage lasts long enough to be interrupted in.
SMALL = ["--set", "build.train_samples=400", "--set", "quantize.select=false",
         "--set", "verify.timing_budget_s=0.02"]  # fmt: skip


def _start(args, cache):
    cmd = [sys.executable, "-m", "compress", "run", *args, "--cache-dir", str(cache)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def _wait_for(proc, marker, timeout=300):
    """Read the progress lines on stderr until one contains `marker`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        if marker in line:
            return
    proc.kill()
    pytest.fail(f"never saw {marker!r}")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "code", "stage"), [(signal.SIGINT, 130, "export_onnx"), (signal.SIGTERM, 143, "train")]
)
def test_signal_mid_run_leaves_nothing_partial_and_next_run_works(sig, code, stage, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    proc = _start(["cnn", "--epochs", "1", "--out", str(out), *SMALL], cache)
    _wait_for(proc, f"cnn: {stage} ...")
    time.sleep(1.0)  # inside the stage
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == code, err
    assert err.strip().splitlines()[-1].startswith("compress: ")
    assert list((out / "cnn").iterdir()) == []  # no run directory, complete or partial
    assert not [p for p in cache.rglob(".tmp-*")]  # no half-written cache entry
    # The same command again: what finished before the signal is reused intact, the rest runs.
    # --max-drift 100: a 1-epoch model's int8 drift is noise; this is about the cache's integrity
    # (no quantize stage: the stages up to export_onnx are the ones the signal cut)
    again = _start(["cnn", "--epochs", "1", "--out", str(out), "--quiet", "--max-drift", "100",
                    "--json", "--quantize", "none", *SMALL], cache)  # fmt: skip
    stdout, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr
    cached = json.loads(stdout)["cache"]
    finished = {"export_onnx": ["train", "export_tflite"], "train": []}[stage]
    assert [s for s, state in cached.items() if state == "hit"] == finished
    assert cached[stage] == "stored"
    (run_dir,) = (out / "cnn").iterdir()
    assert main(["verify-artifacts", str(run_dir)]) == 0


@pytest.mark.slow
def test_a_killed_run_leaves_its_tmp_dir_and_the_next_run_removes_it(tmp_path):
    """SIGKILL cannot be caught: the run's temporary directory stays. The next run into the same
    --out removes it (its process is gone) and says so; a live run's directory is left alone."""
    out, cache = tmp_path / "out", tmp_path / "cache"
    proc = _start(["multitask", "--epochs", "30", "--out", str(out), "--no-cache"], cache)
    _wait_for(proc, "multitask: train ...")
    proc.kill()
    proc.communicate(timeout=60)
    (left,) = (out / "multitask").iterdir()
    assert left.name.startswith(".tmp-") and left.name.endswith(f".{proc.pid}")
    alive = out / "multitask" / f".tmp-20260101-000000-abcdef.{os.getpid()}"
    alive.mkdir()
    again = _start(["multitask", "--epochs", "1", "--out", str(out), "--quantize", "none"], cache)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert f"multitask: removed {left.name} (left by a run that ended without cleaning up)" in err
    names = sorted(p.name for p in (out / "multitask").iterdir())
    assert left.name not in names and alive.name in names and len(names) == 2


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_a_framework_swallows_still_stops_the_run(
    sig, code, tmp_path, monkeypatch, capsys
):
    """tf2onnx wraps per-node helpers in bare `except: pass`: a Ctrl-C landing there is caught
    by tf2onnx, not by compress. The run must still stop, after that stage, leaving nothing."""
    from compress.stages.export_onnx import ExportONNX

    run_export = ExportONNX.run

    def swallowing(self, state):
        try:
            os.kill(os.getpid(), sig)
            time.sleep(1.0)  # the handler raises in here
        except BaseException:  # noqa: BLE001 - what the framework does
            pass
        return run_export(self, state)

    monkeypatch.setattr(ExportONNX, "run", swallowing)
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = ["run", "multitask", "--epochs", "1", "--quiet", "--out", str(out),
            "--cache-dir", str(cache)]  # fmt: skip
    assert main(argv) == code
    assert capsys.readouterr().err.startswith("compress: ")
    assert list((out / "multitask").iterdir()) == []  # no run directory, complete or partial
    stored = {json.loads(p.read_text())["stage"] for p in cache.rglob("entry.json")}
    assert "export_onnx" not in stored  # the interrupted stage's result is not cached


CROSSING = """
import atexit, ctypes, sys
import compress.cli

run_string = ctypes.pythonapi.PyRun_String
run_string.restype = ctypes.py_object
run_string.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.py_object, ctypes.py_object]


def main():
    # a Ctrl-C raised inside C code that runs Python through PyRun_String (pybind11's eval, as
    # TensorFlow's does), caught by compress like any other
    try:
        run_string(b"raise KeyboardInterrupt", 257, {}, {})
    except KeyboardInterrupt:
        return 130


atexit.register(print, "cleanup ran")
compress.cli.main = main
compress.cli.run()
"""


def test_ctrl_c_that_crossed_c_code_still_exits_130_after_cleanup(tmp_path):
    """CPython ends `python -m` by SIGINT (returncode -2) when a KeyboardInterrupt once crossed
    PyRun_String, even one caught since; the `compress` entry point keeps its code, 130."""
    (tmp_path / "crossing").mkdir()
    (tmp_path / "crossing" / "__main__.py").write_text(CROSSING)
    proc = subprocess.run([sys.executable, "-m", "crossing"], cwd=tmp_path, capture_output=True,
                          text=True, env=ENV, timeout=60)  # fmt: skip
    assert (proc.returncode, proc.stdout) == (130, "cleanup ran\n"), proc.stderr


def test_verify_artifacts_finds_tampered_truncated_and_extra_files(cnn_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(cnn_run["run_dir"], run_dir)
    assert main(["verify-artifacts", str(run_dir)]) == 0
    assert capsys.readouterr().out.startswith("ok: 9 files")  # all but the manifest itself
    tflite = run_dir / "model_int8.tflite"
    tflite.write_bytes(tflite.read_bytes()[:1000])
    report = run_dir / "report.md"
    report.write_text(report.read_text().replace("passed", "PASSED"))
    (run_dir / "extra.bin").write_bytes(b"x")
    (run_dir / "model_fp32.onnx").unlink()
    assert main(["verify-artifacts", str(run_dir)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    for expected in ("model_int8.tflite (size 1,000", "report.md (sha256 differs",
                     "model_fp32.onnx (missing)", "extra.bin (not in the manifest)"):  # fmt: skip
        assert expected in err, err


@pytest.mark.slow
def test_two_concurrent_runs_into_one_out_and_one_cache(tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    # --max-drift 100: a 1-epoch model's int8 drift is noise; this is about concurrent runs
    args = ["multitask", "--epochs", "1", "--out", str(out), "--quiet", "--max-drift", "100"]
    procs = [_start(args, cache) for _ in range(2)]
    assert [p.wait(timeout=600) for p in procs] == [0, 0], [p.stderr.read() for p in procs]
    runs = sorted((out / "multitask").iterdir())
    assert len(runs) == 2 and not [r for r in runs if r.name.startswith(".tmp")]
    for run_dir in runs:
        assert main(["verify-artifacts", str(run_dir)]) == 0
    # one made each stage; the other waited for it (the stage's claim) and reused it
    states = [json.loads((r / "report.json").read_text())["cache"] for r in runs]
    assert sorted(s["train"] for s in states) == ["hit", "stored"], states
    assert not [p for p in cache.rglob(".tmp-*")]
    third = _start(args, cache)  # the shared cache is intact: a rerun reuses it
    assert third.wait(timeout=300) == 0
    newest = max((out / "multitask").iterdir(), key=lambda p: p.stat().st_mtime)
    assert json.loads((newest / "report.json").read_text())["cache"]["train"] == "hit"


def test_full_disk_is_one_line_and_leaves_no_run_directory(monkeypatch, tmp_path, capsys):
    from compress.backends import base

    def no_space(path, write):  # every artifact a backend makes is written through this
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(base, "write_atomic", no_space)
    code = main(["run", "multitask", "--epochs", "1", "--out", str(tmp_path), "--quiet",
                 "--no-cache"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert "cannot write" in err and "No space left on device" in err
    assert list((tmp_path / "multitask").iterdir()) == []
