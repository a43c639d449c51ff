"""What each command does with its parsed arguments: build the configs (runs.config), call the
library, print its result. Business logic lives in the library; errors are raised as
CompressError and become messages and exit codes in cli/__init__.py only."""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

from compress.cli.exits import EXIT_OK
from compress.core.errors import CompressError, GateFailed, StageError, UsageError
from compress.core.progress import Progress, for_terminal


def _cmd_list() -> int:
    from compress.core.text import columns
    from compress.keras.models import REGISTRY

    rows = [[name, f"{spec.description} ({spec.epochs} epochs)"] for name, spec in REGISTRY.items()]
    print(columns(["model", "description"], rows).split("\n", 1)[1])  # no header line
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
        value = getattr(args, flag, None)
        if value is not None:
            overrides[f"{stage}.{param}" if stage else param] = value
    return overrides


def _configs(args: argparse.Namespace) -> list:
    """Validated PipelineConfigs for the target (one per model for `all`), before any work.
    An error about a key the user set by a flag names the flag: `--epochs (train.epochs) ...`,
    `--set KEY ...`."""
    try:
        from compress.runs.config import target_configs

        return target_configs(args.target, _overrides(args))
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
    if flag and getattr(args, flag, None) is not None:  # a flag's value wins over --set's
        return f"{spelled} ({key}){rest}" if "." in key else spelled + rest
    if any(item.partition("=")[0].strip() == key for item in getattr(args, "overrides", [])):
        return f"--set {message}"
    if spelled and "." not in key:  # a missing top-level value: its flag (`data`: --data)
        return spelled + rest
    if "." not in key and hasattr(args, key):  # a command's own flag (`trials`: --trials)
        return "--" + key.replace("_", "-") + rest
    return message


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
    from compress.report.junit import render_junit
    from compress.report.text import render_summary, render_table
    from compress.runs.pipeline import output_name, run

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
    from compress.core.fileio import write_json_atomic
    from compress.report.text import bench_table
    from compress.runs.bench import bench_target

    progress = (lambda line: None) if args.json else (lambda line: print(line, file=sys.stderr))
    try:
        target, result = bench_target(args.target, args.threads, args.out, _cache(args), progress)
    except UsageError as exc:
        raise UsageError(_spell_flag(str(exc), exc.key, args), exc.key) from None
    write_json_atomic(target / "bench.json", result)
    print(json.dumps(result, indent=2) if args.json else bench_table(result))
    if not args.json:
        print(f"written: {target / 'bench.json'}")
    return EXIT_OK


def _cmd_tune(args: argparse.Namespace) -> int:
    from compress import tune
    from compress.tune.trial import TuneSetup

    text = args.objectives
    if args.deprecated_objective is not None:
        flag, text = "--objective", args.objectives or args.deprecated_objective
    else:
        flag = "--objectives"
    try:
        objectives = tune.parse_objectives(text or "size")
    except UsageError as exc:
        raise UsageError(flag + str(exc).removeprefix("objectives"), key="objectives") from None
    if args.deprecated_objective is not None:
        print("compress: warning: tune's --objective is deprecated, use --objectives (run's "
              "--objective is the recipe search's)", file=sys.stderr)  # fmt: skip
    cache = _cache(args)
    try:
        space = tune.load_space(args.space) if args.space else dict(tune.DEFAULT_SPACE)
        configs = _configs(args)
        if len(configs) != 1:
            raise UsageError("tune takes one target (a model, a pipeline file or a .keras file)")
        setup = TuneSetup(base=configs[0], target=args.target, objectives=objectives,
                          max_drift=args.max_drift, space=space,
                          out=Path(args.out or configs[0].out))  # fmt: skip
        progress = for_terminal(args.quiet)
        try:
            record = tune.tune(
                setup, trials=args.trials, timeout_s=args.timeout,
                cache_root=str(cache.root) if cache else None, progress=progress,
                executor=args.executor, workers=args.workers, address=args.address,
            )  # fmt: skip
        finally:
            if progress is not None:
                progress.close()
    except UsageError as exc:
        raise UsageError(_spell_flag(str(exc), exc.key, args), exc.key) from None
    if args.json:
        print(json.dumps(record, indent=2))
    elif not args.quiet:
        from compress.report.tune import tune_table

        print(tune_table(record))
        print(f"tune directory: {setup.directory}")
    if not record["passed"]:
        missed = [k for k, b in record["best"].items() if not b["within_budget"]]
        where = ", ".join(missed) or "any runtime"
        budget = f"--max-drift {setup.max_drift:g}"
        ppl = {b["max_ppl_increase"] for b in record["best"].values() if "max_ppl_increase" in b}
        if ppl:
            budget += f" / --max-ppl-increase {max(ppl):g}"
        raise GateFailed([f"no trial met {budget} for {where}"], None)
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from compress.report import page as report_html

    written = report_html.rerender(Path(args.run_dir))
    print(f"written: {written}")
    return EXIT_OK


def _cmd_diff(args: argparse.Namespace) -> int:
    from compress.report.text import diff_table
    from compress.runs import diff

    for flag in ("max_size_increase", "max_latency_increase", "max_accuracy_drop",
                 "max_ppl_increase"):  # fmt: skip
        value = getattr(args, flag, None)
        if value is not None and not value >= 0:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= 0. Got {value} instead.")
    result = diff.compare(
        diff.load(args.base),
        diff.load(args.new),
        max_size_increase=args.max_size_increase,
        max_latency_increase=args.max_latency_increase,
        max_accuracy_drop=args.max_accuracy_drop,
        max_ppl_increase=args.max_ppl_increase,
    )
    print(json.dumps(result, indent=2) if args.json else diff_table(result))
    if result["regressions"]:
        raise GateFailed(result["regressions"], None)
    return EXIT_OK


def _cmd_cache(args: argparse.Namespace) -> int:
    if args.cache_command != "clear":
        raise UsageError("cache needs an action: clear (see 'compress cache --help')")
    cache = _cache(args)
    print(f"removed {cache.clear()} cache entries from {cache.root}")
    return EXIT_OK


COMMANDS = {
    "run": _cmd_run,
    "validate": _cmd_validate,
    "list": lambda args: _cmd_list(),
    "cache": _cmd_cache,
    "verify-artifacts": _cmd_verify_artifacts,
    "bench": _cmd_bench,
    "tune": _cmd_tune,
    "report": _cmd_report,
    "diff": _cmd_diff,
}
