from __future__ import annotations

import time

from compress.measure.timing import measure_interleaved


def test_interleaved_timing_ranks_a_slow_call_above_a_fast_one():
    t = measure_interleaved(
        {"fast": lambda: None, "slow": lambda: time.sleep(0.002)}, warmup=2, budget_s=0.05
    )
    assert t["slow"].p50_ms > 1.5 > t["fast"].p50_ms
    assert t["slow"].calls >= 30 and t["fast"].calls >= 30
    assert t["slow"].p90_ms >= t["slow"].p50_ms


def test_warm_up_stops_after_a_second_once_two_calls_ran(monkeypatch):
    """A call that takes seconds (ResNet50 at batch 32) is not warmed ten times; a fast one is."""
    from compress.measure import timing

    monkeypatch.setattr(timing, "WARMUP_S", 0.05)
    counts = {"fast": 0, "slow": 0}

    def call(name, seconds):
        def fn():
            counts[name] += 1
            time.sleep(seconds)

        return fn

    t = measure_interleaved({"fast": call("fast", 0.0), "slow": call("slow", 0.03)},
                            warmup=10, budget_s=0.0, min_calls=5)  # fmt: skip
    assert counts["fast"] == 10 + t["fast"].calls and t["fast"].calls >= 5
    assert counts["slow"] == 2 + t["slow"].calls and t["slow"].calls == 5
