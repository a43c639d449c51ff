"""Latency measurement: warm-up, then interleaved rounds so that artifacts compared with each
other are measured side by side (same thermal and cache conditions), never one after another."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# Timed seconds per callable (and batch size): every timing of a run uses this default (verify,
# the recipe search, bench), so their numbers are comparable.
TIMING_BUDGET_S = 0.25
MIN_CALLS = 30


@dataclass(frozen=True)
class Timing:
    p50_ms: float
    p90_ms: float
    calls: int

    def as_dict(self) -> dict[str, float | int]:
        return {"p50_ms": self.p50_ms, "p90_ms": self.p90_ms, "calls": self.calls}


def measure_interleaved(
    calls: dict[str, Callable[[], object]],
    *,
    warmup: int = 10,
    budget_s: float = TIMING_BUDGET_S,
    min_calls: int = MIN_CALLS,
    max_calls: int = 2000,
    chunk_s: float = 0.02,
) -> dict[str, Timing]:
    """Time each zero-argument callable; returns per-call latency percentiles in milliseconds.

    Each callable gets `warmup` untimed calls, then rounds of about `chunk_s` seconds each, the
    callables taking turns, until each has run for `budget_s` and at least `min_calls` times
    (or `max_calls`).
    """
    per_call: dict[str, float] = {}
    for name, fn in calls.items():
        start = time.perf_counter()
        for _ in range(warmup):
            fn()
        per_call[name] = max((time.perf_counter() - start) / max(warmup, 1), 1e-6)
    samples: dict[str, list[float]] = {name: [] for name in calls}
    spent: dict[str, float] = dict.fromkeys(calls, 0.0)

    def pending(name: str) -> bool:
        n = len(samples[name])
        return n < max_calls and (n < min_calls or spent[name] < budget_s)

    while any(pending(name) for name in calls):
        for name, fn in calls.items():
            if not pending(name):
                continue
            chunk = max(1, min(int(chunk_s / per_call[name]), max_calls - len(samples[name])))
            for _ in range(chunk):
                t0 = time.perf_counter()
                fn()
                dt = time.perf_counter() - t0
                samples[name].append(dt)
                spent[name] += dt
    return {
        name: Timing(
            p50_ms=float(np.percentile(ts, 50) * 1e3),
            p90_ms=float(np.percentile(ts, 90) * 1e3),
            calls=len(ts),
        )
        for name, ts in samples.items()
    }
