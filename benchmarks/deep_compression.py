"""The deep-compression chain on the CNN, step by step: fp32 -> pruned -> clustered -> int8.

Runs `compress run pipelines/deep_compression.toml` and prints, for each step's artifact, its
held-out accuracy, drop vs the unpruned float model, raw and gzip size, and the compression
ratio vs the fp32 Keras weights, so the gain of each step is visible.

Run: python benchmarks/deep_compression.py   (goal: final >= 50x, stretch >= 100x, <= 1 pt drop)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).parents[1]
STEPS = [
    ("fp32 (trained)", "model.keras"),
    ("pruned", "model_pruned.keras"),
    ("clustered", "model_clustered.keras"),
    ("fp32 .tflite", "model_fp32.tflite"),
    ("int8 .tflite", "model_int8.tflite"),
    ("int8 .onnx", "model_int8.onnx"),
]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = str(ROOT / "pipelines" / "deep_compression.toml")
        cmd = [sys.executable, "-m", "compress", "run", pipeline, "--out", tmp, "--json",
               "--quiet", *sys.argv[1:]]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode not in (0, 1):
            sys.exit(f"compress failed ({proc.returncode}): {proc.stderr.strip()}")
        report = json.loads(proc.stdout)
    v = report["verification"]
    rows = {a["name"]: a for a in v["artifacts"]}
    base = v["baseline_accuracy"]["digit"]
    print(f"fp32 Keras weights: {v['float_weight_bytes']:,} bytes; baseline accuracy {base:.2f}%")
    print(f"{'step':<16}{'accuracy %':>11}{'drop pts':>10}{'size B':>13}{'gzip B':>12}"
          f"{'ratio':>9}{'sparsity':>10}")  # fmt: skip
    for label, name in STEPS:
        a = rows[name]
        acc = a["heads"]["digit"]["accuracy"]
        print(f"{label:<16}{acc:>11.2f}{base - acc:>10.2f}{a['size_bytes']:>13,}"
              f"{a['size_gzip_bytes']:>12,}{a['compression_ratio']:>8.1f}x"
              f"{a['sparsity'] or 0:>10.3f}")  # fmt: skip
    final = rows["model_int8.tflite"]
    print(f"final int8 .tflite: {final['compression_ratio']:.1f}x smaller than the fp32 weights "
          f"(gzip), {base - final['heads']['digit']['accuracy']:.2f} pts below the unpruned model; "
          f"gates {'passed' if report['passed'] else 'FAILED'}")  # fmt: skip


if __name__ == "__main__":
    main()
