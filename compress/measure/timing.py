"""Latency measurement: warm-up, then interleaved rounds so that artifacts compared with each
other are measured side by side (same thermal and cache conditions), never one after another."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

# Timed seconds per callable (and batch size): every timing of a run uses this default (verify,
# the recipe search, bench), so their numbers are comparable.
TIMING_BUDGET_S = 0.25
# The recipe search times its candidates in rounds of this share of a timing budget (3 to 8
# rounds, until the winner holds), so a candidate gets at most about twice verify's budget.
ROUND_SHARE = 0.25
MIN_CALLS = 30
# Warm-up: up to `warmup` untimed calls, but no more than WARMUP_S seconds of them once two ran
# (the first call pays allocation and kernel selection; a 2.6 s ResNet50 batch is warm after it).
WARMUP_S = 1.0


class TimingLock:
    """The timing lock of concurrent `compress tune` trials, a file (None: no lock, every
    context is free). A trial holds a shared hold on it while it runs (`trial`) and gives it up
    only to time; a timing takes it exclusively (`exclusive`), so it waits until every other
    trial is timing too or done, and none builds while it measures. A turnstile file keeps new
    holders from overtaking a waiting timing. Passed explicitly: tune's trial -> the pipeline
    (RunState.timing_lock) -> verify and the recipe search."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self._shared: Any = None  # this process's shared hold, while in trial()
        self._depth = 0  # exclusive() is re-entrant

    @contextmanager
    def trial(self) -> Iterator[None]:
        """A trial's shared hold, for the whole trial."""
        import fcntl

        if not self.path or self._shared is not None:
            yield
            return
        f = open(self.path, "a")  # noqa: SIM115 - held across the yield
        try:
            _take(f, fcntl.LOCK_SH)
            self._shared = f
            yield
        finally:
            self._shared = None
            f.close()  # closing releases the hold

    @contextmanager
    def released(self) -> Iterator[None]:
        """This process's shared hold given up for the duration (waiting on something that is
        not building, e.g. another run's stage), taken again after."""
        import fcntl

        shared = self._shared
        if shared is None or self._depth:
            yield
            return
        fcntl.flock(shared, fcntl.LOCK_UN)
        try:
            yield
        finally:
            _take(shared, fcntl.LOCK_SH)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """The lock held exclusively for the duration: this process's shared hold, if any, is
        given up meanwhile and taken again after."""
        import fcntl

        if not self.path or self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        shared = self._shared
        if shared is not None:
            fcntl.flock(shared, fcntl.LOCK_UN)
        self._depth = 1
        try:
            with open(self.path, "a") as f:
                _take(f, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(f, fcntl.LOCK_UN)
        finally:
            self._depth = 0
            if shared is not None:
                _take(shared, fcntl.LOCK_SH)


NO_LOCK = TimingLock(None)


def _take(f: Any, mode: int) -> None:
    import fcntl

    with open(f"{f.name}.turnstile", "a") as gate:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(f, mode)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Timing:
    p50_ms: float
    p90_ms: float
    calls: int

    def as_dict(self) -> dict[str, float | int]:
        return {"p50_ms": self.p50_ms, "p90_ms": self.p90_ms, "calls": self.calls}


def _warm(calls: dict[str, Callable[[], object]], warmup: int) -> dict[str, float]:
    """Untimed calls of each callable (up to `warmup`, at most WARMUP_S seconds once two ran);
    returns a per-call time estimate (seconds)."""
    per_call: dict[str, float] = {}
    for name, fn in calls.items():
        start = time.perf_counter()
        done = 0
        while done < warmup and (done < 2 or time.perf_counter() - start < WARMUP_S):
            fn()
            done += 1
        per_call[name] = max((time.perf_counter() - start) / max(done, 1), 1e-6)
    return per_call


def _interleave(
    calls: dict[str, Callable[[], object]],
    samples: dict[str, list[float]],
    per_call: dict[str, float],
    *,
    budget_s: float,
    min_calls: int,
    max_calls: int,
    chunk_s: float,
) -> None:
    """One measurement: chunks of about `chunk_s` seconds, the callables taking turns, until
    each has run `budget_s` seconds and at least `min_calls` times (or `max_calls`); appends
    per-call seconds to `samples`."""
    spent = dict.fromkeys(calls, 0.0)
    taken = dict.fromkeys(calls, 0)

    def pending(name: str) -> bool:
        n = taken[name]
        return n < max_calls and (n < min_calls or spent[name] < budget_s)

    while any(pending(name) for name in calls):
        for name, fn in calls.items():
            if not pending(name):
                continue
            chunk = max(1, min(int(chunk_s / per_call[name]), max_calls - taken[name]))
            for _ in range(chunk):
                t0 = time.perf_counter()
                fn()
                dt = time.perf_counter() - t0
                samples[name].append(dt)
                spent[name] += dt
                taken[name] += 1


def _timings(samples: dict[str, list[float]]) -> dict[str, Timing]:
    return {
        name: Timing(
            p50_ms=float(np.percentile(ts, 50) * 1e3),
            p90_ms=float(np.percentile(ts, 90) * 1e3),
            calls=len(ts),
        )
        for name, ts in samples.items()
    }


def measure_interleaved(
    calls: dict[str, Callable[[], object]],
    *,
    warmup: int = 10,
    budget_s: float = TIMING_BUDGET_S,
    min_calls: int = MIN_CALLS,
    max_calls: int = 2000,
    chunk_s: float = 0.02,
    lock: TimingLock = NO_LOCK,
) -> dict[str, Timing]:
    """Time each zero-argument callable; returns per-call latency percentiles in milliseconds.

    Each callable gets `warmup` untimed calls, then rounds of about `chunk_s` seconds each, the
    callables taking turns, until each has run for `budget_s` and at least `min_calls` times
    (or `max_calls`). Measures holding `lock` exclusively.
    """
    with lock.exclusive():
        per_call = _warm(calls, warmup)
        samples: dict[str, list[float]] = {name: [] for name in calls}
        _interleave(calls, samples, per_call, budget_s=budget_s, min_calls=min_calls,
                    max_calls=max_calls, chunk_s=chunk_s)  # fmt: skip
    return _timings(samples)


def measure_until_stable(
    calls: dict[str, Callable[[], object]],
    decide: Callable[[dict[str, Timing]], str],
    *,
    agree: int = 3,
    max_rounds: int = 8,
    round_budget_s: float = TIMING_BUDGET_S * ROUND_SHARE,
    warmup: int = 10,
    min_calls: int = 10,
    chunk_s: float = 0.01,
    lock: TimingLock = NO_LOCK,
) -> tuple[dict[str, Timing], list[str]]:
    """Interleaved rounds whose samples are pooled, until the decision taken on the pooled
    timings (`decide`: e.g. the winning recipe) has been the same after `agree` rounds in a row,
    or `max_rounds` rounds ran. A decision that flips between rounds is noise, so the search
    keeps measuring instead of trusting one round. Returns the pooled timings and the decision
    after each round. Measures holding `lock` exclusively."""
    with lock.exclusive():
        per_call = _warm(calls, warmup)
        samples: dict[str, list[float]] = {name: [] for name in calls}
        decisions: list[str] = []
        while len(decisions) < max_rounds:
            _interleave(calls, samples, per_call, budget_s=round_budget_s, min_calls=min_calls,
                        max_calls=10_000, chunk_s=chunk_s)  # fmt: skip
            decisions.append(decide(_timings(samples)))
            if len(decisions) >= agree and len(set(decisions[-agree:])) == 1:
                break
    return _timings(samples), decisions
