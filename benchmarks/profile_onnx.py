"""Where onnxruntime spends the CNN's time: per-op-type share of a batch-1 inference for the
fp32 and int8 ONNX artifacts of a run (onnxruntime's own profiler, 1 thread).

Run: python benchmarks/profile_onnx.py RUN_DIR      (RUN_DIR from `compress run cnn`)
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime as ort


def profile(path: Path, runs: int = 300) -> dict[str, float]:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.enable_profiling = True
    so.profile_file_prefix = str(Path(tempfile.mkdtemp()) / path.stem)  # not in the run dir
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(0).random((1, *inp.shape[1:]), dtype=np.float32)
    for _ in range(runs):
        sess.run(None, {inp.name: x})
    trace = json.loads(Path(sess.end_profiling()).read_text())
    per_op: dict[str, float] = defaultdict(float)
    for ev in trace:
        if ev.get("cat") == "Node" and ev["name"].endswith("_kernel_time"):
            per_op[ev["args"]["op_name"]] += ev["dur"] / runs / 1000  # ms per inference
    return dict(sorted(per_op.items(), key=lambda kv: -kv[1]))


def main() -> None:
    run_dir = Path(sys.argv[1])
    for name in ("model_fp32.onnx", "model_int8.onnx"):
        ops = profile(run_dir / name)
        total = sum(ops.values())
        parts = ", ".join(
            f"{op} {ms:.3f} ms ({ms / total:.0%})" for op, ms in list(ops.items())[:5]
        )
        print(f"{name}: {total:.3f} ms in kernels per batch-1 inference: {parts}")


if __name__ == "__main__":
    main()
