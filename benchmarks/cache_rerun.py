"""Wall time of `compress run cnn --quantize int8`: cold (empty cache), warm (same command
again), and warm with only `--max-drift` changed (2: a looser gate, which the fallback's
estimates fit, so quantize is reused too). Prints the times, what the cache did, and the
cold/warm ratio; report.html is rendered in every run.

Run: python benchmarks/cache_rerun.py      (target: both warm runs <= 5 s on 2 cores)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed_run(out: Path, cache: Path, *extra: str) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "compress", "run", "cnn", "--quantize", "int8", "--out", str(out),
           "--cache-dir", str(cache), "--json", "--quiet", *extra]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        sys.exit(f"compress failed ({proc.returncode}): {proc.stderr.strip()}")
    return wall, json.loads(proc.stdout)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out, cache = Path(tmp) / "out", Path(tmp) / "cache"
        cold, _ = timed_run(out, cache)
        warm, report = timed_run(out, cache)
        gate, gate_report = timed_run(out, cache, "--max-drift", "2")
    print(f"cold run:                  {cold:6.2f} s")
    print(f"warm run:                  {warm:6.2f} s   cache {report['cache']}")
    print(f"warm, --max-drift 2:       {gate:6.2f} s   cache {gate_report['cache']}")
    print(f"stage seconds (warm):      {report['stage_seconds']}")
    met = "met" if max(warm, gate) <= 5 else "MISSED"
    print(f"cold / warm ratio:         {cold / warm:6.2f}x   (target: both warm <= 5 s: {met})")


if __name__ == "__main__":
    main()
