"""Time and peak memory of `compress run` as a model grows, beside a hand script doing only the
conversions and one quantization recipe per runtime, so the tool's own overhead is a ratio.

The models: a user's MLP (64 inputs, `depth` Dense layers of `width` units, a Dense(10) head,
untrained: this is about size, not accuracy) saved with tf_keras, and the digits as its data.
At each size:

- the tool: `compress run mlp.keras --data mlp.npz --epochs 0 --quantize dynamic --no-cache`
  (build, export TFLite and ONNX, one dynamic-int8 recipe per runtime, verification of the four
  artifacts, report), its stage times read from its report;
- the hand script: the same conversions (TFLite fp32 and dynamic-range int8, tf2onnx (past
  2 GiB of weights its large-model format, unzipped), and onnxruntime's quantize_dynamic), each
  file loaded and run once, nothing verified.

Each is one fresh process timed by its wall clock; peak memory is the largest resident set of
the process and the processes it waited for (GNU time's %M), beside the model's fp32 weight
bytes. Sizes past what this machine's memory allows are skipped with the reason.

Run: python benchmarks/scale.py [SIZES...]   (default: 1M 10M 100M; also 600M)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SIZES = {"1M": (1000, 2), "10M": (2304, 3), "100M": (4096, 7), "600M": (10240, 7)}
TIME = "/usr/bin/time"

MAKE = r"""
import os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"; os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, tf_keras as keras
from sklearn.datasets import load_digits
width, depth, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
keras.utils.set_random_seed(0)
i = keras.Input((64,), name="pixels")
h = i
for _ in range(depth):
    h = keras.layers.Dense(width, activation="relu")(h)
model = keras.Model(i, keras.layers.Dense(10, activation="softmax", name="digit")(h))
model.save(f"{out}/mlp.keras")
x, y = load_digits(return_X_y=True)
x = (x / 16.0).astype("float32")
np.savez(f"{out}/mlp.npz", x_train=x[:1400], y_train=y[:1400], x_test=x[1400:], y_test=y[1400:])
print(model.count_params())
"""

HAND = r"""
import os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"; os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, tensorflow as tf, tf_keras as keras, tf2onnx, onnx
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic
from ai_edge_litert.interpreter import Interpreter
out = sys.argv[1]
model = keras.models.load_model(f"{out}/mlp.keras")
x = np.load(f"{out}/mlp.npz")["x_test"][:1]
for name, optimize in (("fp32", False), ("int8", True)):
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if optimize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    open(f"{out}/hand_{name}.tflite", "wb").write(converter.convert())
    interp = Interpreter(model_path=f"{out}/hand_{name}.tflite")
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
spec = (tf.TensorSpec((None, 64), tf.float32, name="pixels"),)
fp32 = f"{out}/hand_fp32.onnx"
if model.count_params() * 4 < 2**31:
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=17)
    onnx.save(proto, fp32)
else:  # past protobuf's 2 GiB: tf2onnx's large-model format (a zip), unpacked
    import zipfile
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, large_model=True,
                               output_path=f"{out}/hand_fp32.zip")
    zipfile.ZipFile(f"{out}/hand_fp32.zip").extractall(f"{out}/hand_onnx")
    fp32 = f"{out}/hand_onnx/__MODEL_PROTO.onnx"
quantize_dynamic(fp32, f"{out}/hand_int8.onnx", weight_type=QuantType.QInt8)
for path in (fp32, f"{out}/hand_int8.onnx"):
    session = ort.InferenceSession(path)
    session.run(None, {session.get_inputs()[0].name: x})
"""


def timed(cmd: list[str], cwd: Path) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall seconds, peak resident MB, the process) of one command in a fresh process; the
    process's stderr without GNU time's measurement line."""
    proc = subprocess.run([TIME, "-f", "%e %M", *cmd], capture_output=True, text=True, cwd=cwd)
    lines = proc.stderr.strip().splitlines()
    wall, kb = lines[-1].split()
    proc.stderr = "\n".join(lines[:-1])
    return float(wall), int(kb) / 1024, proc


def why(proc: subprocess.CompletedProcess) -> str:
    """How a failed process ended: its last stderr line, or the signal that killed it."""
    lines = [line for line in proc.stderr.splitlines()
             if line.strip() and not line.startswith("Command exited with")]  # fmt: skip
    last = lines[-1].strip() if lines else ""
    if "terminated by signal" in last or not last:  # GNU time's line for a killed process
        return f"killed ({last or 'no message'}; exit {proc.returncode})"
    return last


def measure(size: str, tmp: Path) -> None:
    width, depth = SIZES[size]
    params = 64 * width + (depth - 1) * width * width + 10 * width
    free_mb = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20
    if params * 4 / 2**20 * 4 > free_mb:
        print(f"{size:>5}  skipped: {params * 4 / 2**30:.1f} GB of fp32 weights, and this machine "
              f"has {free_mb / 1024:.1f} GB of free memory for about 4 copies")  # fmt: skip
        return
    out = tmp / size
    out.mkdir()
    made = subprocess.run([sys.executable, "-c", MAKE, str(width), str(depth), str(out)],
                          capture_output=True, text=True, check=True)  # fmt: skip
    params = int(made.stdout.strip().splitlines()[-1])
    weights_mb = params * 4 / 2**20
    tool_s, tool_mb, tool = timed(
        [sys.executable, "-m", "compress", "run", str(out / "mlp.keras"), "--data",
         str(out / "mlp.npz"), "--epochs", "0", "--quantize", "dynamic", "--no-cache", "--json",
         "--quiet", "--max-drift", "100", "--out", str(out / "runs")], tmp)  # fmt: skip
    if tool.returncode not in (0, 1):
        print(f"{size:>5}  compress run failed: {why(tool)}")
        return
    stages = json.loads(tool.stdout)["stage_seconds"]
    per_stage = ", ".join(f"{k} {v:.1f}" for k, v in stages.items())
    print(
        f"{size:>5}  {params:>11,} params  {weights_mb:>7.0f} MB fp32  "
        f"tool {tool_s:6.1f} s / {tool_mb:6.0f} MB peak ({tool_mb / weights_mb:.1f}x weights)"
    )
    print(f"       stages (s): {per_stage}")  # fmt: skip
    hand_s, hand_mb, hand = timed([sys.executable, "-c", HAND, str(out)], tmp)
    if hand.returncode != 0:
        print(f"       hand script failed after {hand_s:.0f} s, {hand_mb:.0f} MB peak: "
              f"{why(hand)}")  # fmt: skip
        return
    print(f"       hand {hand_s:6.1f} s / {hand_mb:6.0f} MB peak  tool/hand "
          f"{tool_s / hand_s:.2f}x time, {tool_mb / hand_mb:.2f}x memory")  # fmt: skip


def main() -> None:
    sizes = sys.argv[1:] or ["1M", "10M", "100M"]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        sys.exit(f"unknown size(s) {unknown}; expected some of {list(SIZES)}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            measure(size, Path(tmp))


if __name__ == "__main__":
    main()
