"""Pipeline files: validated before any work, errors name the file and the key, flags override."""

from __future__ import annotations

from pathlib import Path

import pytest

from compress import Pipeline
from compress.cli import main
from compress.config import PipelineConfig, load_pipeline_file, resolve_stages
from compress.errors import UsageError

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


BAD_FILES = [
    ('model = "cnn"\ncolour = "red"\n[stages.verify]\n', "colour is not a known setting"),
    ('model = "cnn"\n[stages.distill]\nt = 2\n', "unknown stage 'distill'. Expected one of"),
    ('model = "cnn"\n[stages.prune]\nsparsity = 1.5\n',
     "prune.sparsity must be in [0, 1). Got 1.5 instead."),
    ('model = "cnn"\n[stages.cluster]\nclusters = 1\n', "cluster.clusters must be >= 2"),
    ('model = "cnn"\n[stages.train]\nepochs = "five"\n',
     "train.epochs must be an integer. Got 'five' instead."),
    ('model = "cnn"\n[stages.build]\ntest_size = 1.5\n',
     "build.test_size must be < 1.0. Got 1.5 instead."),
    ('model = "cnn"\n[stages.quantize]\nmode = "int4"\n',
     "quantize.mode must be one of 'int8', 'dynamic', 'float16', 'qat' or 'none'. Got 'int4'"),
    ('model = "cnn"\n[stages.verify]\nmax_drift = -1\n', "verify.max_drift must be >= 0.0"),
    ('model = "cnn"\n[stages.build]\nmodel = "rnn"\n', "build.model is set by the top-level"),
    ('model = "cnn"\nstages = 3\n', "stages must be a table"),
    ('model = "cnn"\n', "stages must list at least one stage"),
    ("[stages.train]\n", "model is required."),
    ('model = "cnn"\n[stages.train\n', "not valid TOML"),
    ('model = "vgg"\n[stages.train]\n', "unknown model 'vgg'"),
    ('model = "cnn"\nseed = -1\n[stages.train]\n', "seed must be >= 0. Got -1 instead."),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), BAD_FILES, ids=[m for _, m in BAD_FILES])
def test_bad_pipeline_file_is_one_line_naming_file_and_key(text, message, tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UsageError) as exc:
        load_pipeline_file(path)
    assert str(exc.value).startswith(f"{path}: ")
    assert message in str(exc.value)
    for argv in (["validate", str(path)], ["run", str(path), "--out", str(tmp_path / "out")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "out").exists()


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
        "max_drift = 100.0\n"
    )
    common = ["--out", str(tmp_path / "out"), "--no-cache", "--json", "--quiet"]
    assert main(["run", str(path), *common]) == 0
    from_file = json.loads(capsys.readouterr().out)
    flags = ["run", "multitask", "--epochs", "2", "--quantize", "dynamic", "--max-drift", "100"]
    assert main([*flags, *common]) == 0
    from_flags = json.loads(capsys.readouterr().out)
    assert from_file["pipeline"] == from_flags["pipeline"]

    def measured(report):
        return [(a["name"], a["heads"]) for a in report["verification"]["artifacts"]]

    assert measured(from_file) == measured(from_flags)
