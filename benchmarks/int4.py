"""int4 against int8 and fp32 in both runtimes, measured side by side in one recipe search.

For each model, `compress run MODEL --quantize auto --objective size` builds every recipe of
each runtime (fp32, the int8 rows, the int4 rows, float16) and times them against the fp32 file
in interleaved rounds, 1 thread, batch 1; this prints, per runtime, the fastest int8 file and
the fastest int4 file with their sizes, agreement and speedup (then the other int4 rows:
rounding algorithms, int8 or float compute), and the issue's targets:
TFLite int4 >= 1.5x smaller than the best int8 file and at least as fast (within 5%), and
onnxruntime int4 (accuracy_level 4) >= 2.5x the fp32 speed. Models: the CNN, the default `lm`
and a user's MLP of three Dense(1024) layers on the digits (written here as a .keras file with
its .npz).

Run: python benchmarks/int4.py [cnn lm mlp]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

INT8 = {"int8", "dynamic"}
TIE = 1.05  # speeds within 5% are one speed on a busy 2-core machine


def compress(*args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "compress", *args], capture_output=True, text=True)
    if proc.returncode not in (0, 1):  # 1: a gate failed, the report is still there
        sys.exit(f"compress {' '.join(args)} failed: {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def user_mlp(tmp: Path) -> list[str]:
    """A Keras 3 MLP of three Dense(1024) layers trained on the digits: the .keras and .npz."""
    import keras
    import numpy as np
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    keras.utils.set_random_seed(0)
    hidden = [keras.layers.Dense(1024, activation="relu") for _ in range(3)]
    head = keras.layers.Dense(10, activation="softmax", name="digit")
    model = keras.Sequential([keras.Input((64,), name="pixels"), *hidden, head])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x[:1400], y[:1400], epochs=3, batch_size=64, verbose=0)
    model.save(tmp / "mlp.keras")
    np.savez(tmp / "mlp.npz", x_train=x[:1400], y_train=y[:1400], x_test=x[1400:],
             y_test=y[1400:])  # fmt: skip
    return [str(tmp / "mlp.keras"), "--data", str(tmp / "mlp.npz"), "--epochs", "0"]


def measure(model: str, tmp: Path) -> list[str]:
    tmp.mkdir(parents=True, exist_ok=True)
    target = user_mlp(tmp) if model == "mlp" else [model]
    report = compress("run", *target, "--quantize", "auto", "--objective", "size", "--out",
                      str(tmp), "--cache-dir", str(tmp / "cache"), "--json", "--quiet",
                      "--max-drift", "100", "--max-ppl-increase", "100")  # fmt: skip
    fp32 = {a["runtime"]: a["size_bytes"] for a in report["verification"]["artifacts"]
            if a["precision"] == "fp32"}  # fmt: skip
    missed = [f"{model} {s['runtime']}" for s in report["skipped"]]
    print(f"{model}:")
    for s in report["skipped"]:
        print(f"  {s['runtime']:12} no file: {s['reason']}")
    for art in report["verification"]["artifacts"]:
        cands = [c for c in art["recipe"].get("candidates", []) if "speedup_b1" in c]
        if not cands:
            continue
        runtime = art["runtime"]
        modes = {s.id: s.mode for s in _recipes(runtime)}
        best8 = max((c for c in cands if modes.get(c["id"]) in INT8),
                    key=lambda c: c["speedup_b1"])  # fmt: skip
        best4 = max((c for c in cands if modes.get(c["id"]) == "int4"),
                    key=lambda c: c["speedup_b1"])  # fmt: skip
        others = [c for c in cands if modes.get(c["id"]) == "int4" and c is not best4]
        for c in (best8, best4, *others):  # the other int4 rows: algorithms and compute
            ppl = f", {c['ppl_increase']:+.2f}% perplexity" if "ppl_increase" in c else ""
            print(f"  {runtime:12} {c['id']:28} "
                  f"{c['size_bytes']:>12,} B "
                  f"({fp32[runtime] / c['size_bytes']:.1f}x smaller than fp32)  "
                  f"{c['speedup_b1']:.2f}x fp32, {c['agreement']:.1f}% agree{ppl}")  # fmt: skip
        if runtime == "litert":
            smaller = best8["size_bytes"] / best4["size_bytes"]
            ok = smaller >= 1.5 and best4["speedup_b1"] * TIE >= best8["speedup_b1"]
            line = (
                f"  litert int4 {smaller:.2f}x smaller than the best int8 and "
                f"{best4['speedup_b1'] / best8['speedup_b1']:.2f}x its speed "
                f"(target >= 1.5x smaller, >= 1x speed): {'met' if ok else 'MISSED'}"
            )
        else:
            level4 = next(c for c in cands if c["id"] == "int4-int8-compute")
            ok = level4["speedup_b1"] >= 2.5
            line = (
                f"  onnxruntime int4-int8-compute {level4['speedup_b1']:.2f}x fp32 "
                f"(target >= 2.5x): {'met' if ok else 'MISSED'}"
            )
        print(line)
        if not ok:
            missed.append(f"{model} {runtime}")
    return missed


def _recipes(runtime: str):
    from compress.backends import BACKENDS

    return BACKENDS[runtime].recipes


def main() -> None:
    models = sys.argv[1:] or ["cnn", "lm", "mlp"]
    missed = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            missed += measure(model, Path(tmp) / model)
    print("all targets met" if not missed else f"targets missed: {', '.join(missed)}")


if __name__ == "__main__":
    main()
