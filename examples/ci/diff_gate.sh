#!/usr/bin/env bash
# Gate a new run against the last good one, and keep the good ones as the next baseline.
#   examples/ci/diff_gate.sh BASELINE.json NEW_RUN_DIR
# No baseline yet: NEW becomes it (exit 0). Otherwise `compress diff` with the gates below
# (override with COMPRESS_DIFF_GATES): a regression exits 1 and the baseline is kept; a pass
# makes NEW's report.json the baseline.
set -euo pipefail
baseline=$1
new=$2
gates=${COMPRESS_DIFF_GATES:---max-size-increase 5 --max-latency-increase 25 --max-accuracy-drop 0.5}
if [[ ! -f "$new/report.json" ]]; then
  echo "diff_gate: '$new' holds no report.json (expected a run directory)" >&2
  exit 2
fi
if [[ ! -f "$baseline" ]]; then
  echo "diff_gate: no baseline at '$baseline' yet: this run becomes it"
  mkdir -p "$(dirname "$baseline")"
  cp "$new/report.json" "$baseline"
  exit 0
fi
# shellcheck disable=SC2086  # the gates are separate words
compress diff "$baseline" "$new" $gates
cp "$new/report.json" "$baseline.tmp" && mv "$baseline.tmp" "$baseline"
echo "diff_gate: no regression: '$baseline' now holds this run"
