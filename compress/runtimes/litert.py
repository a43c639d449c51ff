"""Runs a .tflite file with the LiteRT interpreter (ai-edge-litert), outputs mapped by name.

Outputs are read through the model's signature, because a multi-output model's output tensor
order is not the Keras order. Quantized (int8/uint8) inputs and outputs are converted with the
tensor's own scale and zero point, so callers always pass and get float32.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from compress.arrays import Inputs, as_feed, batched, count, take_batch

# Outputs are computed one sample at a time, as deployed at batch 1: dynamic quantization
# scales activations per batch, so a batch's other samples would change a sample's output.
_PREDICT_BATCH = 1


class LiteRTRunner:
    runtime = "litert"

    def __init__(self, path: Path, threads: int = 1, reset_state: bool = False) -> None:
        self.path = Path(path)
        self.threads = threads
        # A model with variables (e.g. a fused LSTM's state) keeps them between invokes; reset
        # them before every call so each sample is independent.
        self.reset_state = reset_state
        self._by_batch: dict[int, tuple[Any, dict, dict] | None] = {}
        interp, inputs, outputs = self._open(None)
        self.input_names = list(inputs)
        self.input_shapes = {
            n: tuple(int(d) for d in det["shape"][1:]) for n, det in inputs.items()
        }
        self.output_names = list(outputs)
        self._base_batch = int(next(iter(inputs.values()))["shape"][0])

    def _open(self, batch: int | None) -> tuple[Any, dict, dict]:
        from ai_edge_litert.interpreter import Interpreter

        interp = Interpreter(model_path=str(self.path), num_threads=self.threads)
        if interp.get_signature_list():
            sig = interp.get_signature_runner()
            inputs, outputs = sig.get_input_details(), sig.get_output_details()
            # The runner holds a reference to the interpreter's internals, which makes
            # allocate_tensors() and invoke() refuse to run; only its name->index maps are kept.
            del sig
        else:  # no signature (seen for QAT LSTMs): tensor names; outputs in the model's order
            inputs = {d["name"]: d for d in interp.get_input_details()}
            outputs = {d["name"]: d for d in interp.get_output_details()}
        if batch is not None:
            for det in inputs.values():
                if int(det["shape"][0]) != batch:
                    interp.resize_tensor_input(det["index"], [batch, *det["shape"][1:]])
        interp.allocate_tensors()
        return interp, inputs, outputs

    def _session(self, batch: int) -> tuple[Any, dict, dict] | None:
        if batch not in self._by_batch:
            try:
                self._by_batch[batch] = self._open(batch)
            except (RuntimeError, ValueError):
                self._by_batch[batch] = None  # fixed-batch model: this size is not possible
        return self._by_batch[batch]

    def _invoke(self, sess: tuple[Any, dict, dict], xb: Inputs) -> dict[str, np.ndarray]:
        interp, inputs, outputs = sess
        if self.reset_state:
            interp.reset_all_variables()
        for name, arr in as_feed(xb, self.input_names).items():
            interp.set_tensor(inputs[name]["index"], _to_tensor(arr, inputs[name]))
        interp.invoke()
        return {name: _from_tensor(interp.get_tensor(d["index"]), d) for name, d in outputs.items()}

    def predict(self, x: Inputs) -> dict[str, np.ndarray]:
        batch = _PREDICT_BATCH if self._session(_PREDICT_BATCH) is not None else self._base_batch
        sess = self._session(batch)
        assert sess is not None  # the converted batch size always opens
        parts: dict[str, list[np.ndarray]] = {n: [] for n in self.output_names}
        for xb in batched(x, batch):
            n = count(xb)
            out = self._invoke(sess, take_batch(xb, batch) if n < batch else xb)
            for name, arr in out.items():
                parts[name].append(arr[:n].copy())
        return {name: np.concatenate(chunks) for name, chunks in parts.items()}

    def timed_call(self, x: Inputs, batch: int) -> Callable[[], object] | None:
        sess = self._session(batch)
        if sess is None:
            return None
        xb = take_batch(x, batch)
        return lambda: self._invoke(sess, xb)


def _to_tensor(x: np.ndarray, det: dict) -> np.ndarray:
    dtype = det["dtype"]
    if np.issubdtype(dtype, np.integer):
        scale, zero = det["quantization"]
        info = np.iinfo(dtype)
        q = np.round(x / scale + zero)
        return np.clip(q, info.min, info.max).astype(dtype)
    return np.ascontiguousarray(x, dtype=dtype)


def _from_tensor(t: np.ndarray, det: dict) -> np.ndarray:
    if np.issubdtype(t.dtype, np.integer):
        scale, zero = det["quantization"]
        return ((t.astype(np.float32) - zero) * scale).astype(np.float32)
    return t.astype(np.float32, copy=False)
