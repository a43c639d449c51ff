"""The exit codes of `compress`, and what each means (the README's table is checked against
EXIT_CODES)."""

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143
EXIT_CODES = {
    EXIT_OK: "every stage ran and every gate passed",
    EXIT_FAILED: "a gate failed (the run directory and report are complete), a stage failed (no "
    "run directory is left), or `verify-artifacts` found a mismatch",
    EXIT_USAGE: "usage or input error: unknown model, mode, stage or key, a bad number, a bad "
    "pipeline file, a bad model or data file, an unwritable `--out`",
    EXIT_INTERRUPTED: "interrupted by SIGINT (Ctrl-C); nothing partial is left",
    EXIT_TERMINATED: "terminated by SIGTERM; nothing partial is left",
}
