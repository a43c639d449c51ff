"""Progress: stage starts and ends with durations, steps of training and of the recipe search,
plain lines off a terminal, a live display on one, and nothing on stdout."""

from __future__ import annotations

import io

from compress.core import progress
from compress.runs.config import make
from compress.runs.pipeline import run


class Recorder(progress.Progress):
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def line(self, text: str) -> None:
        self.calls.append(("line", text))

    def stage_start(self, run: str, stage: str) -> None:
        self.calls.append(("start", stage))

    def stage_end(self, run: str, stage: str, seconds: float, note: str = "") -> None:
        assert seconds >= 0
        self.calls.append(("end", stage))

    def step(self, task: str, done: int, total: int | None) -> None:
        self.calls.append(("step", task, done, total))


def test_a_run_reports_every_stage_and_the_steps_of_long_ones(tmp_path, capsys):
    config = make(model="multitask", out=str(tmp_path),
                  stages={"build": {}, "train": {"epochs": 2}, "export_tflite": {},
                          "export_onnx": {}, "quantize": {"mode": "int8"},
                          "verify": {"timing_budget_s": 0.02}})  # fmt: skip
    recorder = Recorder()
    run(config, progress=recorder)
    stages = ["build", "train", "export_tflite", "export_onnx", "quantize", "verify"]
    assert [c[1] for c in recorder.calls if c[0] == "start"] == stages
    assert [c[1] for c in recorder.calls if c[0] == "end"] == stages
    steps = [c for c in recorder.calls if c[0] == "step"]
    assert ("step", "train: epochs", 1, 2) in steps and ("step", "train: epochs", 2, 2) in steps
    for runtime in ("litert", "onnxruntime"):
        mine = [c for c in steps if c[1] == f"quantize: {runtime} candidates"]
        assert mine and mine[-1][2] == mine[-1][3] > 1  # every candidate counted
    assert capsys.readouterr().out == ""


def test_plain_progress_prints_starts_and_ends_with_durations():
    lines: list[str] = []
    p = progress.adapt(lines.append)
    p.stage_start("cnn", "train")
    p.step("train: epochs", 1, 5)  # not printed off a terminal
    p.stage_end("cnn", "train", 3.21)
    assert lines == ["cnn: train ...", "cnn: train done in 3.2 s"]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_live_display_and_quiet_gets_nothing():
    assert progress.for_terminal(quiet=True) is None
    assert isinstance(progress.for_terminal(False, io.StringIO()), progress.Plain)
    stream = _Tty()
    live = progress.for_terminal(False, stream)
    assert isinstance(live, progress.Live)
    live.stage_start("cnn", "train")
    for epoch in range(1, 4):
        live.step("train: epochs", epoch, 3)
    live.stage_end("cnn", "train", 1.5)
    live.close()
    assert "cnn: train done in 1.5 s" in stream.getvalue()
