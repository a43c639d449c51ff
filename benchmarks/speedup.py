"""int8 vs fp32 of the reference models in each runtime: speed measured side by side by
`compress bench`, sizes from the run's report, each against its target (issue 13).

For each model: `compress run MODEL --quantize int8` (fresh cache; the recipe search picks each
runtime's int8 recipe), then `compress bench RUN_DIR --threads 1`. CPUs differ: compare only
within one run.

Run: python benchmarks/speedup.py [MODEL ...]   (default: cnn rnn attention)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from compress.report.text import recipe_note

# (model, runtime, batch) -> speedup goal; (model, runtime, "size") -> int8 must be smaller
TARGETS = {
    ("cnn", "litert", "b1"): 2.7,
    ("cnn", "onnxruntime", "b1"): 2.5,
    ("rnn", "litert", "b1"): 0.9,
    ("attention", "litert", "b1"): 0.9,
    ("rnn", "onnxruntime", "size"): True,
    ("attention", "onnxruntime", "size"): True,
}


def compress(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "compress", *args], capture_output=True, text=True)
    if proc.returncode not in (0, 1):  # 1: a gate failed, the report is still there
        sys.exit(f"compress {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def measure(model: str, tmp: str) -> None:
    report = json.loads(compress("run", model, "--quantize", "int8", "--out", tmp,
                                 "--cache-dir", str(Path(tmp) / "cache"), "--json",
                                 "--quiet"))  # fmt: skip
    run_dir = Path(tmp) / model / report["run_id"]
    result = json.loads(compress("bench", str(run_dir), "--threads", "1", "--json"))
    rows = {a["name"]: a for a in report["verification"]["artifacts"]}
    print(f"{model}:")
    for a in rows.values():
        note = recipe_note(a["name"], a["recipe"])
        if note:
            print(f"  {note}")
    for e in result["artifacts"]:
        if e["precision"] != "int8":
            continue
        fp32 = rows[e["name"].replace("int8", "fp32")]["size_bytes"]
        size = rows[e["name"]]["size_bytes"]
        goal = TARGETS.get((model, e["runtime"], "size"))
        size_note = f" (smaller: {verdict(size < fp32)})" if goal else ""
        print(f"  {e['runtime']:<12} int8 {size:,} B vs fp32 {fp32:,} B{size_note}")
        for b in ("b1", "b32"):
            if e.get(b) is None:
                continue  # a fixed-batch (recurrent) model has no batch-32 call
            ratio = e[b]["speedup"]
            goal = TARGETS.get((model, e["runtime"], b))
            target = "" if goal is None else f"(goal {goal}x: {verdict(ratio >= goal)})"
            print(f"  {e['runtime']:<12} int8 vs fp32 at batch {b[1:]:>2}: {ratio:5.2f}x "
                  f"({e[b]['warm']['p50_ms']:.3f} ms) {target}")  # fmt: skip
    for w in report["verification"]["warnings"]:
        print(f"  WARNING: {w}")


def main() -> None:
    models = sys.argv[1:] or ["cnn", "rnn", "attention"]
    print("1 thread; warm p50, artifacts interleaved by `compress bench`")
    for model in models:
        with tempfile.TemporaryDirectory() as tmp:
            measure(model, tmp)


if __name__ == "__main__":
    main()
