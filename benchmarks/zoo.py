"""The toolkit at the sizes people deploy: Keras applications at 224x224 and a deployment-size
transformer, each through `compress run --quantize int8` (the measured recipe choice), one
table per runtime: fp32 and compressed size, batch-1 and batch-32 p50 latency, speedup,
agreement, and the wall time the tool took.

Nothing can be downloaded here: `weights=None` (random initialisation) and random inputs; the
labels are the float model's own predictions, so accuracy reads as agreement with fp32 (the
drift gate is off: a randomly initialised network's outputs are nearly flat, and int8 flips
top-1 answers no trained network would). Speed and size are what this measures; every number
is read from the run's report, measured in that run, side by side with its fp32 artifact.

Run: python benchmarks/zoo.py [MODEL ...]    (default: all; 2 cores: about 13 minutes)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

SAMPLES = 160  # 128 train/calibration, 32 held out (one batch of 32)
SETTINGS = [
    "--quantize", "int8", "--max-drift", "100", "--threads", "1",
    "--set", "build.calibration_samples=64",
    "--set", "verify.timing_budget_s=0.2", "--set", "verify.min_calls=10",
]  # fmt: skip


def _application(name: str) -> Callable[[], tuple[Any, np.ndarray]]:
    def make() -> tuple[Any, np.ndarray]:
        from compress.keras import _tf

        keras = _tf.keras()
        model = getattr(keras.applications, name)(weights=None, input_shape=(224, 224, 3))
        x = np.random.default_rng(0).uniform(-1, 1, (SAMPLES, 224, 224, 3)).astype(np.float32)
        return model, x

    return make


def _transformer() -> tuple[Any, np.ndarray]:
    from compress.keras.models import transformer

    model = transformer.build(sequence=128, features=64, d_model=256, blocks=4, heads=4,
                              feed_forward=1024)  # fmt: skip
    x = np.random.default_rng(0).normal(0, 1, (SAMPLES, 128, 64)).astype(np.float32)
    return model, x


MODELS: dict[str, Callable[[], tuple[Any, np.ndarray]]] = {
    "mobilenetv2": _application("MobileNetV2"),
    "resnet50": _application("ResNet50"),
    "efficientnetb0": _application("EfficientNetB0"),
    "mobilenetv3small": _application("MobileNetV3Small"),
    "transformer-128x256x4": _transformer,
}


def make_files(name: str, tmp: Path) -> tuple[Path, Path]:
    from compress.keras import _tf

    _tf.keras().utils.set_random_seed(0)
    model, x = MODELS[name]()
    y = model.predict(x, batch_size=32, verbose=0).argmax(-1)
    model.save(tmp / f"{name}.keras")
    np.savez(tmp / f"{name}.npz", x=x, y=y)
    return tmp / f"{name}.keras", tmp / f"{name}.npz"


def run(name: str, tmp: Path) -> tuple[dict[str, Any], float]:
    model, data = make_files(name, tmp)
    cmd = [sys.executable, "-m", "compress", "run", str(model), "--data", str(data), *SETTINGS,
           "--out", str(tmp / "out"), "--no-cache", "--json", "--quiet"]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        sys.exit(f"compress run {name} failed ({proc.returncode}): {proc.stderr.strip()}")
    return json.loads(proc.stdout), seconds


def rows(name: str, report: dict[str, Any], seconds: float) -> list[list[str]]:
    arts = {a["name"]: a for a in report["verification"]["artifacts"]}
    out = []
    for runtime, fp32_name in (("litert", "model_fp32.tflite"), ("onnxruntime", "model_fp32.onnx")):
        fp32 = arts.get(fp32_name)
        int8 = next((a for a in arts.values() if a["runtime"] == runtime
                     and a["precision"] != "fp32"), None)  # fmt: skip
        if fp32 is None or int8 is None:
            skipped = [s["reason"] for s in report["skipped"] if s["runtime"] == runtime]
            out.append([name, runtime, "-", "-", "-", "-", "-", "-", "; ".join(skipped)[:60]])
            continue

        def lat(a: dict[str, Any], batch: str) -> str:
            t = (a.get("latency_ms") or {}).get(batch)
            return f"{t['p50_ms']:.1f}" if t else "-"

        sp = int8.get("speedup") or {}
        agreement = min(h["agreement"] for h in int8["heads"].values())
        out.append([
            name, runtime, int8["recipe"]["id"],
            f"{fp32['size_bytes'] / 1e6:.1f} -> {int8['size_bytes'] / 1e6:.1f} MB",
            f"{lat(fp32, 'b1')} -> {lat(int8, 'b1')}", f"{lat(fp32, 'b32')} -> {lat(int8, 'b32')}",
            f"{sp.get('b1', 0):.2f}x / " + (f"{sp['b32']:.2f}x" if sp.get("b32") else "-"),
            f"{agreement:.1f}%", f"{seconds:.0f} s",
        ])  # fmt: skip
    return out


HEADER = ["model", "runtime", "recipe", "size fp32 -> int8", "p50 b1 ms", "p50 b32 ms",
          "speedup b1 / b32", "agreement", "tool time"]  # fmt: skip


def main() -> None:
    names = sys.argv[1:] or list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        sys.exit(f"unknown model(s) {unknown}: expected some of {', '.join(MODELS)}")
    table: list[list[str]] = []
    findings: list[str] = []
    started = time.perf_counter()
    cpu = None
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            report, seconds = run(name, Path(tmp))
        cpu = report["environment"]["cpu"]
        table += rows(name, report, seconds)
        findings += [f"{name}: {w}" for w in report["verification"]["warnings"]]
        stages = ", ".join(f"{k} {v:.0f} s" for k, v in report["stage_seconds"].items())
        print(f"{name}: {seconds:.0f} s ({stages})", file=sys.stderr, flush=True)
        for a in report["verification"]["artifacts"]:
            built = [f"{c['id']} {c['build_s']:.0f} s" for c in
                     (a.get("recipe") or {}).get("candidates", []) if "build_s" in c]  # fmt: skip
            if built:
                print(f"  {a['name']} candidates built: {', '.join(built)}", file=sys.stderr)
            for c in (a.get("recipe") or {}).get("candidates", []):  # what each one measured
                measured = [f"{c['speedup_b1']:.2f}x"] if "speedup_b1" in c else []
                measured += [f"agreement {c['agreement']:.1f}%"] if "agreement" in c else []
                verdict = c.get("error") or c.get("lost") or ("chosen" if c.get("chosen") else "")
                print(f"    {c['id']}: {', '.join(measured)} {verdict}", file=sys.stderr)
    total = time.perf_counter() - started
    print(f"CPU {cpu}, 1 thread for timing; random inputs, labels = the fp32 model's predictions "
          f"(agreement with fp32); total {total / 60:.1f} min")  # fmt: skip
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    for row in table:
        print("| " + " | ".join(row) + " |")
    for finding in findings:  # compression that does not pay, as the run itself said it
        print(f"\nWARNING {finding}")


if __name__ == "__main__":
    main()
