"""Runs a .onnx file with onnxruntime's CPU provider, outputs keyed by the graph's output names."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from compress.runtimes.base import batched, take_batch

_PREDICT_BATCH = 32


def session_options(threads: int):  # -> onnxruntime.SessionOptions
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return so


class OnnxRuntimeRunner:
    runtime = "onnxruntime"

    def __init__(self, path: Path, threads: int = 1) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.session = ort.InferenceSession(
            str(self.path), session_options(threads), providers=["CPUExecutionProvider"]
        )
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"{self.path.name}: expected one input, found {len(inputs)}")
        self._input = inputs[0]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _fixed_batch(self) -> int | None:
        dim = self._input.shape[0]
        return dim if isinstance(dim, int) else None

    def predict(self, x: np.ndarray) -> dict[str, np.ndarray]:
        batch = self._fixed_batch() or _PREDICT_BATCH
        parts: dict[str, list[np.ndarray]] = {n: [] for n in self.output_names}
        for xb in batched(x, batch):
            n = len(xb)
            feed = take_batch(xb, batch) if self._fixed_batch() and n < batch else xb
            results = self.session.run(None, {self._input.name: feed})
            for name, arr in zip(self.output_names, results, strict=True):
                parts[name].append(np.asarray(arr[:n], dtype=np.float32))
        return {name: np.concatenate(chunks) for name, chunks in parts.items()}

    def timed_call(self, x: np.ndarray, batch: int) -> Callable[[], object] | None:
        fixed = self._fixed_batch()
        if fixed is not None and fixed != batch:
            return None
        feed = {self._input.name: take_batch(x, batch)}
        return lambda: self.session.run(None, feed)
