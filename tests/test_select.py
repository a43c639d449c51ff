"""The recipe chooser's rule with controlled timings: the fastest candidate that agrees with fp32
wins, unless it is within 5% of the default or nothing beats fp32; one that disagrees never wins."""

from __future__ import annotations

import pytest

from compress.backends.select import TIE, choose


def _entry(recipe_id, p50, fp32_p50=1.0, agreement=100.0):
    return {"id": recipe_id, "p50_ms_b1": p50, "speedup_b1": fp32_p50 / p50, "agreement": agreement}


def test_fastest_agreeing_candidate_wins_when_clearly_faster():
    entries = [_entry("default", 0.5), _entry("b", 0.3), _entry("c", 0.4)]
    assert choose(entries, 99.0)["id"] == "b"


def test_default_keeps_its_place_within_the_tie_margin():
    entries = [_entry("default", 0.5), _entry("b", 0.5 / TIE + 0.001)]
    assert choose(entries, 99.0)["id"] == "default"
    entries = [_entry("default", 0.5), _entry("b", 0.5 / TIE - 0.01)]
    assert choose(entries, 99.0)["id"] == "b"


def test_default_is_kept_when_no_candidate_beats_fp32():
    entries = [_entry("default", 1.2), _entry("b", 1.0)]  # b is fastest but only 1.0x fp32
    assert choose(entries, 99.0)["id"] == "default"


def test_a_candidate_that_disagrees_never_wins():
    entries = [_entry("default", 0.5), _entry("fast-wrong", 0.1, agreement=90.0)]
    assert choose(entries, 99.0)["id"] == "default"


def test_a_failed_default_lets_the_fastest_agreeing_win():
    entries = [{"id": "default", "error": "ValueError: no"}, _entry("b", 0.6), _entry("c", 0.4)]
    assert choose(entries, 99.0)["id"] == "c"


def test_when_none_agrees_enough_the_best_agreeing_wins():
    entries = [_entry("a", 0.5, agreement=95.0), _entry("b", 0.3, agreement=97.0)]
    assert choose(entries, 99.0)["id"] == "b"


def test_no_measured_candidate_is_an_error_naming_each():
    entries = [{"id": "a", "error": "ValueError: x"}, {"id": "b", "error": "OSError: y"}]
    with pytest.raises(RuntimeError, match="a: ValueError: x; b: OSError: y"):
        choose(entries, 99.0)
