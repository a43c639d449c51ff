"""Choose the fastest int8 recipe per runtime by measuring candidates on the user's model.

What wins depends on the layers (onnxruntime's int8 conv on 3 input channels is slower than its
fp32 conv, so for the CNN leaving the conv in fp32 wins), so nothing is assumed: each candidate is
built, its batch-1 latency measured side by side with the others, and its top-1 agreement with
the fp32 artifact checked on training-split samples (the held-out split stays untouched). The
fastest candidate that agrees on at least `min_agreement` percent of them wins; every candidate's
numbers go into the report.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from compress.arrays import Inputs, rows
from compress.runtimes import open_runner
from compress.runtimes.timing import measure_interleaved

SELECTION_SAMPLES = 200
TIE = 1.05  # a candidate must be 5% faster than the default recipe to replace it


def agreement(reference: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> float:
    """Lowest top-1 agreement over the heads, percent (heads matched by position)."""
    scores = [
        float((r.argmax(-1) == o.argmax(-1)).mean() * 100)
        for r, o in zip(reference.values(), outputs.values(), strict=True)
    ]
    return min(scores)


def search(
    runtime: str,
    fp32_path: Path,
    candidates: dict[str, Callable[[Path], None]],
    x: Inputs,
    *,
    threads: int = 1,
    min_agreement: float = 99.0,
    options: dict[str, bool] | None = None,
) -> tuple[str, Path, list[dict[str, Any]], tempfile.TemporaryDirectory]:
    """Build each candidate (`make(path)` writes it), measure, and return (winner name, its
    file, every candidate's numbers, the temporary directory holding the files)."""
    options = options or {}
    tmp = tempfile.TemporaryDirectory(prefix="compress-recipes-")
    suffix = fp32_path.suffix
    sample = rows(x, 0, SELECTION_SAMPLES)
    reference = open_runner(fp32_path, runtime, threads, **options)
    ref_out = reference.predict(sample)
    results: list[dict[str, Any]] = []
    runners = {}
    for name, make in candidates.items():
        path = Path(tmp.name) / f"{name}{suffix}"
        entry: dict[str, Any] = {"recipe": name}
        try:
            make(path)
            runner = open_runner(path, runtime, threads, **options)
            entry["agreement"] = agreement(ref_out, runner.predict(sample))
            entry["size_bytes"] = path.stat().st_size
            runners[name] = runner
        except Exception as exc:  # a recipe this model or runtime cannot take
            from compress.stages.base import one_line

            entry["error"] = one_line(exc)
        results.append(entry)
    calls = {n: r.timed_call(sample, 1) for n, r in runners.items()}
    calls["fp32"] = reference.timed_call(sample, 1)
    timings = measure_interleaved({n: c for n, c in calls.items() if c}, budget_s=0.3)
    for entry in results:
        t = timings.get(entry["recipe"])
        if t:
            entry["p50_ms_b1"] = t.p50_ms
            entry["speedup_b1"] = timings["fp32"].p50_ms / t.p50_ms
    usable = [e for e in results if "p50_ms_b1" in e]
    if not usable:
        tmp.cleanup()
        raise RuntimeError("; ".join(f"{e['recipe']}: {e.get('error')}" for e in results))
    good = [e for e in usable if e["agreement"] >= min_agreement]
    if good:
        winner = min(good, key=lambda e: e["p50_ms_b1"])
        # Timing noise is a few percent: the first (default) recipe keeps its place unless
        # another is clearly faster.
        default = good[0] if good[0] is results[0] else None
        if default is not None and (
            default["p50_ms_b1"] <= winner["p50_ms_b1"] * TIE  # not clearly slower
            or winner["speedup_b1"] < TIE  # nothing is faster than fp32: keep the real int8
        ):
            winner = default
    else:
        winner = max(usable, key=lambda e: (e["agreement"], -e["p50_ms_b1"]))
    for entry in results:
        entry["chosen"] = entry is winner
    return winner["recipe"], Path(tmp.name) / f"{winner['recipe']}{suffix}", results, tmp
