"""`compress bench`: measure every artifact of a run in its runtime, side by side.

Warm latency (weights in cache) and cold latency (first call after other work evicted the
caches), p50 and p90, at batch 1 and 32, throughput, at each thread count; artifacts of a runtime
are interleaved so that they are compared under the same conditions. A language model's
artifacts are also timed generating: greedy new tokens per second from one context, beside the
runtime's fp32 file. The run directory is checked against its manifest first: a tampered artifact
is never loaded.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from compress.backends import open_runner
from compress.core.arrays import take_batch
from compress.core.errors import InputError
from compress.measure.generation import GENERATION_METHOD, generation_speed
from compress.measure.timing import TIMING_BUDGET_S, measure_interleaved
from compress.runs.integrity import verify_run_dir

EVICT_BYTES = 64 * 1024 * 1024  # larger than the last-level cache of the CPUs seen here


def _cold(calls: dict[str, Any], reps: int) -> dict[str, dict[str, float]]:
    """Each call timed right after a 64 MiB buffer was rewritten (caches evicted)."""
    buffer = np.zeros(EVICT_BYTES // 8)
    samples: dict[str, list[float]] = {n: [] for n in calls}
    for _ in range(reps):
        for name, fn in calls.items():
            buffer += 1.0
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
    return {
        n: {
            "p50_ms": float(np.percentile(ts, 50) * 1e3),
            "p90_ms": float(np.percentile(ts, 90) * 1e3),
        }
        for n, ts in samples.items()
    }


def bench_target(
    target: str | Path,
    threads: list[int] | None = None,
    out: str | None = None,
    cache: Any = None,
    progress: Any = None,
) -> tuple[Path, dict[str, Any]]:
    """`compress bench TARGET`: a run directory measured in place, or a reference model's
    standard pipeline run first (into `out`) and its run measured. Returns the run directory
    and the bench record."""
    from compress.core.errors import UsageError
    from compress.keras import models

    for n in threads or []:
        if n < 1:
            raise UsageError(f"threads must be >= 1. Got {n} instead.", key="threads")
    run_dir = Path(target)
    if str(target) in models.REGISTRY:
        from compress.runs.config import PipelineConfig
        from compress.runs.pipeline import run

        config = PipelineConfig.for_model(str(target), {"out": out} if out else {})
        run_dir = run(config, progress=progress, cache=cache).run_dir
    elif out:
        raise UsageError("out is for a model TARGET; a run directory is measured in place",
                         key="out")  # fmt: skip
    return run_dir, bench(run_dir, threads=threads)


def bench(
    run_dir: Path,
    threads: list[int] | None = None,
    batch_sizes: tuple[int, ...] = (1, 32),
    budget_s: float = TIMING_BUDGET_S,
    cold_reps: int = 20,
    generate_tokens: int = 32,
) -> dict[str, Any]:
    """Every artifact of a run measured: see the module's docstring. `generate_tokens`: new
    tokens per generation of a language model (0: no generation timing)."""
    run_dir = Path(run_dir)
    _, problems = verify_run_dir(run_dir)
    if problems:
        raise InputError(
            f"{run_dir} does not match its manifest ({'; '.join(problems)}): refusing to load it"
        )
    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    rows = [a for a in report["verification"]["artifacts"] if a["runtime"] != "keras"]
    tasks = report["verification"].get("tasks") or {}
    lm_head = next((h for h, t in tasks.items() if t == "lm"), None)
    threads = threads or sorted({1, os.cpu_count() or 1})
    rng = np.random.default_rng(0)
    results: list[dict[str, Any]] = []
    for n_threads in threads:
        for runtime in sorted({r["runtime"] for r in rows}):
            mine = [r for r in rows if r["runtime"] == runtime]
            runners = {
                r["name"]: open_runner(
                    run_dir / r["name"], runtime, n_threads, **r.get("options", {})
                )
                for r in mine
            }
            x = _inputs(next(iter(runners.values())), rng, lm_head)
            fp32 = next((r["name"] for r in mine if r["precision"] == "fp32"), None)
            entries = {r["name"]: {"name": r["name"], "runtime": runtime, "threads": n_threads,
                                   "precision": r["precision"]} for r in mine}  # fmt: skip
            for batch in batch_sizes:
                calls = {n: r.timed_call(x, batch) for n, r in runners.items()}
                calls = {n: c for n, c in calls.items() if c is not None}
                warm = measure_interleaved(calls, budget_s=budget_s)
                cold = _cold(calls, cold_reps)
                for name, entry in entries.items():
                    t = warm.get(name)
                    entry[f"b{batch}"] = None if t is None else {
                        "warm": t.as_dict(),
                        "cold": cold[name],
                        "throughput_per_s": batch / t.p50_ms * 1e3,
                        "speedup": warm[fp32].p50_ms / t.p50_ms if fp32 in warm else None,
                    }  # fmt: skip
            if lm_head is not None and generate_tokens:
                speed = generation_speed(runners, fp32, take_batch(x, 1), lm_head,
                                         generate_tokens, budget_s)  # fmt: skip
                for name, gen in speed.items():
                    entries[name]["generation"] = gen
            results.extend(entries.values())
    return {
        "run_dir": str(run_dir),
        "model": report["model"],
        "cpu": report["environment"]["cpu"],
        "batch_sizes": list(batch_sizes),
        "threads": threads,
        "notes": "cold = first call after a 64 MiB buffer was rewritten; onnxruntime sessions "
        "do not spin between runs (session.intra_op.allow_spinning=0); with 2 threads on a "
        "2-core VM results can jump between two levels: compare p90 as well as p50",
        "generation": None
        if lm_head is None or not generate_tokens
        else {
            "head": lm_head,
            "new_tokens": generate_tokens,
            "method": GENERATION_METHOD,
        },
        "artifacts": results,
    }


def _inputs(runner: Any, rng: np.random.Generator, lm_head: str | None) -> Any:
    """32 samples for each input of the artifact: uniform floats for float inputs; for a
    language model, token ids drawn over its vocabulary (its output's last axis) and masks of
    ones (an integer input named for a mask)."""
    x: dict[str, np.ndarray] = {}
    vocab = None
    for name, shape in runner.input_shapes.items():
        dtype = runner.input_dtypes[name]
        if not np.issubdtype(dtype, np.integer) and dtype != np.bool_:
            x[name] = rng.random((32, *shape), dtype=np.float32).astype(dtype)
        elif "mask" in name.lower() or dtype == np.bool_:
            x[name] = np.ones((32, *shape), dtype=dtype)
        else:
            if vocab is None:
                vocab = _vocabulary(runner, lm_head)
            x[name] = rng.integers(0, vocab, (32, *shape)).astype(dtype)
    return next(iter(x.values())) if len(x) == 1 else x


def _vocabulary(runner: Any, lm_head: str | None) -> int:
    """How many token ids the artifact takes: the last axis of its language-model head's
    logits for a sample of zeros (2 when it has no such head: ids 0 and 1)."""
    if lm_head is None:
        return 2
    probe = {n: np.zeros((1, *s), dtype=runner.input_dtypes[n])
             for n, s in runner.input_shapes.items()}  # fmt: skip
    for n in probe:
        if "mask" in n.lower():
            probe[n] += 1
    out = runner.predict(next(iter(probe.values())) if len(probe) == 1 else probe)
    logits = out.get(lm_head, next(iter(out.values())))
    return int(logits.shape[-1])
