"""The pipeline object: stage contract, atomic run directories, one-line stage errors."""

from __future__ import annotations

import pytest

from compress import Pipeline, stages
from compress.core.errors import StageError, UsageError
from compress.core.fileio import write_atomic
from compress.stages.base import RunState, Stage


class Explode(Stage):
    name = "explode"

    def run(self, state: RunState) -> RunState:
        (state.workdir / "half-written.bin").write_bytes(b"\0" * 10)
        raise RuntimeError("boom\nsecond line")


def test_failed_stage_leaves_no_run_directory(tmp_path):
    pipe = Pipeline([stages.Build(model="cnn"), Explode()])
    with pytest.raises(StageError, match=r"^stage 'explode' failed: RuntimeError: boom$"):
        pipe.run(tmp_path, "cnn")
    assert list((tmp_path / "cnn").iterdir()) == []


def test_stage_params_are_validated_up_front():
    with pytest.raises(UsageError, match=r"^export_onnx.opset must be <= 18. Got 21 instead.$"):
        stages.ExportONNX(opset=21)
    with pytest.raises(UsageError, match=r"^quantize.colour is not a known setting"):
        stages.Quantize(colour="red")


def test_duplicate_stage_names_are_refused():
    with pytest.raises(UsageError, match="unique"):
        Pipeline([stages.ExportTFLite(), stages.ExportTFLite()])


@pytest.mark.parametrize("cls", list(stages.REGISTRY.values()))
def test_every_stage_refuses_a_state_without_its_inputs(cls, tmp_path):
    """The shared contract: construct from params, run(state) -> state, fail clearly if the
    state lacks what the stage needs."""
    required = {stages.Build: {"model": "cnn"}, stages.Prune: {"sparsity": 0.5},
                stages.Cluster: {"clusters": 8}}  # fmt: skip
    stage = cls(**required.get(cls, {}))
    assert stage.name in stages.REGISTRY
    if cls is stages.Build:
        state = stage.run(RunState(workdir=tmp_path))
        assert state.data is not None
        assert stage.model(state).output_names == state.data.heads  # built when first needed
        return
    with pytest.raises(StageError, match=f"stage '{stage.name}' needs"):
        stage.run(RunState(workdir=tmp_path))


def test_write_atomic_leaves_nothing_when_the_writer_fails(tmp_path):
    def bad(tmp):
        tmp.write_bytes(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_atomic(tmp_path / "x.bin", bad)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_python_api_example_runs(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).parents[1] / "examples" / "python_api.py"
    out = subprocess.run([sys.executable, str(example), str(tmp_path)], capture_output=True,
                         text=True, timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert next(x for x in lines if x.startswith("passed:")).startswith("passed: True ->")
    assert "tflite-only passed: True" in lines and "exported model_fp32.onnx" in out.stdout
    assert "model_int8.tflite" in out.stdout
