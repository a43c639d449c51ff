"""How fast the tool itself is: `compress --help`, a cold `compress run cnn --quantize int8`
(empty cache, training included), and the tool's stage time vs the same steps by hand.

The hand-written script does what the stages do without verification (train 5 epochs, TFLite
fp32 + full int8, tf2onnx, onnxruntime static QDQ int8) in one process; the tool's figure is the
sum of its stage times except verify, from the same machine in the same run.

Run: python benchmarks/tool_speed.py     (goals: help <= 1 s, cold run <= 60 s, overhead <= 1.2x)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HAND = r"""
import os, time, tempfile
os.environ["TF_USE_LEGACY_KERAS"] = "1"; os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
t0 = time.perf_counter()
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
print(time.perf_counter() - t0)
"""


def main() -> None:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "compress", "--help"], capture_output=True, check=True)
    help_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "compress", "run", "cnn", "--quantize", "int8",
                               "--out", tmp, "--cache-dir", str(Path(tmp) / "c"), "--json",
                               "--quiet"], capture_output=True, text=True)  # fmt: skip
        cold_s = time.perf_counter() - t0
        report = json.loads(proc.stdout)
    hand = subprocess.run([sys.executable, "-c", HAND], capture_output=True, text=True, check=True)
    hand_s = float(hand.stdout.strip().splitlines()[-1])
    stages = report["stage_seconds"]
    tool_s = sum(v for k, v in stages.items() if k != "verify")
    print(f"compress --help:          {help_s:6.2f} s   (goal <= 1 s)")
    print(f"cold run, wall:           {cold_s:6.2f} s   (goal <= 60 s); stages {stages}")
    print(f"stages without verify:    {tool_s:6.2f} s   (includes the int8 recipe search)")
    print(f"same steps by hand:       {hand_s:6.2f} s   (imports included)")
    print(f"tool / hand:              {tool_s / hand_s:6.2f}x  (goal <= 1.2x)")


if __name__ == "__main__":
    main()
