"""MobileNetV2 at 224x224 through `compress run` and `compress bench`: does int8 pay on a real
CNN, and which recipe does the search pick per runtime (issue 13 targets: LiteRT >= 1.45x,
onnxruntime >= 1.7x at batch 1)?

Nothing can be downloaded here: `weights=None` (random initialisation) and random inputs in
[-1, 1]; the labels are the float model's own predictions, so "accuracy" reads as agreement with
fp32. The drift gate is off (`--max-drift 100`): a randomly initialised network's outputs are
nearly flat, so int8 flips many top-1 answers that no trained network would; speed and size are
what this measures.

Run: python benchmarks/mobilenet.py [SAMPLES]   (default 160: 128 train/calibration, 32 held out)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

TARGETS = {"litert": 1.45, "onnxruntime": 1.7}


def compress(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "compress", *args], capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        sys.exit(f"compress {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def make_files(tmp: Path, samples: int) -> tuple[Path, Path]:
    from compress.keras import _tf

    keras = _tf.keras()
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))
    x = np.random.default_rng(0).uniform(-1, 1, (samples, 224, 224, 3)).astype(np.float32)
    y = model.predict(x, batch_size=32, verbose=0).argmax(-1)
    model.save(tmp / "mobilenetv2.keras")
    np.savez(tmp / "random.npz", x=x, y=y)
    return tmp / "mobilenetv2.keras", tmp / "random.npz"


def main() -> None:
    samples = int(sys.argv[1]) if len(sys.argv) > 1 else 160
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        model, data = make_files(tmp, samples)
        args = [
            "run",
            str(model),
            "--data",
            str(data),
            "--quantize",
            "int8",
            "--max-drift",
            "100",
            "--out",
            str(tmp / "out"),
            "--cache-dir",
            str(tmp / "cache"),
            "--json",
            "--quiet",
        ]
        report = json.loads(compress(*args))
        run_dir = tmp / "out" / "mobilenetv2" / report["run_id"]
        result = json.loads(compress("bench", str(run_dir), "--threads", "1", "--json"))
    rows = {a["name"]: a for a in report["verification"]["artifacts"]}
    print(f"MobileNetV2 224x224, weights=None; CPU {result['cpu']}; 1 thread; warm p50")
    for e in result["artifacts"]:
        if e["precision"] != "int8":
            continue
        row = rows[e["name"]]
        fp32 = rows[e["name"].replace("int8", "fp32")]
        tried = ", ".join(f"{c['id']} {c['speedup_b1']:.2f}x" for c in row["recipe"]["candidates"]
                          if "speedup_b1" in c)  # fmt: skip
        b1 = e["b1"]["speedup"]
        b32 = (e.get("b32") or {}).get("speedup") or 0.0
        goal = TARGETS[e["runtime"]]
        print(f"{e['runtime']:<12} {row['recipe']['id']}: {b1:.2f}x at batch 1 "
              f"({e['b1']['warm']['p50_ms']:.2f} ms), {b32:.2f}x "
              f"at 32; {row['size_bytes']:,} B vs {fp32['size_bytes']:,} B; agreement "
              f"{min(h['agreement'] for h in row['heads'].values()):.1f}% "
              f"(goal {goal}x: {'met' if b1 >= goal else 'MISSED'})")  # fmt: skip
        print(f"{'':<12} search measured: {tried}")


if __name__ == "__main__":
    main()
