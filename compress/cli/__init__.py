"""Command line: parses arguments into a PipelineConfig, and is the one place where errors become
messages and exit codes (0 ok, 1 a gate or stage failed, 2 usage or input error).

Heavy frameworks are imported only by the stages, so `compress --help` stays fast.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence

from compress.cli.exits import (
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
)
from compress.cli.parser import QUANTIZE_MODES, build_parser
from compress.core import compat, interrupt
from compress.core.errors import CompressError, GateFailed

__all__ = ["EXIT_CODES", "QUANTIZE_MODES", "build_parser", "main", "run"]


def run() -> None:
    """The `compress` command: main() on sys.argv, then exit with its code (an interrupted run
    exits through compat.exit_after_cleanup, so Ctrl-C gives 130 every time)."""
    code = main()
    if code == EXIT_INTERRUPTED:
        compat.exit_after_cleanup(code)
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> int:
    from compress.keras import _tf

    _tf.own_process()  # the CLI's process is compress's: see own_process
    with interrupt.handled():
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        args.command_line = shlex.join(["compress", *(sys.argv[1:] if argv is None else argv)])
        from compress.cli.commands import COMMANDS

        if args.command in COMMANDS:
            return COMMANDS[args.command](args)
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
