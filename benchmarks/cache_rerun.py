"""Wall time of `compress run cnn --quantize int8`: cold (empty cache), warm (same command
again), and warm with only `--max-drift` changed. Prints the times and the cold/warm ratio.

Run: python benchmarks/cache_rerun.py      (target: warm <= 5 s on 2 cores)
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
        gate, gate_report = timed_run(out, cache, "--max-drift", "0.5")
    print(f"cold run:                  {cold:6.2f} s")
    print(f"warm run:                  {warm:6.2f} s   cache {report['cache']}")
    print(f"warm, --max-drift changed: {gate:6.2f} s   train: {gate_report['cache']['train']}")
    print(f"stage seconds (warm):      {report['stage_seconds']}")
    print(f"cold / warm ratio:         {cold / warm:6.2f}x   (target: warm <= 5 s: "
          f"{'met' if warm <= 5 else 'MISSED'})")  # fmt: skip


if __name__ == "__main__":
    main()
