"""What the layout promises a newcomer: a recipe is one table row, a runtime is one backend
registered by name. Each is added here the way the README says, and the stages pick it up."""

from __future__ import annotations

from pathlib import Path

import pytest

from compress import Pipeline, stages
from compress.backends import BACKENDS, RecipeSpec, Sources
from compress.backends.litert import LiteRTBackend


class MirrorBackend(LiteRTBackend):
    """A 'new runtime': LiteRT files under another name, with its own recipe table."""

    runtime = "mirror"
    suffix = ".mirror.tflite"
    recipes = (
        RecipeSpec("fp32", "fp32", "mirror float32"),
        RecipeSpec("mirror-int8", "int8", "mirror full int8",
                   {"optimize": True, "int8_ops": True, "per_channel": True}),
    )  # fmt: skip


class ExportMirror(stages.Stage):
    """The thin export stage a runtime that exports from Keras adds."""

    name = "export_mirror"

    def run(self, state):
        mirror = BACKENDS["mirror"]
        return state.add(
            (mirror.make(state.workdir, mirror.recipe("fp32"), Sources(self.model(state))),)
        )


def _pipeline(*exports: stages.Stage) -> Pipeline:
    return Pipeline([
        stages.Build(model="multitask", train_samples=300), stages.Train(epochs=1),
        stages.ExportTFLite(), *exports, stages.Quantize(mode="int8"),
        # max_drift 100: 1 epoch on 300 samples; these tests are about what gets measured
        stages.Verify(max_drift=100, timing_budget_s=0.01, batch_sizes=(1,)),
    ])  # fmt: skip


def test_a_new_recipe_row_is_measured_by_the_search(monkeypatch, tmp_path):
    litert = BACKENDS["litert"]
    knobs = {"optimize": True, "int8_ops": True, "per_channel": False}
    extra = RecipeSpec(
        "int8-new-row", "int8", "per-tensor weights, a new row", knobs, search=("int8",)
    )
    monkeypatch.setattr(type(litert), "recipes", (*litert.recipes, extra))
    result = _pipeline().run(tmp_path, "multitask")
    row = next(a for a in result.report["verification"]["artifacts"]
               if a["name"] == "model_int8.tflite")  # fmt: skip
    measured = [c["id"] for c in row["recipe"]["candidates"]]
    expected = [s.id for s in litert.recipes if "int8" in s.search and s.needs is None]
    assert extra.id in measured and measured == expected  # multitask: no recurrent-only rows
    assert all("p50_ms_b1" in c for c in row["recipe"]["candidates"])


def test_a_new_runtime_is_one_registered_backend(monkeypatch, tmp_path):
    monkeypatch.setitem(BACKENDS, "mirror", MirrorBackend())
    result = _pipeline(ExportMirror()).run(tmp_path, "multitask")
    rows = {a["name"]: a for a in result.report["verification"]["artifacts"]}
    assert {"model_fp32.mirror.tflite", "model_int8.mirror.tflite"} <= set(rows)
    int8 = rows["model_int8.mirror.tflite"]
    assert int8["runtime"] == "mirror" and int8["recipe"]["id"] == "mirror-int8"
    assert int8["speedup"]["b1"] is not None  # timed against the mirror fp32, same rounds
    for head in int8["heads"].values():
        assert head["agreement"] >= 90.0
    assert Path(result.run_dir / "model_int8.mirror.tflite").stat().st_size < (
        Path(result.run_dir / "model_fp32.mirror.tflite").stat().st_size
    )
    # the registry names it everywhere, with no edit outside the backend: tune's fronts, the
    # report's charts (its own colour) and diff's rows
    from compress import tune
    from compress.report.markup import runtime_colors
    from compress.runs import diff

    assert tune.runtimes() == ("litert", "onnxruntime", "mirror")  # the registry's order
    metrics = tune.trial_metrics(result.report, max_drift=100)
    assert metrics["mirror"]["artifact"] == "model_int8.mirror.tflite"
    trial = {"number": 0, "state": "COMPLETE", "params": {}, "runtimes": metrics}
    setup = tune.TuneSetup(base=None, target="multitask", max_drift=100, space={})
    assert [p["trial"] for p in tune.fronts([trial], setup)["mirror"]] == [0]
    page = (result.run_dir / "report.html").read_text()
    colour = runtime_colors(a["runtime"] for a in result.report["verification"]["artifacts"])
    assert colour["mirror"] not in (colour["litert"], colour["keras"])
    assert colour["mirror"] in page  # its latency bars are drawn in its colour
    rows = {r["row"] for r in diff.compare(result.report, result.report)["rows"]}
    assert {"mirror fp32", "mirror shipped"} <= rows


@pytest.fixture(autouse=True)
def _no_leak():
    table = BACKENDS["litert"].recipes
    yield
    assert "mirror" not in BACKENDS and BACKENDS["litert"].recipes == table
