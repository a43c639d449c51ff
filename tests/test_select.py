"""The recipe chooser's rule with controlled numbers: only candidates that agree with fp32 compete,
and of those the ones smaller than fp32; latency picks the fastest (ties within 5% go to the
smaller, then the more accurate); size picks the smallest that is not slower than fp32."""

from __future__ import annotations

import numpy as np
import pytest

from compress.backends.select import TIE, choose, decide, sample_ppl_increase
from compress.measure.heads import nll
from compress.measure.timing import measure_until_stable

FP32_SIZE = 1000


def _entry(recipe_id, p50, size=250, fp32_p50=1.0, agreement=100.0):
    return {"id": recipe_id, "p50_ms_b1": p50, "speedup_b1": fp32_p50 / p50,
            "agreement": agreement, "size_bytes": size}  # fmt: skip


def _choose(entries, objective="latency"):
    return choose(entries, 99.0, objective, FP32_SIZE)["id"]


def test_fastest_agreeing_candidate_wins_when_clearly_faster():
    entries = [_entry("default", 0.5), _entry("b", 0.3), _entry("c", 0.4)]
    assert _choose(entries) == "b"


def test_a_tie_goes_to_the_smaller_then_the_more_accurate():
    just_inside = 0.5 / TIE + 0.001
    entries = [_entry("default", 0.5, size=300), _entry("b", just_inside, size=400)]
    assert _choose(entries) == "default"  # b is faster, but within the noise, and bigger
    entries = [_entry("default", 0.5, size=300), _entry("b", 0.5 / TIE - 0.01, size=400)]
    assert _choose(entries) == "b"  # clearly faster
    entries = [_entry("a", 0.5, agreement=99.5), _entry("b", just_inside, agreement=100.0)]
    assert _choose(entries) == "b"  # same size, tied: the more accurate


def test_a_candidate_not_smaller_than_fp32_loses_to_one_that_is():
    entries = [_entry("static", 0.9, size=1200), _entry("dynamic", 0.95, size=400)]
    winner, lost, pays = decide(entries, 99.0, "latency", FP32_SIZE)
    assert winner["id"] == "dynamic" and pays
    assert lost == {"static": "not smaller than fp32 by 5% (1.200x its size)"}
    only_big = [_entry("static", 0.9, size=1200), _entry("other", 1.0, size=1100)]
    assert _choose(only_big) == "static"  # none is smaller: the fastest (and a warning follows)


def test_smaller_means_smaller_by_a_margin_that_matters():
    """0.04% under the fp32 size is the same file: it does not pass the smaller-first rule."""
    entries = [_entry("matmul-only", 1.0, size=int(FP32_SIZE * 0.9996)),
               _entry("all-ops", 0.5, size=310)]  # fmt: skip
    winner, lost, _ = decide(entries, 99.0, "latency", FP32_SIZE)
    assert winner["id"] == "all-ops"
    assert lost["matmul-only"].startswith("not smaller than fp32 by 5%")


def test_a_file_much_slower_than_fp32_is_never_the_latency_answer():
    """MobileNetV3Small's ONNX int8 search: the only smaller candidate above the floor ran at
    0.19x fp32. Speed decides among all that agree, and the winner is said not to pay."""
    entries = [_entry("dynamic-int8", 1 / 0.19, size=300),
               _entry("static-qdq-matmul-only", 1.0, size=990),
               _entry("static-qdq-all-ops", 0.8, size=310, agreement=30.0)]  # fmt: skip
    winner, lost, pays = decide(entries, 99.0, "latency", FP32_SIZE)
    assert winner["id"] == "static-qdq-matmul-only" and not pays
    assert lost["dynamic-int8"] == "slower (0.19x vs 1.00x)"
    assert lost["static-qdq-all-ops"] == "agreement 30.0% < 99% floor"


def test_every_losing_candidate_says_why():
    entries = [_entry("fast", 0.5, size=300), _entry("tied-bigger", 0.51, size=400),
               _entry("slow", 0.9, size=200), _entry("wrong", 0.1, agreement=50.0)]  # fmt: skip
    winner, lost, pays = decide(entries, 99.0, "latency", FP32_SIZE)
    assert winner["id"] == "fast" and pays
    assert lost == {
        "tied-bigger": "as fast as the winner within 5% but 400 B vs 300 B",
        "slow": "slower (1.11x vs 2.00x)",
        "wrong": "agreement 50.0% < 99% floor",
    }
    winner, lost, _ = decide(entries, 99.0, "size", FP32_SIZE)
    assert winner["id"] == "slow"
    assert lost["fast"] == "larger (300 B vs 200 B)"


def test_a_candidate_that_disagrees_never_wins():
    entries = [_entry("default", 0.5), _entry("fast-wrong", 0.1, agreement=90.0)]
    assert _choose(entries) == "default"


def test_size_objective_takes_the_smallest_not_slower_than_fp32():
    entries = [_entry("int8", 0.4, size=250), _entry("small-slow", 1.5, size=120),
               _entry("small-ok", 0.99, size=150)]  # fmt: skip
    assert _choose(entries, "size") == "small-ok"
    all_slow = [_entry("a", 1.5, size=300), _entry("b", 2.0, size=200)]
    assert _choose(all_slow, "size") == "b"  # every one is slower: the smallest


def test_a_failed_candidate_lets_the_others_compete():
    entries = [{"id": "default", "error": "ValueError: no"}, _entry("b", 0.6), _entry("c", 0.4)]
    assert _choose(entries) == "c"


def test_when_none_agrees_enough_the_best_agreeing_wins():
    entries = [_entry("a", 0.5, agreement=95.0), _entry("b", 0.3, agreement=97.0)]
    assert _choose(entries) == "b"


def test_no_measured_candidate_is_an_error_naming_each():
    entries = [{"id": "a", "error": "ValueError: x"}, {"id": "b", "error": "OSError: y"}]
    with pytest.raises(RuntimeError, match="a: ValueError: x; b: OSError: y"):
        choose(entries, 99.0)


def test_timing_rounds_stop_when_the_decision_is_stable_and_cap_when_it_is_not():
    calls = {"a": lambda: None, "b": lambda: None}
    _, steady = measure_until_stable(calls, lambda t: "a", round_budget_s=0.001)
    assert steady == ["a", "a", "a"]
    flips = iter(["a", "b"] * 10)
    _, noisy = measure_until_stable(calls, lambda t: next(flips), round_budget_s=0.001)
    assert len(noisy) == 8  # never stable: capped


def test_a_language_models_candidates_are_judged_by_their_perplexity_increase():
    """Next-token agreement over a 256-token vocabulary rarely reaches the 99% floor; a language
    model's candidates compete on the number verify gates them by instead."""
    entries = [
        {"id": "fast-broken", "agreement": 41.0, "ppl_increase": 278.0, "size_bytes": 50,
         "p50_ms_b1": 0.3, "speedup_b1": 3.0},
        {"id": "within", "agreement": 97.6, "ppl_increase": 0.26, "size_bytes": 80,
         "p50_ms_b1": 0.9, "speedup_b1": 1.0},
        {"id": "over", "agreement": 98.0, "ppl_increase": 1.5, "size_bytes": 70,
         "p50_ms_b1": 0.9, "speedup_b1": 1.0},
    ]  # fmt: skip
    assert choose(entries, 99.0, "latency", FP32_SIZE, max_ppl_increase=1.0)["id"] == "within"
    assert choose(entries, 99.0, "latency", FP32_SIZE, max_ppl_increase=2.0)["id"] == "over"
    # none within the budget: the lowest perplexity increase, not the fastest
    assert choose(entries, 99.0, "latency", FP32_SIZE, max_ppl_increase=0.1)["id"] == "within"
    # without a budget the agreement floor applies as for any model
    assert choose(entries, 99.0, "latency", FP32_SIZE)["id"] == "over"


def test_sample_perplexity_increase_uses_each_windows_own_next_tokens():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 8, (4, 6)).astype(np.int32)
    ref = rng.normal(size=(4, 6, 8)).astype(np.float32)
    out = ref + rng.normal(scale=0.5, size=ref.shape).astype(np.float32)
    got = sample_ppl_increase({"y": ref}, {"y": out}, {"y": "lm"}, tokens)
    labels = tokens[:, 1:]
    expected = (np.exp(nll(out[:, :-1], labels)) / np.exp(nll(ref[:, :-1], labels)) - 1) * 100
    assert got == pytest.approx(expected)
    assert sample_ppl_increase({"y": ref}, {"y": ref}, {"y": "lm"}, tokens) == pytest.approx(0)
    assert sample_ppl_increase({"y": ref}, {"y": out}, {"y": "classify"}, tokens) is None
    floats = rng.random((4, 6)).astype(np.float32)  # no token ids: nothing to score
    assert sample_ppl_increase({"y": ref}, {"y": out}, {"y": "lm"}, floats) is None


def test_sizes_within_the_margin_are_a_tie_won_by_the_faster():
    """A user MLP's onnxruntime int4 files: weight-only 92 B smaller than the int8-compute one
    but a third of its speed. Under --objective size the two are the same size."""
    entries = [_entry("weight-only-int4", 1 / 1.97, size=1_373_214),
               _entry("int4-int8-compute", 1 / 6.37, size=1_373_306),
               _entry("dynamic-int8", 1 / 4.9, size=2_193_045)]  # fmt: skip
    winner, lost, pays = decide(entries, 99.0, "size", 8_706_043)
    assert winner["id"] == "int4-int8-compute" and pays
    assert lost["weight-only-int4"] == ("as small as the winner within 5% but slower "
                                        "(1.97x vs 6.37x)")  # fmt: skip
    assert lost["dynamic-int8"] == "larger (2,193,045 B vs 1,373,306 B)"


def test_a_smaller_file_somewhat_slower_than_fp32_still_beats_a_bigger_one():
    """The rnn's onnxruntime int8 search: DynamicQuantizeLSTM is 2.8x smaller at 0.69x, the
    static rows leave the LSTM float (bigger than fp32) at 0.95x. Above half the fp32 speed
    the smaller file wins, and does not pay (the run warns it is slower)."""
    entries = [_entry("dynamic-int8", 1 / 0.69, size=355),
               _entry("static-qdq-profiled", 1 / 0.9525, size=1028)]  # fmt: skip
    winner, lost, pays = decide(entries, 99.0, "latency", FP32_SIZE)
    assert winner["id"] == "dynamic-int8" and not pays
    assert lost["static-qdq-profiled"] == "not smaller than fp32 by 5% (1.028x its size)"
