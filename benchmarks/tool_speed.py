"""How fast the tool itself is, each figure a whole command's wall clock in a fresh process:

- `compress --help` (best of 5);
- a cold `compress run cnn --quantize int8 --epochs 5` (empty cache, training included) against
  the same steps written by hand in one script (train 5 epochs, TFLite fp32 + full int8,
  tf2onnx, onnxruntime static QDQ int8; no verification, no recipe search), run side by side;
- a warm rerun of `pipelines/cnn_int8.toml` (every cacheable stage cached).

It prints where the time goes: a per-stage table of the cold and the warm run.

Run: python benchmarks/tool_speed.py [ROUNDS]   (default 3 rounds, tool and hand script
alternating; targets: help <= 0.3 s, cold <= 1.3x the hand script
(goal 1.2x), warm rerun <= 5 s)
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HAND = r"""
import os, tempfile
os.environ["TF_USE_LEGACY_KERAS"] = "1"; os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, tensorflow as tf, tf_keras as keras, tf2onnx, onnx
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                      quant_pre_process, quantize_static)
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
d = load_digits(); x = (d.images / 16.0).astype("float32")
x = np.repeat(np.repeat(x, 8, 1), 8, 2)[..., None].repeat(3, -1)
xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=0.2, random_state=0,
                                      stratify=d.target)
keras.utils.set_random_seed(0)
i = keras.Input((64, 64, 3), name="input")
h = keras.layers.MaxPooling2D(2)(keras.layers.Conv2D(32, 3, activation="relu")(i))
h = keras.layers.Dense(128, activation="relu")(keras.layers.Flatten()(h))
m = keras.Model(i, keras.layers.Dense(10, activation="softmax", name="digit")(h))
m.compile("adam", "sparse_categorical_crossentropy")
m.fit(xtr, ytr, epochs=5, batch_size=32, verbose=0)
out = tempfile.mkdtemp(); m.save(out + "/model.keras")
c = tf.lite.TFLiteConverter.from_keras_model(m); open(out + "/fp32.tflite", "wb").write(c.convert())
c = tf.lite.TFLiteConverter.from_keras_model(m); c.optimizations = [tf.lite.Optimize.DEFAULT]
c.representative_dataset = lambda: ([xtr[k:k + 1]] for k in range(200))
c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
open(out + "/int8.tflite", "wb").write(c.convert())
spec = (tf.TensorSpec((None, 64, 64, 3), tf.float32, name="input"),)
tf2onnx.convert.from_keras(m, input_signature=spec, opset=17, output_path=out + "/fp32.onnx")
onnx.checker.check_model(out + "/fp32.onnx")
quant_pre_process(out + "/fp32.onnx", out + "/pre.onnx")
class R(CalibrationDataReader):
    def __init__(s): s.it = iter([{"input": xtr[k:k + 1]} for k in range(200)])
    def get_next(s): return next(s.it, None)
quantize_static(out + "/pre.onnx", out + "/int8.onnx", R(), quant_format=QuantFormat.QDQ,
                per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
"""


def wall(cmd: list[str], **kwargs) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    return time.perf_counter() - t0, proc


def run_json(cmd: list[str]) -> tuple[float, dict]:
    seconds, proc = wall(cmd)
    if proc.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return seconds, json.loads(proc.stdout)


def main(rounds: int = 3) -> None:
    compress = [sys.executable, "-m", "compress"]
    help_s = min(wall([*compress, "--help"])[0] for _ in range(5))
    colds, hands, warms, reports = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(rounds):  # tool and hand script alternate: this VM's speed drifts
            common = ["--out", tmp, "--cache-dir", str(Path(tmp) / f"cache{i}"), "--json",
                      "--quiet"]  # fmt: skip
            cold_s, cold = run_json([*compress, "run", "cnn", "--quantize", "int8", "--epochs",
                                     "5", *common])  # fmt: skip
            hand_s, hand = wall([sys.executable, "-c", HAND])
            if hand.returncode:
                sys.exit(f"hand script failed: {hand.stderr.strip()[-500:]}")
            pipeline = str(REPO / "pipelines" / "cnn_int8.toml")
            run_json([*compress, "run", pipeline, *common])  # fills the cache for this pipeline
            warm_s, warm = run_json([*compress, "run", pipeline, *common])
            colds.append(cold_s)
            hands.append(hand_s)
            warms.append(warm_s)
            reports.append((cold, warm))
            print(f"round {i + 1}: cold {cold_s:.2f} s, hand {hand_s:.2f} s "
                  f"({cold_s / hand_s:.2f}x), warm rerun {warm_s:.2f} s", flush=True)  # fmt: skip
    cold, warm = reports[colds.index(statistics.median(colds))]
    print("\nthe median cold run's stages, and the warm rerun after it:")
    print(f"{'stage':<14}{'cold s':>8}{'warm s':>8}  warm cache")
    for name in cold["stage_seconds"]:
        cold_t, warm_t = cold["stage_seconds"][name], warm["stage_seconds"].get(name, 0)
        print(f"{name:<14}{cold_t:>8.2f}{warm_t:>8.2f}  {warm['cache'].get(name, '-')}")
    print(f"{'sum':<14}{sum(cold['stage_seconds'].values()):>8.2f}"
          f"{sum(warm['stage_seconds'].values()):>8.2f}")  # fmt: skip
    ratios = [c / h for c, h in zip(colds, hands, strict=True)]
    print()
    print(f"compress --help:              {help_s:6.2f} s   (best of 5; target <= 0.3 s)")
    print(f"cold run, wall (median):      {statistics.median(colds):6.2f} s")
    print(f"same steps by hand (median):  {statistics.median(hands):6.2f} s")
    print(f"cold / hand per round:        {', '.join(f'{r:.2f}x' for r in ratios)}; median "
          f"{statistics.median(ratios):.2f}x (target <= 1.3x, goal 1.2x)")  # fmt: skip
    print(f"warm rerun (median):          {statistics.median(warms):6.2f} s   (target <= 5 s)")
    print(f"CPU: {cold['environment']['cpu']}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
