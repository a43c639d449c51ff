"""Shared fixtures. The end-to-end CNN run is made once per session (2 epochs) and inspected by
many tests; each test asserts on measured values, not only on the absence of an exception."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# One TensorFlow thread pool thread per test process: the two test workers share 2 cores, and
# TensorFlow's default (a thread per core in each process) oversubscribes them (the CNN's
# compression tests: 127 s -> 113 s). Set before anything imports TensorFlow; the run's worker
# processes inherit it. Timings (LiteRT, onnxruntime) take their threads from the run's config.
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

from compress.cli import main
from compress.keras import _tf

_tf.own_process()  # test processes run compress as the CLI does (see own_process)

# Runs in tests time each artifact for TEST_TIMING_BUDGET_S instead of the product's default
# (timing.TIMING_BUDGET_S, 0.25 s), unless the test sets its own: the tests check what is timed
# and how it is decided, not how fast a file is (that is benchmarks/' job; a test that asserts a
# speedup sets the product default itself). The recipe search's budget follows verify's. Measured
# on test_compression*.py and test_user_zoo.py, side by side: 287 -> 259 CPU s.
TEST_TIMING_BUDGET_S = 0.05


def _test_timing_default() -> None:
    from compress.stages.quantize import QuantizeParams
    from compress.stages.verify import VerifyParams

    for params in (VerifyParams, QuantizeParams):
        params.model_fields["timing_budget_s"].default = TEST_TIMING_BUDGET_S
        params.model_rebuild(force=True)


_test_timing_default()


def shared_cache_root(tmp_path_factory) -> Path:
    """The test session's own stage cache, shared by its test workers (pytest-xdist gives each
    worker a base directory under one session directory): a model trained or exported by one
    test file is reused by the others instead of being made again per file. Entries are
    written atomically, so workers storing the same key at once keep one of them."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if base.name.startswith("popen-gw") else base
    return root / "shared-stage-cache"


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Every test session gets its own, initially empty, stage cache (shared by its workers)."""
    old = os.environ.get("COMPRESS_CACHE_DIR")
    os.environ["COMPRESS_CACHE_DIR"] = str(shared_cache_root(tmp_path_factory))
    yield
    if old is None:
        os.environ.pop("COMPRESS_CACHE_DIR", None)
    else:
        os.environ["COMPRESS_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def cnn_run(tmp_path_factory) -> dict:
    """`compress run cnn --quantize int8 --epochs 2 --json`, in-process, timed with the product's
    own budget (tests assert its int8 speedups)."""
    from compress.measure.timing import TIMING_BUDGET_S

    out = tmp_path_factory.mktemp("artifacts")
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["run", "cnn", "--quantize", "int8", "--epochs", "2", "--out", str(out),
                     "--json", "--quiet", "--set",
                     f"verify.timing_budget_s={TIMING_BUDGET_S}"])  # fmt: skip
    report = json.loads(buf.getvalue())
    run_dir = out / "cnn" / report["run_id"]
    return {"code": code, "report": report, "run_dir": run_dir, "out": out}


def artifact_row(report: dict, name: str) -> dict:
    return next(a for a in report["verification"]["artifacts"] if a["name"] == name)


@pytest.fixture
def row():
    return artifact_row


def run_dirs(out: Path, model: str) -> list[Path]:
    parent = out / model
    return sorted(parent.iterdir()) if parent.exists() else []
