"""Runs a .onnx file with onnxruntime's CPU provider, outputs keyed by the graph's output names."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from compress.arrays import Inputs, as_feed, batched, count, take_batch

# Outputs are computed one sample at a time, as deployed at batch 1: dynamic quantization
# scales activations per batch, so a batch's other samples would change a sample's output.
_PREDICT_BATCH = 1


def session_options(threads: int):  # -> onnxruntime.SessionOptions
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    # A multi-threaded session's workers spin after each run() and steal the other core from
    # whatever runs next (another artifact being timed): no spinning, so timings are fair.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


class OnnxRuntimeRunner:
    runtime = "onnxruntime"

    def __init__(self, path: Path, threads: int = 1) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.session = ort.InferenceSession(
            str(self.path), session_options(threads), providers=["CPUExecutionProvider"]
        )
        self._inputs = self.session.get_inputs()
        self.input_names = [i.name for i in self._inputs]
        self.input_shapes = {
            i.name: tuple(d if isinstance(d, int) else 1 for d in i.shape[1:]) for i in self._inputs
        }
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _fixed_batch(self) -> int | None:
        dim = self._inputs[0].shape[0]
        return dim if isinstance(dim, int) else None

    def predict(self, x: Inputs) -> dict[str, np.ndarray]:
        batch = self._fixed_batch() or _PREDICT_BATCH
        parts: dict[str, list[np.ndarray]] = {n: [] for n in self.output_names}
        for xb in batched(x, batch):
            n = count(xb)
            feed = take_batch(xb, batch) if self._fixed_batch() and n < batch else xb
            results = self.session.run(None, as_feed(feed, self.input_names))
            for name, arr in zip(self.output_names, results, strict=True):
                parts[name].append(np.asarray(arr[:n], dtype=np.float32))
        return {name: np.concatenate(chunks) for name, chunks in parts.items()}

    def timed_call(self, x: Inputs, batch: int) -> Callable[[], object] | None:
        fixed = self._fixed_batch()
        if fixed is not None and fixed != batch:
            return None
        import onnxruntime as ort

        # IOBinding: the input is bound once as an OrtValue and outputs go to onnxruntime-owned
        # CPU buffers, so a timed call measures the model, not per-call feed conversion.
        binding = self.session.io_binding()
        for name, arr in as_feed(take_batch(x, batch), self.input_names).items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(arr))
        for name in self.output_names:
            binding.bind_output(name, "cpu")
        return lambda: self.session.run_with_iobinding(binding)
