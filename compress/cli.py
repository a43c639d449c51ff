"""Command line: parses arguments into a RunConfig and a Pipeline, and is the one place where
errors become messages and exit codes (0 ok, 1 a gate or stage failed, 2 usage or input error).

Heavy frameworks are imported only by the stages, so `compress --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from compress.errors import CompressError, GateFailed, UsageError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (one line, exit 2) instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    from compress.config import QUANTIZE_MODES

    parser = _Parser(
        prog="compress",
        description="Compress Keras models, export TFLite and ONNX, and verify every artifact "
        "in its own runtime (LiteRT, onnxruntime).",
    )
    parser.add_argument("--version", action="version", version="compress 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser(
        "run",
        help="build, train, quantize, export and verify a reference model",
        description="Run the pipeline for a reference model (see 'compress list'): build, train "
        "on the training split, export fp32 TFLite and ONNX, quantize, verify every artifact on "
        "the held-out split. Writes OUT/MODEL/RUN_ID/ and prints a table.",
    )
    run.add_argument(
        "model", metavar="MODEL", help="reference model name (see 'compress list'), or 'all'"
    )
    run.add_argument(
        "--quantize", choices=QUANTIZE_MODES, default="int8", metavar="MODE",
        help=f"post-training quantization: {', '.join(QUANTIZE_MODES)} (default: int8)",
    )  # fmt: skip
    run.add_argument(
        "--epochs", type=int, default=None, help="training epochs (default: the model's, see list)"
    )
    run.add_argument("--seed", type=int, default=0, help="seed for split and training (default 0)")
    run.add_argument("--out", default="artifacts", help="output directory (default: artifacts)")
    run.add_argument(
        "--threads", type=int, default=1, help="threads per runtime when timing (default: 1)"
    )
    run.add_argument(
        "--max-drift", type=float, default=1.0, metavar="PTS",
        help="fail (exit 1) if any artifact's accuracy drops more than PTS percentage points "
        "below the Keras float model (default: 1.0)",
    )  # fmt: skip
    run.add_argument(
        "--min-speedup", type=float, default=None, metavar="X",
        help="fail (exit 1) if a quantized artifact is less than X times faster than the fp32 "
        "artifact of its runtime at batch 1",
    )  # fmt: skip
    run.add_argument("--opset", type=int, default=17, help="ONNX opset, 13-18 (default: 17)")
    run.add_argument("--json", action="store_true", help="print report.json to stdout")
    run.add_argument("--quiet", action="store_true", help="print nothing but errors")

    sub.add_parser("list", help="list the reference models", description="List reference models.")
    return parser


def _cmd_list() -> int:
    from compress.models import REGISTRY

    width = max(len(n) for n in REGISTRY)
    for name, spec in REGISTRY.items():
        print(f"{name.ljust(width)}  {spec.description} ({spec.epochs} epochs)")
    return EXIT_OK


def _configs(args: argparse.Namespace) -> list:
    """One validated RunConfig per model named (all registered models for `all`), before any
    work starts."""
    from compress import models
    from compress.config import make_config

    names = list(models.REGISTRY) if args.model == "all" else [models.get(args.model).name]
    return [
        make_config(
            style="flag",
            model=name,
            quantize=args.quantize,
            epochs=args.epochs,
            seed=args.seed,
            out=args.out,
            threads=args.threads,
            max_drift=args.max_drift,
            min_speedup=args.min_speedup,
            opset=args.opset,
        )
        for name in names
    ]


def _cmd_run(args: argparse.Namespace) -> int:
    configs = _configs(args)
    from compress.pipeline import run
    from compress.report import render_summary, render_table

    def progress(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    if len(configs) == 1:
        result = run(configs[0], progress=progress)
        if args.json:
            print(json.dumps(result.report, indent=2))
        elif not args.quiet:
            print(render_table(result.report))
            print(f"run directory: {result.run_dir}")
        if result.failures:
            raise GateFailed(result.failures, str(result.run_dir))
        return EXIT_OK

    # Several models: each runs whatever happens to the others; the exit code sums them up.
    reports, errors, problems = [], {}, []
    for config in configs:
        try:
            result = run(config, progress=progress)
        except CompressError as exc:
            errors[config.model] = str(exc)
            problems.append(f"{config.model}: {exc}")
            progress(f"{config.model}: error: {exc}")
            continue
        reports.append(result.report)
        problems += [f"{config.model}: {f}" for f in result.failures]
        if not args.quiet and not args.json:
            print(render_table(result.report))
            print(f"run directory: {result.run_dir}\n")
    if args.json:
        print(json.dumps({"runs": reports, "errors": errors}, indent=2))
    elif not args.quiet:
        print(render_summary(reports, errors))
    if problems:
        raise GateFailed(problems)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "list":
            return _cmd_list()
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
        print("compress: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # never a traceback to the user; COMPRESS_DEBUG=1 shows it
        if os.environ.get("COMPRESS_DEBUG"):
            raise
        print(f"compress: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
