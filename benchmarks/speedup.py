"""int8 vs fp32 speedup of the CNN in each runtime, measured side by side by `compress bench`.

Runs `compress run cnn --quantize int8` (fresh cache), then `compress bench RUN_DIR --threads 1`
and prints each ratio with its target. CPUs differ: compare only within one run.

Run: python benchmarks/speedup.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from compress.report import recipe_note

TARGETS = {  # (runtime, batch): speedup goal from the issue
    ("litert", "b1"): 2.7,
    ("litert", "b32"): 2.8,
    ("onnxruntime", "b1"): 2.5,
}


def compress(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "compress", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"compress {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        report = json.loads(compress("run", "cnn", "--quantize", "int8", "--out", tmp,
                                     "--cache-dir", str(Path(tmp) / "cache"), "--json",
                                     "--quiet"))  # fmt: skip
        run_dir = Path(tmp) / "cnn" / report["run_id"]
        result = json.loads(compress("bench", str(run_dir), "--threads", "1", "--json"))
    print(f"CPU: {result['cpu']}; 1 thread; warm p50, artifacts interleaved")
    for a in report["verification"]["artifacts"]:
        note = recipe_note(a["name"], a["recipe"])
        if note:
            print(f"  {note}")
    for e in result["artifacts"]:
        if e["precision"] != "int8":
            continue
        for b in ("b1", "b32"):
            ratio = e[b]["speedup"]
            goal = TARGETS.get((e["runtime"], b))
            verdict = (
                "" if goal is None else f"(goal {goal}x: {'met' if ratio >= goal else 'MISSED'})"
            )
            print(f"{e['runtime']:<12} int8 vs fp32 at batch {b[1:]:>2}: {ratio:5.2f}x "
                  f"({e[b]['warm']['p50_ms']:.3f} ms) {verdict}")  # fmt: skip


if __name__ == "__main__":
    main()
