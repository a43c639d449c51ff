"""--mlflow: a run logged to a local MLflow store (params, measured metrics, the run directory);
nothing imports MLflow unless the flag is given."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from compress.cli import main


def test_a_run_is_logged_to_a_local_store_as_measured(tmp_path, capsys):
    store = (tmp_path / "store").as_uri()
    argv = ["run", "multitask", "--epochs", "1", "--out", str(tmp_path / "out"), "--json",
            "--quiet", "--mlflow", store, "--set", "verify.timing_budget_s=0.02"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)  # stdout holds the report only
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("compress-multitask")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.params["train.epochs"] == "1"
    assert run.data.tags["compress.run_id"] == report["run_id"]
    row = next(a for a in report["verification"]["artifacts"] if a["name"] == "model_int8.tflite")
    assert run.data.metrics["model_int8.tflite.digit.accuracy"] == row["heads"]["digit"]["accuracy"]
    assert run.data.metrics["model_int8.tflite.size_gzip_bytes"] == row["size_gzip_bytes"]
    logged = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"report.json", "report.html", "model_int8.tflite", "manifest.json"} <= logged


@pytest.mark.slow
def test_mlflow_is_not_imported_without_the_flag(tmp_path):
    code = (
        "import sys\nfrom compress.cli import main\n"
        f"code = main(['run', 'multitask', '--epochs', '1', '--out', {str(tmp_path)!r}, "
        "'--quiet', '--quantize', 'none', '--set', 'verify.timing_budget_s=0.02'])\n"
        "assert code == 0, code\nassert 'mlflow' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
