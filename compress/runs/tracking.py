"""Experiment tracking: one compress run logged to MLflow (`compress run --mlflow [URI]`).

Params are the resolved pipeline (`stage.param`), metrics the measured values per artifact and
head, tags the verdict and environment; the run directory (report, artifacts, manifest) is
logged as the run's artifacts. MLflow is an optional extra, imported only here and only when
asked for.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from compress.core.errors import InputError, UsageError

MAX_PARAM = 500  # MLflow's limit on a param value's length


def params(report: dict[str, Any]) -> dict[str, str]:
    out = {}
    for stage in report.get("pipeline", []):
        for key, value in stage["params"].items():
            out[f"{stage['stage']}.{key}"] = str(value)[:MAX_PARAM]
    return out


def metrics(report: dict[str, Any]) -> dict[str, float]:
    """`ARTIFACT.size_bytes`, `ARTIFACT.HEAD.accuracy`, `ARTIFACT.latency_ms.b1.p50` ... (numbers
    only, as measured)."""
    out: dict[str, float] = {}
    for a in report["verification"]["artifacts"]:
        name = a["name"]
        for key in ("size_bytes", "size_gzip_bytes", "compression_ratio", "sparsity"):
            if isinstance(a.get(key), int | float):
                out[f"{name}.{key}"] = float(a[key])
        for head, m in (a.get("heads") or {}).items():
            for key, value in m.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    out[f"{name}.{head}.{key}"] = float(value)
        for batch, t in (a.get("latency_ms") or {}).items():
            for key in ("p50_ms", "p90_ms"):
                if t.get(key) is not None:
                    out[f"{name}.latency_ms.{batch}.{key[:3]}"] = float(t[key])
        for batch, value in (a.get("speedup") or {}).items():
            if value is not None:
                out[f"{name}.speedup.{batch}"] = float(value)
    return out


def default_uri(run_dir: Path) -> str:
    """A local file store beside the run directories: OUT/mlruns."""
    return (Path(run_dir).resolve().parent.parent / "mlruns").as_uri()


def log_run(report: dict[str, Any], run_dir: Path, uri: str | None = None) -> str:
    """Log one run; returns the MLflow run id."""
    try:
        import mlflow
    except ImportError:
        raise UsageError("MLflow logging needs MLflow: pip install -e '.[mlflow]'") from None
    uri = uri or default_uri(run_dir)
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its INFO lines are not ours
    if uri.startswith("file:"):  # MLflow 3 keeps its file store only on request
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    try:
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(f"compress-{report['model']}")
        with mlflow.start_run(run_name=report["run_id"]) as run:
            mlflow.log_params(params(report))
            mlflow.log_metrics(metrics(report))
            env = report.get("environment") or {}
            mlflow.set_tags(
                {
                    "compress.passed": str(report["passed"]),
                    "compress.run_id": report["run_id"],
                    "compress.command": str(report.get("command")),
                    "compress.cpu": str(env.get("cpu")),
                }
            )
            mlflow.log_artifacts(str(run_dir))
            return run.info.run_id
    except Exception as exc:  # noqa: BLE001 - the store is the user's: say what failed
        raise InputError(f"cannot log to MLflow at {uri}: {type(exc).__name__}: {exc}") from None
