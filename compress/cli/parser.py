"""The command line's arguments: one function per command, each flag spelled as the config key
it sets (`--max-drift` is `verify.max_drift`, see runs.config.FLAG_KEYS). Parsing only: what a
command does is cli/commands.py; turning errors into exit codes is cli/__init__.py."""

from __future__ import annotations

import argparse
from typing import Any

from compress.core.errors import UsageError
from compress.core.versions import version

QUANTIZE_MODES = ("int8", "auto", "dynamic", "float16", "int4", "qat", "none")


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (one line, exit 2) instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="compress",
        description="Compress Keras models, export TFLite and ONNX, and verify every artifact "
        "in its own runtime (LiteRT, onnxruntime).",
    )
    parser.add_argument("--version", action="version", version=f"compress {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for add in (_run, _tune, _validate_and_list, _bench, _verify_and_report, _diff, _cache):
        add(sub)
    return parser


def _run(sub: Any) -> None:
    """compress run: a pipeline for a model, `all`, a pipeline file or a .keras file."""
    from compress.backends.onnxruntime import DEFAULT_OPSET, OPSETS

    run = sub.add_parser(
        "run",
        help="build, train, quantize, export and verify a model",
        description="Run a pipeline: build, train on the training split, export fp32 TFLite and "
        "ONNX, quantize, verify every artifact on the held-out split. Writes "
        "OUT/MODEL/RUN_ID/ and prints a table. Flags override a pipeline file's values.",
    )
    run.add_argument(
        "target", metavar="TARGET",
        help="a reference model (see 'compress list'), 'all', a pipeline file (.toml), "
        "or a .keras model file (with --data)",
    )  # fmt: skip
    run.add_argument(
        "--mlflow", nargs="?", const="", metavar="URI",
        help="log the run to MLflow (params, metrics per artifact and head, report and "
        "artifacts); default URI: a file store in OUT/mlruns. Needs the [mlflow] extra",
    )  # fmt: skip
    run.add_argument(
        "--quantize", choices=QUANTIZE_MODES, metavar="MODE",
        help=f"quantize.mode: {', '.join(QUANTIZE_MODES)} (default: int8)",
    )  # fmt: skip
    run.add_argument(
        "--objective", choices=("latency", "size"),
        help="quantize.objective for int8/auto: the fastest recipe (ties to the smaller), or the "
        "smallest not slower than fp32 (default: latency)",
    )  # fmt: skip
    run.add_argument(
        "--prune", type=_sparsity, metavar="SPARSITY",
        help="prune.sparsity: magnitude pruning to this fraction of zeros (e.g. 0.8), or 2:4",
    )  # fmt: skip
    run.add_argument(
        "--cluster", type=int, metavar="N", help="cluster.clusters: weight clustering, N values"
    )
    run.add_argument("--epochs", type=int, help="train.epochs (default: the model's)")
    run.add_argument("--seed", type=int, help="seed for split, init and training (default: 0)")
    run.add_argument("--data", help=".npz data for a .keras model (x_train, y_train, x_test, "
                     "y_test, or x, y; optional x_calib)")  # fmt: skip
    run.add_argument("--out", help="output directory (default: artifacts)")
    run.add_argument(
        "--threads", type=int,
        help="threads of every timing: verify and the recipe search (default: 1)",
    )  # fmt: skip
    run.add_argument(
        "--max-drift", type=float, metavar="PTS",
        help="verify.max_drift: fail (exit 1) if any artifact's accuracy drops more than PTS "
        "percentage points below the Keras float model, on any head (default: 1.0)",
    )  # fmt: skip
    run.add_argument(
        "--max-error", type=float, metavar="FRACTION",
        help="verify.max_error: fail (exit 1) if a numeric (regression, embedding) head's "
        "relative error against the Keras float model exceeds FRACTION (default: 0.05)",
    )  # fmt: skip
    run.add_argument(
        "--max-ppl-increase", type=float, metavar="PCT",
        help="verify.max_ppl_increase: fail (exit 1) if a language model artifact's held-out "
        "perplexity is more than PCT percent above the Keras float model's (default: 1.0)",
    )  # fmt: skip
    run.add_argument(
        "--task", choices=("auto", "classify", "regress", "lm"),
        help="verify.task for every head: classify (top-1 accuracy), regress (numeric "
        "error) or lm (next-token logits: perplexity); auto infers it per head from the "
        "output and its labels (default: auto)",
    )  # fmt: skip
    run.add_argument(
        "--size", metavar="NAME",
        help="build.size: the size of a reference model that comes in sizes (lm: tiny, "
        "small, gpt2-small; default: small)",
    )  # fmt: skip
    run.add_argument(
        "--min-speedup", type=float, metavar="X",
        help="verify.min_speedup: fail (exit 1) if a quantized artifact is less than X times "
        "faster than its runtime's fp32 artifact at batch 1",
    )  # fmt: skip
    run.add_argument(
        "--opset", type=int,
        help=f"export_onnx.opset, {OPSETS[0]}-{OPSETS[1]} (default: {DEFAULT_OPSET})",
    )  # fmt: skip
    run.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
        help="override a pipeline value, e.g. --set quantize.mode=dynamic (repeatable)",
    )  # fmt: skip
    run.add_argument("--json", action="store_true", help="print the report JSON on stdout")
    run.add_argument(
        "--junit", metavar="FILE", help="write JUnit XML: one case per artifact x gate"
    )
    run.add_argument("--quiet", action="store_true", help="print nothing but errors")
    _cache_args(run)
    run.add_argument("--no-cache", action="store_true", help="run every stage, store nothing")


def _tune(sub: Any) -> None:
    """compress tune: the compression settings search."""
    tune = sub.add_parser(
        "tune",
        help="search compression settings: smallest or fastest within a drift budget",
        description="Search prune sparsity, cluster count, quantize mode and QAT with Optuna "
        "for the smallest (gzip) or fastest artifact per runtime within --max-drift (a language "
        "model: also --max-ppl-increase); one Pareto "
        "front per runtime. Resumable: the same command continues the study. Writes "
        "OUT/tune/TARGET/TUNE_ID/ (tune.json, pareto.csv, pareto.png, best/). Exit 1 when no "
        "trial meets the budget (the closest is still saved).",
    )
    tune.add_argument(
        "target",
        metavar="TARGET",
        help="as for run: a reference model, a pipeline file, or a .keras file with --data",
    )
    tune.add_argument(
        "--max-drift",
        type=float,
        metavar="PTS",
        default=1.0,
        help="accuracy budget against the unpruned float model (default: 1.0)",
    )
    tune.add_argument(
        "--max-ppl-increase",
        type=float,
        metavar="PCT",
        help="language models: the perplexity budget, percent above the float model's "
        "(verify.max_ppl_increase, default: 1.0)",
    )
    tune.add_argument(
        "--objectives",
        metavar="OBJ",
        help="what the tune minimizes per runtime: size, latency or size,latency (default: "
        "size; not run's --objective, which is the recipe search's)",
    )
    tune.add_argument(
        "--objective", dest="deprecated_objective", metavar="OBJ", help=argparse.SUPPRESS
    )
    tune.add_argument("--trials", type=int, default=20, help="finished trials (default: 20)")
    tune.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="stop starting trials after this long"
    )
    tune.add_argument(
        "--space", metavar="FILE.toml", help="a [space] table overriding the default search space"
    )
    tune.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="override a pipeline value for every trial",
    )
    tune.add_argument("--epochs", type=int, help="train.epochs (default: the model's)")
    tune.add_argument("--size", help="build.size of a model that comes in sizes (lm)")
    tune.add_argument("--data", help=".npz data for a .keras model")
    tune.add_argument(
        "--executor",
        choices=["local", "ray"],
        default="local",
        help="where trials run: local (this machine, no server) or ray (a Ray cluster through "
        "Ray Tune; needs the [ray] extra)",
    )
    tune.add_argument(
        "--address",
        help="the Ray cluster for --executor ray (default: $RAY_ADDRESS, else a local instance)",
    )
    tune.add_argument(
        "--workers",
        type=int,
        help="trials at once (local default: 1; ray default: what the cluster fits)",
    )
    tune.add_argument("--out", help="output directory (default: artifacts)")
    tune.add_argument("--json", action="store_true", help="print tune.json on stdout")
    tune.add_argument("--quiet", action="store_true", help="print nothing but errors")
    _cache_args(tune)


def _validate_and_list(sub: Any) -> None:
    """compress validate, compress list."""
    validate = sub.add_parser(
        "validate", help="check a pipeline file without running it",
        description="Validate a pipeline file: keys, types, ranges and every stage's parameters.",
    )  # fmt: skip
    validate.add_argument("file", metavar="FILE", help="pipeline file (.toml)")

    sub.add_parser("list", help="list the reference models", description="List reference models.")


def _bench(sub: Any) -> None:
    """compress bench: every artifact of a run timed side by side."""
    bench = sub.add_parser(
        "bench", help="measure every artifact of a run side by side",
        description="Latency p50/p90 at batch 1 and 32, warm and cold, throughput and speedup "
        "vs the fp32 artifact of the same runtime, artifacts interleaved. TARGET is a run "
        "directory, or a model name (its pipeline runs first). Writes RUN_DIR/bench.json.",
    )  # fmt: skip
    bench.add_argument("target", metavar="TARGET", help="OUT/MODEL/RUN_ID or a reference model")
    bench.add_argument(
        "--threads", type=int, action="append", metavar="N",
        help="thread count to measure (repeatable; default: 1 and all cores)",
    )  # fmt: skip
    bench.add_argument("--json", action="store_true", help="print bench.json on stdout")
    bench.add_argument("--out", help="output directory when TARGET is a model (default: artifacts)")
    _cache_args(bench)


def _verify_and_report(sub: Any) -> None:
    """compress verify-artifacts, compress report."""
    check = sub.add_parser(
        "verify-artifacts", help="check a run directory against its manifest",
        description="Check every file of a run directory against manifest.json (size, sha256): "
        "names any file missing, truncated, changed or not in the manifest (exit 1).",
    )  # fmt: skip
    check.add_argument("run_dir", metavar="RUN_DIR", help="OUT/MODEL/RUN_ID")

    report = sub.add_parser(
        "report", help="render report.html again from report.json (or a tune's tune.html)",
        description="Re-render RUN_DIR/report.html from RUN_DIR/report.json (the manifest's "
        "entry follows), or TUNE_DIR/tune.html from TUNE_DIR/tune.json.",
    )  # fmt: skip
    report.add_argument("run_dir", metavar="RUN_DIR", help="OUT/MODEL/RUN_ID or a tune directory")


def _diff(sub: Any) -> None:
    """compress diff: two runs compared, regressions gated."""
    diff = sub.add_parser(
        "diff", help="compare two runs artifact by artifact; gate regressions",
        description="Compare NEW with BASE (run directories or their report.json) per runtime "
        "and head: size, gzip size, accuracy/drift, agreement, perplexity, latency at batch 1 "
        "and 32, generation speed, recipe. Exit 1 when a given gate is missed, naming it.",
    )  # fmt: skip
    diff.add_argument("base", metavar="BASE", help="the last good run (directory or report.json)")
    diff.add_argument("new", metavar="NEW", help="the run to judge (directory or report.json)")
    diff.add_argument(
        "--max-size-increase",
        type=float,
        metavar="PCT",
        help="largest allowed gzip-size increase of an artifact, percent",
    )
    diff.add_argument(
        "--max-latency-increase",
        type=float,
        metavar="PCT",
        help="largest allowed p50 latency increase (batch 1 and 32), percent; "
        "only when both runs were timed on the same CPU and thread count",
    )
    diff.add_argument(
        "--max-accuracy-drop",
        type=float,
        metavar="PTS",
        help="largest allowed accuracy drop of a head, percentage points",
    )
    diff.add_argument(
        "--max-ppl-increase",
        type=float,
        metavar="PCT",
        help="largest allowed held-out perplexity increase of a language model's head, percent",
    )
    diff.add_argument("--json", action="store_true", help="print the comparison as JSON")


def _cache(sub: Any) -> None:
    """compress cache clear."""
    cache = sub.add_parser("cache", help="manage the stage cache", description="Stage cache.")
    cache_sub = cache.add_subparsers(dest="cache_command", metavar="ACTION", parser_class=_Parser)
    clear = cache_sub.add_parser("clear", help="delete every cache entry")
    _cache_args(clear)


def _cache_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache-dir", metavar="DIR",
        help="stage cache directory (default: $COMPRESS_CACHE_DIR or ~/.cache/compress)",
    )  # fmt: skip


def _sparsity(text: str) -> float | str:
    if text == "2:4":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a fraction like 0.8 or 2:4, got {text!r}"
        ) from None
