from __future__ import annotations

import time

from compress.timing import measure_interleaved


def test_interleaved_timing_ranks_a_slow_call_above_a_fast_one():
    t = measure_interleaved(
        {"fast": lambda: None, "slow": lambda: time.sleep(0.002)}, warmup=2, budget_s=0.05
    )
    assert t["slow"].p50_ms > 1.5 > t["fast"].p50_ms
    assert t["slow"].calls >= 30 and t["fast"].calls >= 30
    assert t["slow"].p90_ms >= t["slow"].p50_ms
