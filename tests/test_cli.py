"""CLI behaviour that needs no training: help, listing, and every usage error path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from compress.cli import main


def test_help_does_not_import_tensorflow():
    code = (
        "import sys, contextlib, io\n"
        "from compress.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n        main(['--help'])\n    except SystemExit:\n        pass\n"
        "print('tensorflow' in sys.modules, 'onnxruntime' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


@pytest.mark.parametrize("sub", ["run", "list", "validate", "cache"])
def test_every_subcommand_has_help(sub, capsys):
    with pytest.raises(SystemExit) as exc:
        main([sub, "--help"])
    assert exc.value.code == 0
    assert "usage: compress " + sub in capsys.readouterr().out


def test_list_names_the_cnn(capsys):
    assert main(["list"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names == ["cnn", "rnn", "attention", "multitask", "transformer", "lm"]


def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "compress", "list"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("cnn")


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage: compress" in capsys.readouterr().out


def test_unwritable_out_is_a_usage_error_and_writes_nothing(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["run", "cnn", "--out", str(blocker / "sub"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "output directory" in err and "is not writable" in err
    assert blocker.read_text() == "not a directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_readme_starts_with_the_two_setup_commands():
    readme = (Path(__file__).parents[1] / "README.md").read_text().splitlines()
    first = "\n".join(readme[:20])
    assert "compress run cnn --quantize int8" in first
    assert "pytest" in first


def test_run_all_finishes_the_others_when_one_model_crashes(monkeypatch, tmp_path, capsys):
    from compress.keras import models
    from compress.keras.models.base import ModelSpec

    def broken_build():
        raise RuntimeError("cannot build")

    registry = {
        "broken": ModelSpec("broken", "always fails", "flat", broken_build),
        "multitask": models.REGISTRY["multitask"],
    }
    monkeypatch.setattr(models, "REGISTRY", registry)
    code = main(["run", "all", "--epochs", "1", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 1
    assert "broken: stage 'build' failed: RuntimeError: cannot build" in captured.err
    summary = captured.out.split("run directory:")[-1]
    assert "ERROR: stage 'build' failed" in summary
    assert "multitask  model_int8.tflite  pair" in summary
    assert list((tmp_path / "broken").iterdir()) == []  # no partial run directory
    assert len(list((tmp_path / "multitask").iterdir())) == 1


def test_threads_flag_sets_every_timing(tmp_path, capsys):
    """--threads reaches verify and the recipe search alike (one name, one fact)."""
    import json

    # --max-drift 100: one epoch on 300 samples leaves int8 drift as noise; this is about --threads
    code = main(["run", "multitask", "--epochs", "1", "--threads", "2", "--set",
                 "build.train_samples=300", "--set", "verify.timing_budget_s=0.01",
                 "--out", str(tmp_path), "--max-drift", "100", "--json", "--quiet"])  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    params = {s["stage"]: s["params"] for s in report["pipeline"]}
    assert params["quantize"]["threads"] == params["verify"]["threads"] == 2
    assert report["verification"]["threads"] == 2
    assert report["config"]["threads"] == 2
