"""Pipeline files: the shipped ones validate, flags override, paths are relative to the file.
(Bad files, one line naming the file and the key: test_bad_inputs.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from compress import Pipeline
from compress.cli import main
from compress.runs.config import PipelineConfig, load_pipeline_file, resolve_stages

PIPELINES = sorted((Path(__file__).parents[1] / "pipelines").glob("*.toml"))


@pytest.mark.parametrize("path", PIPELINES, ids=[p.name for p in PIPELINES])
def test_every_shipped_pipeline_validates(path, capsys):
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"ok: {path}")


def test_cnn_file_and_cli_flags_resolve_to_the_same_pipeline():
    from_file = load_pipeline_file(PIPELINES[0].parent / "cnn_int8.toml")
    from_flags = PipelineConfig.for_model("cnn", {"quantize.mode": "int8"})
    assert Pipeline.from_config(from_file).describe() == Pipeline.from_config(from_flags).describe()


def test_flags_and_set_override_file_values(tmp_path):
    cfg = load_pipeline_file(PIPELINES[0].parent / "cnn_int8.toml").with_overrides(
        {"quantize.mode": "dynamic", "train.epochs": 2, "seed": 7}
    )
    stages = dict(resolve_stages(cfg))
    assert stages["quantize"]["mode"] == "dynamic"
    assert stages["train"]["epochs"] == 2 and stages["train"]["seed"] == 7
    assert stages["build"]["seed"] == 7


def test_paths_in_a_pipeline_file_are_relative_to_the_file(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "m.keras", "w") as zf:  # checked up front: a real archive
        zf.writestr("config.json", "{}")
    (tmp_path / "d.npz").write_bytes(b"")
    path = tmp_path / "sub.toml"
    path.write_text('model = "m.keras"\ndata = "d.npz"\n[stages.build]\n')
    cfg = load_pipeline_file(path)
    assert cfg.model == str(tmp_path / "m.keras") and cfg.data == str(tmp_path / "d.npz")


def test_pipeline_file_and_flags_give_the_same_report(tmp_path, capsys):
    """Trained from scratch both times (no cache): same pipeline, same seed, same numbers."""
    import json

    path = tmp_path / "mt.toml"
    path.write_text(
        'model = "multitask"\n[stages.build]\n[stages.train]\nepochs = 2\n[stages.export_tflite]\n'
        '[stages.export_onnx]\n[stages.quantize]\nmode = "dynamic"\n[stages.verify]\n'
    )
    common = ["--out", str(tmp_path / "out"), "--no-cache", "--json", "--quiet"]
    assert main(["run", str(path), *common]) == 0
    from_file = json.loads(capsys.readouterr().out)
    flags = ["run", "multitask", "--epochs", "2", "--quantize", "dynamic"]
    assert main([*flags, *common]) == 0
    from_flags = json.loads(capsys.readouterr().out)
    assert from_file["pipeline"] == from_flags["pipeline"]

    def measured(report):
        return [(a["name"], a["heads"]) for a in report["verification"]["artifacts"]]

    assert measured(from_file) == measured(from_flags)


def test_what_a_stage_takes_from_another_is_declared_on_its_field():
    """quantize's fallback budget is verify's gate, its search times candidates on verify's
    timing budget and build reads labels as verify.task says, as their fields declare; a value
    set on the stage itself wins."""
    from compress.stages import Build, Quantize

    assert Quantize.Params.inherited() == {
        "max_drift": "verify.max_drift", "max_error": "verify.max_error",
        "max_ppl_increase": "verify.max_ppl_increase",
        "timing_budget_s": "verify.timing_budget_s",
    }  # fmt: skip
    assert Build.Params.inherited() == {"task": "verify.task"}
    gated = dict(
        resolve_stages(
            PipelineConfig.for_model(
                "cnn",
                {
                    "verify.max_drift": 2.5,
                    "verify.task": "classify",
                    "verify.timing_budget_s": 0.01,
                },
            )  # fmt: skip
        )
    )
    assert gated["quantize"]["max_drift"] == 2.5 and gated["build"]["task"] == "classify"
    assert gated["quantize"]["max_error"] == 0.05  # verify's default
    assert gated["quantize"]["timing_budget_s"] == 0.01
    own = dict(
        resolve_stages(
            PipelineConfig.for_model("cnn", {"verify.max_drift": 2.5, "quantize.max_drift": 0.5})
        )
    )
    assert own["quantize"]["max_drift"] == 0.5
