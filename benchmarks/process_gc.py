"""What `compress.keras._tf.own_process` buys a process compress runs (the CLI, the run's worker, a
tune trial): TensorFlow + tf_keras imported with the garbage collector paused, then frozen out of
its reach. Two fresh processes side by side, one a plain library process and one owned, each
timing the same things: CPU seconds of the imports, then TFLite conversions (fp32 and dynamic
range) of an untrained reference model. Rounds alternate the two. (The converter's own
gc.collect() per conversion is skipped for models below COLLECT_ABOVE since 2026-12-07:
compat.tflite_converter_collect.)

Run: python benchmarks/process_gc.py [MODEL] [ROUNDS]      (default: attention, 3)
"""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = r"""
import json, os, sys, time
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
from compress.keras import _tf
if sys.argv[1] == "owned":
    _tf.own_process()
t = time.process_time()
_tf.keras()
imported = time.process_time() - t
from compress.backends import tflite
from compress.keras import models
model = models.get(sys.argv[2]).build_model()
tflite.convert(model, {})  # the SavedModel export, shared by later conversions
t = time.perf_counter()
for _ in range(4):
    tflite.convert(model, {})
    tflite.convert(model, {"optimize": True})
print(json.dumps({"import_cpu_s": imported, "conversion_s": (time.perf_counter() - t) / 8}))
"""


def measure(mode: str, model: str) -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-c", CHILD, mode, model], capture_output=True,
                          text=True)  # fmt: skip
    if proc.returncode:
        sys.exit(f"{mode} process failed: {proc.stderr.strip().splitlines()[-1]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    model = sys.argv[1] if len(sys.argv) > 1 else "attention"
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    runs: dict[str, list[dict[str, float]]] = {"library": [], "owned": []}
    for _ in range(rounds):
        for mode in runs:
            runs[mode].append(measure(mode, model))
    best = {m: {k: min(r[k] for r in rs) for k in rs[0]} for m, rs in runs.items()}
    print(f"{model}, best of {rounds} rounds, 1 thread")
    print(f"{'process':10} {'TF + tf_keras import (CPU s)':>30} {'TFLite conversion (s)':>24}")
    for mode, b in best.items():
        print(f"{mode:10} {b['import_cpu_s']:30.2f} {b['conversion_s']:24.3f}")
    lib, own = best["library"], best["owned"]
    print(f"owned / library: import {own['import_cpu_s'] / lib['import_cpu_s']:.2f}x, "
          f"conversion {own['conversion_s'] / lib['conversion_s']:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
