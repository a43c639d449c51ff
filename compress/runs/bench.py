"""`compress bench`: measure every artifact of a run in its runtime, side by side.

Warm latency (weights in cache) and cold latency (first call after other work evicted the
caches), p50 and p90, at batch 1 and 32, throughput, at each thread count; artifacts of a runtime
are interleaved so that they are compared under the same conditions. The run directory is
checked against its manifest first: a tampered artifact is never loaded.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from compress.backends import open_runner
from compress.core.errors import InputError
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
) -> dict[str, Any]:
    run_dir = Path(run_dir)
    _, problems = verify_run_dir(run_dir)
    if problems:
        raise InputError(
            f"{run_dir} does not match its manifest ({'; '.join(problems)}): refusing to load it"
        )
    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    rows = [a for a in report["verification"]["artifacts"] if a["runtime"] != "keras"]
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
            first = next(iter(runners.values()))
            x = {n: rng.random((32, *s), dtype=np.float32) for n, s in first.input_shapes.items()}
            x = next(iter(x.values())) if len(x) == 1 else x
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
        "artifacts": results,
    }
