"""verify: run every artifact in its own runtime on the held-out split and compare it with the
float Keras model, per output head; time it; apply the gates.

Units: accuracy and agreement in percent, drift in percentage points (Keras accuracy minus the
artifact's: positive means accuracy lost), latency in milliseconds, speedup as a ratio to the
fp32 artifact of the same runtime measured in the same rounds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from compress.backends import BACKENDS
from compress.backends.keras import KerasRunner
from compress.core.arrays import count, rows
from compress.core.errors import one_line
from compress.core.fileio import artifact_bytes, data_file
from compress.core.state import RunState
from compress.keras.model_io import load_model
from compress.measure.gates import (
    DEFAULT_MAX_DRIFT,
    DEFAULT_MAX_ERROR,
    DEFAULT_MAX_PPL_INCREASE,
    compression_warnings,
    gate_failures,
)
from compress.measure.generation import (
    GENERATION_METHOD,
    generate,
    generation_speed,
    token_input,
)
from compress.measure.heads import TaskChoice, head_metrics, match_heads, reference_metrics
from compress.measure.timing import MIN_CALLS, NO_LOCK, TIMING_BUDGET_S, measure_interleaved
from compress.measure.weights import float_weight_bytes
from compress.stages.base import Stage, StageParams, materialize


class VerifyParams(StageParams):
    threads: int = Field(1, ge=1)
    max_drift: float = Field(DEFAULT_MAX_DRIFT, ge=0.0)
    max_error: float = Field(
        DEFAULT_MAX_ERROR, ge=0.0,
        description="numeric heads: the largest relative error ||out - ref|| / ||ref|| of an "
        "artifact against the float model (0.05 = 5%)",
    )  # fmt: skip
    max_ppl_increase: float = Field(
        DEFAULT_MAX_PPL_INCREASE, ge=0.0,
        description="language model heads: the largest rise of held-out perplexity over the "
        "float model's, percent",
    )  # fmt: skip
    task: TaskChoice | dict[str, TaskChoice] = Field(
        "auto", description="classify | regress | lm, for every head or per head ({head = "
        "task}); auto: classify a softmax/sigmoid (or integer-labelled) output of >= 2 classes "
        "whose labels are class ids, lm a (time, vocab) output with token-id labels (n, time), "
        "else regress"
    )  # fmt: skip
    generate_tokens: int = Field(
        32, ge=0, le=4096,
        description="language models: greedy generation of this many new tokens per artifact, "
        "timed side by side with fp32 (tokens/s; 0: not measured)",
    )  # fmt: skip
    min_speedup: float | None = Field(None, gt=0.0)
    profile: bool = Field(
        True, description="per artifact, which op types ran in which kernels (and, in "
        "onnxruntime, each type's time per batch-1 call from its profiler)",
    )  # fmt: skip
    batch_sizes: tuple[int, ...] = (1, 32)
    timing_budget_s: float = Field(
        TIMING_BUDGET_S, gt=0.0,
        description="timed seconds per artifact and batch size (at least min_calls calls)",
    )  # fmt: skip
    min_calls: int = Field(
        MIN_CALLS, ge=3, le=2000,
        description="at least this many timed calls per artifact and batch size (lower it for "
        "models whose batch takes seconds)",
    )  # fmt: skip


class Verify(Stage):
    name = "verify"
    Params = VerifyParams
    cacheable = False  # its numbers are measured in the run that reports them

    needs_model = False  # the reference outputs usually come with the state (see pipeline)

    def run(self, state: RunState) -> RunState:
        p = self.params
        data = self.data(state)
        heads = data.heads
        keras_files = [a for a in state.artifacts if a.runtime == "keras"]
        in_hand = keras_files[-1] if keras_files else None  # the last Keras file is the model
        if state.reference_outputs is None or (in_hand and not in_hand.facts):
            state = materialize(state)
        outputs = state.reference_outputs
        if outputs is None:
            outputs = KerasRunner(self.model(state)).predict(data.x_test)
        reference = match_heads("keras model", outputs, heads)
        tasks = {h: data.task(h) for h in heads}
        ref_rows = {h: reference_metrics(reference[h], data.y_test[h], tasks[h]) for h in heads}
        ref_acc = {h: m["accuracy"] for h, m in ref_rows.items() if "accuracy" in m}
        baseline = state.info.get("baseline_accuracy")  # before prune/cluster, if any
        baseline_ppl = state.info.get("baseline_perplexity") or {}
        float_bytes = (
            in_hand.facts["float_weight_bytes"]
            if in_hand and "float_weight_bytes" in in_hand.facts
            else float_weight_bytes(self.model(state))
        )
        by_name: dict[str, dict[str, Any]] = {}
        lock = state.timing_lock or NO_LOCK
        lm_heads = [h for h in heads if tasks[h] == "lm"]
        generation: dict[str, Any] = {}  # the Keras model's tokens, generated once
        # One runtime's files open at a time (opened, measured, timed side by side, closed):
        # past 2 GB of weights every open session holds its own copy of them.
        for runtime in dict.fromkeys(a.runtime for a in state.artifacts):
            group = [a for a in state.artifacts if a.runtime == runtime]
            runners = {}
            for art in group:
                # The model in hand is the reference; earlier Keras files (the float model
                # before prune/cluster) are loaded and measured like any artifact.
                kmodel = None
                if art.runtime == "keras":
                    kmodel = state.model if art is in_hand else load_model(art.path)
                facts = art.facts or BACKENDS[art.runtime].facts(art.path, kmodel)
                row = self._row(art, facts, float_bytes)
                if art.runtime == "keras" and art is not in_hand:
                    outputs = match_heads(art.name, KerasRunner(kmodel).predict(data.x_test),
                                          heads)  # fmt: skip
                    row["heads"] = {
                        h: head_metrics(reference[h], outputs[h], data.y_test[h], tasks[h])
                        for h in heads
                    }
                elif art.runtime == "keras":
                    row["heads"] = {h: dict(m) for h, m in ref_rows.items()}
                else:
                    runner = BACKENDS[art.runtime].open_runner(art.path, p.threads, **art.options)
                    runners[art.name] = runner
                    outputs = match_heads(art.name, runner.predict(data.x_test), heads)
                    row["repeatable"] = is_repeatable(runner, data.x_test)
                    row["heads"] = {
                        h: head_metrics(reference[h], outputs[h], data.y_test[h], tasks[h])
                        for h in heads
                    }
                if baseline:
                    for h, m in row["heads"].items():
                        if h in baseline and "accuracy" in m:
                            m["baseline_drift"] = baseline[h] - m["accuracy"]
                for h, m in row["heads"].items():
                    if h in baseline_ppl:
                        m["baseline_ppl_increase"] = (m["perplexity"] / baseline_ppl[h] - 1) * 100
                by_name[art.name] = row
            group_rows = [by_name[a.name] for a in group]
            self._time(group_rows, runners, group, data.x_test, lock)
            if lm_heads and p.generate_tokens and runners:
                self._time_generation(group_rows, runners, generation, group, data.x_test,
                                      lm_heads[0], lock, state)  # fmt: skip
            runners.clear()
            runner = kmodel = None  # nothing of this runtime's files stays open
        rows = [by_name[a.name] for a in state.artifacts]
        if p.profile:
            self._profile(rows, state.artifacts, data.x_test)
        failures = gate_failures(rows, p.max_drift, p.min_speedup, p.max_error,
                                 p.max_ppl_increase)  # fmt: skip
        warnings = compression_warnings(rows)
        verification = {
            "threads": p.threads,
            "batch_sizes": list(p.batch_sizes),
            "test_samples": count(data.x_test),
            "tasks": tasks,
            "reference_accuracy": ref_acc,
            "reference_error": {
                h: m["reference_label_mae"]
                for h, m in ref_rows.items()
                if "reference_label_mae" in m
            },
            "baseline_accuracy": baseline,
            **({"baseline_perplexity": baseline_ppl} if baseline_ppl else {}),
            "float_weight_bytes": float_bytes,
            "max_drift": p.max_drift,
            "max_error": p.max_error,
            "max_ppl_increase": p.max_ppl_increase,
            "min_speedup": p.min_speedup,
            "artifacts": rows,
            "failures": failures,
            "warnings": warnings,
        }
        return state.replace(verification=verification)

    @staticmethod
    def _row(art: Any, facts: dict[str, Any], float_bytes: int) -> dict[str, Any]:
        """An artifact's row before it is run: what it is, its sizes and weights."""
        weights, gz = facts["weights"], facts["size_gzip_bytes"]
        size = artifact_bytes(art.path)  # with its external data
        row: dict[str, Any] = {
            "name": art.name,
            "format": art.format,
            "runtime": art.runtime,
            "precision": art.precision,
            "recipe": art.recipe.as_dict(),
            "size_bytes": size,
            "size_gzip_bytes": gz,
            "compression_ratio": float_bytes / gz,
            # the whole file (scales, graph) over the float model's parameter count
            "bits_per_weight": 8 * size / (float_bytes / 4),
            "sparsity": weights["sparsity"] if weights else None,
            "weights": weights,
            "left_float": list(art.left_float),
            "options": dict(art.options),
        }
        data_path = data_file(art.path)
        if data_path.is_file():  # ONNX external data: the weights beside the file
            row["external_data"] = {"file": data_path.name,
                                    "size_bytes": data_path.stat().st_size}  # fmt: skip
        if "layer_errors" in facts:  # quantized artifacts: per-layer error vs fp32
            row["layer_errors"] = facts["layer_errors"]
        return row

    def _time_generation(self, table, runners, generation, artifacts, x, head, lock,
                         state) -> None:  # fmt: skip
        """Language models: greedy generation of generate_tokens new tokens from the first
        held-out context, per artifact, its runtime's artifacts timed in interleaved rounds;
        tokens/s, speedup against the runtime's fp32 file, and how many of the generated
        tokens equal the Keras float model's (percent; `generation` keeps the Keras model's
        tokens for the next runtime)."""
        n = self.params.generate_tokens
        prompt = rows(x, 0, 1)
        if "expected" not in generation:
            generation["expected"] = generate(KerasRunner(self.model(state)), prompt, head, n)
        expected = generation["expected"]
        by_name = {r["name"]: r for r in table}
        for runtime in sorted({a.runtime for a in artifacts if a.name in runners}):
            names = [a.name for a in artifacts if a.runtime == runtime and a.name in runners]
            fp32 = next((a.name for a in artifacts
                         if a.runtime == runtime and a.precision == "fp32"), None)  # fmt: skip
            speed = generation_speed({m: runners[m] for m in names}, fp32, prompt, head, n,
                                     self.params.timing_budget_s, lock)  # fmt: skip
            for m in names:
                made = generate(runners[m], prompt, head, n)
                prefill = (by_name[m]["latency_ms"].get("b1") or {}).get("p50_ms")
                by_name[m]["generation"] = {
                    "new_tokens": n,
                    "context": int(
                        np.asarray(
                            prompt[token_input(prompt)] if isinstance(prompt, dict) else prompt
                        ).shape[1]
                    ),
                    "prefill_ms": prefill,
                    **speed[m],
                    "agreement_with_keras": float((made == expected).mean() * 100),
                    "kv_cache": False,
                    "method": GENERATION_METHOD,
                }

    def _profile(self, rows, artifacts, x) -> None:
        """Each exported artifact's op profile (Backend.op_profile), or why there is none."""
        by_name = {r["name"]: r for r in rows}
        for art in artifacts:
            if art.runtime == "keras" or art.name not in by_name:
                continue
            try:
                found = BACKENDS[art.runtime].op_profile(art.path, x, self.params.threads,
                                                         **art.options)  # fmt: skip
            except Exception as exc:  # a runtime that cannot profile this file: said, not fatal
                found = {"unavailable": one_line(exc)}
            if found is not None:
                by_name[art.name]["op_profile"] = found

    def _time(self, rows, runners, artifacts, x, lock) -> None:
        """Latency per artifact and batch size, runtimes' artifacts interleaved; speedup vs fp32."""
        by_name = {r["name"]: r for r in rows}
        for r in rows:
            r["latency_ms"] = {}
            r["speedup"] = {}
        runtimes = sorted({a.runtime for a in artifacts if a.name in runners})
        for runtime in runtimes:
            names = [a.name for a in artifacts if a.runtime == runtime and a.name in runners]
            fp32 = next(
                (a.name for a in artifacts if a.runtime == runtime and a.precision == "fp32"), None
            )
            for batch in self.params.batch_sizes:
                calls = {n: runners[n].timed_call(x, batch) for n in names}
                calls = {n: c for n, c in calls.items() if c is not None}
                timings = measure_interleaved(
                    calls, budget_s=self.params.timing_budget_s, min_calls=self.params.min_calls,
                    lock=lock,
                )  # fmt: skip
                for n in names:
                    t = timings.get(n)
                    by_name[n]["latency_ms"][f"b{batch}"] = t.as_dict() if t else None
                    base = timings.get(fp32) if fp32 else None
                    by_name[n]["speedup"][f"b{batch}"] = (
                        base.p50_ms / t.p50_ms if (t and base) else None
                    )


def is_repeatable(runner: Any, x: np.ndarray) -> bool:
    """Whether a sample's output is the same before and after other samples ran: a runtime that
    carries state between calls (e.g. a fused LSTM not reset) gives different answers."""
    first = runner.predict(rows(x, 0, 1))
    runner.predict(rows(x, 1, 4))
    again = runner.predict(rows(x, 0, 1))
    return all(np.array_equal(first[k], again[k]) for k in first)
