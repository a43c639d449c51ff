"""Command line: parses arguments into a PipelineConfig, and is the one place where errors become
messages and exit codes (0 ok, 1 a gate or stage failed, 2 usage or input error).

Heavy frameworks are imported only by the stages, so `compress --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from compress.core import interrupt
from compress.core.errors import CompressError, GateFailed, StageError, UsageError
from compress.core.progress import Progress, for_terminal

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143
# What each exit code means; the README's table is checked against this one.
EXIT_CODES = {
    EXIT_OK: "every stage ran and every gate passed",
    EXIT_FAILED: "a gate failed (the run directory and report are complete), a stage failed (no "
    "run directory is left), or `verify-artifacts` found a mismatch",
    EXIT_USAGE: "usage or input error: unknown model, mode, stage or key, a bad number, a bad "
    "pipeline file, a bad model or data file, an unwritable `--out`",
    EXIT_INTERRUPTED: "interrupted by SIGINT (Ctrl-C); nothing partial is left",
    EXIT_TERMINATED: "terminated by SIGTERM; nothing partial is left",
}
QUANTIZE_MODES = ("int8", "auto", "dynamic", "float16", "int4", "qat", "none")


def version() -> str:
    """The installed package's version (stated once, in pyproject.toml)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("compress")
    except PackageNotFoundError:
        return "unknown (not installed)"


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (one line, exit 2) instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    from compress.backends.onnxruntime import DEFAULT_OPSET, OPSETS

    parser = _Parser(
        prog="compress",
        description="Compress Keras models, export TFLite and ONNX, and verify every artifact "
        "in its own runtime (LiteRT, onnxruntime).",
    )
    parser.add_argument("--version", action="version", version=f"compress {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

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
        "--task", choices=("auto", "classify", "regress"),
        help="verify.task for every head: classify (top-1 accuracy) or regress (numeric "
        "error); auto infers it per head from the output and its labels (default: auto)",
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

    tune = sub.add_parser(
        "tune",
        help="search compression settings: smallest or fastest within a drift budget",
        description="Search prune sparsity, cluster count, quantize mode and QAT with Optuna "
        "for the smallest (gzip) or fastest artifact per runtime within --max-drift; one Pareto "
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
        "--objective",
        default="size",
        metavar="OBJ",
        help="size, latency or size,latency (default: size)",
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

    validate = sub.add_parser(
        "validate", help="check a pipeline file without running it",
        description="Validate a pipeline file: keys, types, ranges and every stage's parameters.",
    )  # fmt: skip
    validate.add_argument("file", metavar="FILE", help="pipeline file (.toml)")

    sub.add_parser("list", help="list the reference models", description="List reference models.")

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

    diff = sub.add_parser(
        "diff", help="compare two runs artifact by artifact; gate regressions",
        description="Compare NEW with BASE (run directories or their report.json) per runtime "
        "and head: size, gzip size, accuracy/drift, agreement, latency at batch 1 and 32, "
        "recipe. Exit 1 when a given gate is missed, naming it.",
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
    diff.add_argument("--json", action="store_true", help="print the comparison as JSON")

    cache = sub.add_parser("cache", help="manage the stage cache", description="Stage cache.")
    cache_sub = cache.add_subparsers(dest="cache_command", metavar="ACTION", parser_class=_Parser)
    clear = cache_sub.add_parser("clear", help="delete every cache entry")
    _cache_args(clear)
    return parser


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


def _cmd_list() -> int:
    from compress.keras.models import REGISTRY

    width = max(len(n) for n in REGISTRY)
    for name, spec in REGISTRY.items():
        print(f"{name.ljust(width)}  {spec.description} ({spec.epochs} epochs)")
    return EXIT_OK


def _parse_value(text: str) -> Any:
    """A --set value as TOML (1.5, true, "x", [1, 2]); anything else is a plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from compress.runs.config import FLAG_KEYS

    overrides: dict[str, Any] = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set expects KEY=VALUE (e.g. quantize.mode=dynamic). Got {item!r}")
        overrides[key.strip()] = _parse_value(value.strip())
    for flag, (stage, param) in FLAG_KEYS.items():
        value = getattr(args, flag)
        if value is not None:
            overrides[f"{stage}.{param}" if stage else param] = value
    return overrides


def _configs(args: argparse.Namespace) -> list:
    """Validated PipelineConfigs for the target (one per model for `all`), before any work.
    An error about a key the user set by a flag names the flag: `--epochs (train.epochs) ...`,
    `--set KEY ...`."""
    try:
        return _target_configs(args)
    except UsageError as exc:
        raise UsageError(_spell_flag(str(exc), exc.key, args), exc.key) from None


def _spell_flag(message: str, key: str | None, args: argparse.Namespace) -> str:
    from compress.runs.config import FLAG_KEYS

    if key is None or not message.startswith(key):
        return message
    rest = message[len(key) :]
    flags = {(f"{stage}.{param}" if stage else param): flag for flag, (stage, param) in
             FLAG_KEYS.items()}  # fmt: skip
    flag = flags.get(key)
    spelled = "--" + flag.replace("_", "-") if flag else None
    if flag and getattr(args, flag) is not None:  # a flag's value wins over --set's
        return f"{spelled} ({key}){rest}" if "." in key else spelled + rest
    if any(item.partition("=")[0].strip() == key for item in args.overrides):
        return f"--set {message}"
    if spelled and "." not in key:  # a missing top-level value: its flag (`data`: --data)
        return spelled + rest
    return message


def _target_configs(args: argparse.Namespace) -> list:
    from compress.keras import models
    from compress.runs.config import PipelineConfig, load_pipeline_file

    target, overrides = args.target, _overrides(args)
    if target == "all":
        names = list(models.REGISTRY)
        return [PipelineConfig.for_model(n, overrides) for n in names]
    if target.endswith(".toml"):
        return [load_pipeline_file(target, overrides)]
    if target in models.REGISTRY or Path(target).exists() or target.endswith((".keras", ".h5")):
        return [PipelineConfig.for_model(target, overrides)]  # a file's kind is read from it
    raise UsageError(
        f"unknown model {target!r}. Expected one of: {', '.join(models.REGISTRY)}, all, "
        "a pipeline file (.toml) or a Keras model file (.keras, .h5, SavedModel directory)"
    )


def _cache(args: argparse.Namespace):
    from compress.runs.cache import StageCache, default_root

    if getattr(args, "no_cache", False):
        return None
    return StageCache(Path(args.cache_dir) if args.cache_dir else default_root())


def _cmd_run(args: argparse.Namespace) -> int:
    configs = _configs(args)
    if args.junit:
        try:
            Path(args.junit).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--junit '{args.junit}' is not writable: {exc.strerror}") from None
    cache = _cache(args)
    progress = for_terminal(args.quiet)
    try:
        return _run_configs(args, configs, cache, progress)
    finally:
        if progress is not None:
            progress.close()


def _run_configs(
    args: argparse.Namespace, configs: list[Any], cache: Any, progress: Progress | None
) -> int:
    from compress.core.fileio import write_text_atomic
    from compress.runs.pipeline import output_name, run
    from compress.report.text.text import render_junit, render_summary, render_table

    results, errors, problems = [], {}, []
    for config in configs:
        name = output_name(config.model)
        try:
            result = run(config, progress=progress, cache=cache, command=args.command_line)
        except CompressError as exc:
            if len(configs) == 1:
                if args.junit:
                    write_text_atomic(Path(args.junit), render_junit([], {name: str(exc)}))
                raise
            errors[name] = str(exc)
            problems.append(f"{name}: {exc}")
            if progress is not None:
                progress.line(f"{name}: error: {exc}")
            continue
        results.append(result)
        if args.mlflow is not None:
            from compress.runs import tracking

            logged = tracking.log_run(result.report, result.run_dir, args.mlflow or None)
            if progress is not None:
                progress.line(f"{name}: logged to MLflow: {logged}")
        problems += [f"{name}: {f}" if len(configs) > 1 else f for f in result.failures]
        if not args.quiet and not args.json:
            print(render_table(result.report))
            print(f"run directory: {result.run_dir}" + ("\n" if len(configs) > 1 else ""))
    reports = [r.report for r in results]
    if args.junit:
        write_text_atomic(Path(args.junit), render_junit(reports, errors))
    if args.json:
        payload = reports[0] if len(configs) == 1 else {"runs": reports, "errors": errors}
        print(json.dumps(payload, indent=2))
    elif not args.quiet and len(configs) > 1:
        print(render_summary(reports, errors))
    if problems:
        single = len(configs) == 1 and results
        raise GateFailed(problems, str(results[0].run_dir) if single else None)
    return EXIT_OK


def _cmd_validate(args: argparse.Namespace) -> int:
    from compress.runs.config import load_pipeline_file, resolve_stages

    config = load_pipeline_file(args.file)
    names = [name for name, _ in resolve_stages(config)]
    print(f"ok: {args.file} ({config.model}; {len(names)} stages: {', '.join(names)})")
    return EXIT_OK


def _cmd_verify_artifacts(args: argparse.Namespace) -> int:
    from compress.runs.integrity import verify_run_dir

    checked, problems = verify_run_dir(Path(args.run_dir))
    if problems:
        raise StageError(
            f"{len(problems)} file(s) in {args.run_dir} do not match its manifest: "
            + "; ".join(problems)
        )
    print(f"ok: {checked} files in {args.run_dir} match manifest.json")
    return EXIT_OK


def _cmd_bench(args: argparse.Namespace) -> int:
    from compress.keras import models

    for n in args.threads or []:
        if n < 1:
            raise UsageError(f"--threads must be >= 1. Got {n} instead.")
    target = Path(args.target)
    if args.target in models.REGISTRY:
        from compress.runs.config import PipelineConfig
        from compress.runs.pipeline import run

        overrides = {"out": args.out} if args.out else {}
        config = PipelineConfig.for_model(args.target, overrides)
        progress = (lambda line: None) if args.json else (lambda line: print(line, file=sys.stderr))
        target = run(config, progress=progress, cache=_cache(args)).run_dir
    elif args.out:
        raise UsageError("--out is for a model TARGET; a run directory is measured in place")
    from compress.runs.bench import bench, render
    from compress.core.fileio import write_json_atomic

    result = bench(target, threads=args.threads)
    write_json_atomic(target / "bench.json", result)
    print(json.dumps(result, indent=2) if args.json else render(result))
    if not args.json:
        print(f"written: {target / 'bench.json'}")
    return EXIT_OK


def _cmd_tune(args: argparse.Namespace) -> int:
    from compress import tune
    from compress.runs.config import FLAG_KEYS

    if args.trials < 1:
        raise UsageError(f"--trials must be >= 1. Got {args.trials} instead.")
    if args.max_drift < 0 or args.max_drift != args.max_drift:
        raise UsageError(f"--max-drift must be a number >= 0. Got {args.max_drift} instead.")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be >= 1. Got {args.workers} instead.")
    if args.address and args.executor != "ray":
        raise UsageError("--address is the Ray cluster's: it needs --executor ray")
    if args.timeout is not None and not args.timeout > 0:
        raise UsageError(f"--timeout must be > 0 seconds. Got {args.timeout} instead.")
    try:
        objectives = tune.parse_objectives(args.objective)
    except UsageError as exc:
        raise UsageError(f"--{exc}", key="objective") from None
    space = tune.load_space(args.space) if args.space else dict(tune.DEFAULT_SPACE)
    # the base pipeline every trial overrides, read from the tune's flags as `run` reads its own
    # (flags tune has not are unset; tune's --objective is not quantize.objective)
    run_args = argparse.Namespace(**{**dict.fromkeys(FLAG_KEYS), **vars(args), "objective": None})
    configs = _configs(run_args)
    if len(configs) != 1:
        raise UsageError("tune takes one target (a model, a pipeline file or a .keras file)")
    spec = tune.TuneSpec(
        base=configs[0],
        target=args.target,
        objectives=objectives,
        max_drift=args.max_drift,
        space=space,
        out=Path(args.out or configs[0].out),
    )
    cache = _cache(args)
    progress = for_terminal(args.quiet)
    try:
        record = tune.tune(
            spec,
            trials=args.trials,
            timeout_s=args.timeout,
            cache_root=str(cache.root) if cache else None,
            progress=progress,
            executor=args.executor,
            workers=args.workers,
            address=args.address,
        )
    finally:
        if progress is not None:
            progress.close()
    if args.json:
        print(json.dumps(record, indent=2))
    elif not args.quiet:
        print(tune.render(record))
        print(f"tune directory: {spec.directory}")
    if not record["passed"]:
        missed = [k for k, b in record["best"].items() if not b["within_budget"]]
        where = ", ".join(missed) or "any runtime"
        raise GateFailed([f"no trial met --max-drift {spec.max_drift:g} for {where}"], None)
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from compress.report.text import page as report_html

    written = report_html.rerender(Path(args.run_dir))
    print(f"written: {written}")
    return EXIT_OK


def _cmd_diff(args: argparse.Namespace) -> int:
    from compress.runs import diff

    for flag in ("max_size_increase", "max_latency_increase", "max_accuracy_drop"):
        value = getattr(args, flag)
        if value is not None and not value >= 0:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= 0. Got {value} instead.")
    result = diff.compare(
        diff.load(args.base),
        diff.load(args.new),
        max_size_increase=args.max_size_increase,
        max_latency_increase=args.max_latency_increase,
        max_accuracy_drop=args.max_accuracy_drop,
    )
    print(json.dumps(result, indent=2) if args.json else diff.render(result))
    if result["regressions"]:
        raise GateFailed(result["regressions"], None)
    return EXIT_OK


def _cmd_cache(args: argparse.Namespace) -> int:
    if args.cache_command != "clear":
        raise UsageError("cache needs an action: clear (see 'compress cache --help')")
    cache = _cache(args)
    print(f"removed {cache.clear()} cache entries from {cache.root}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    with interrupt.handled():
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        args.command_line = shlex.join(["compress", *(sys.argv[1:] if argv is None else argv)])
        commands = {
            "run": _cmd_run,
            "validate": _cmd_validate,
            "cache": _cmd_cache,
            "verify-artifacts": _cmd_verify_artifacts,
            "bench": _cmd_bench,
            "tune": _cmd_tune,
            "report": _cmd_report,
            "diff": _cmd_diff,
        }
        if args.command == "list":
            return _cmd_list()
        if args.command in commands:
            return commands[args.command](args)
        parser.print_help()
        return EXIT_USAGE
    except GateFailed as exc:
        where = f" (report: {exc.run_dir}/report.json)" if exc.run_dir else ""
        print(f"compress: gate failed: {exc}{where}", file=sys.stderr)
        return exc.exit_code
    except CompressError as exc:
        print(f"compress: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("compress: interrupted (SIGINT): nothing partial was left", file=sys.stderr)
        return EXIT_INTERRUPTED
    except interrupt.Terminated:
        print("compress: terminated (SIGTERM): nothing partial was left", file=sys.stderr)
        return EXIT_TERMINATED
    except Exception as exc:  # never a traceback to the user; COMPRESS_DEBUG=1 shows it
        if os.environ.get("COMPRESS_DEBUG"):
            raise
        print(f"compress: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
