"""Stage cache: a rerun reuses finished stages; a changed parameter reruns only that stage and
those after it; a corrupt entry is rebuilt, never used; verify always measures anew."""

from __future__ import annotations

import json

import pytest

from compress import PipelineConfig, StageCache, run
from compress.cli import main
from compress.core.fileio import sha256_file


def _config(tmp_path, **overrides):
    base = {"train.epochs": 2, "verify.timing_budget_s": 0.02, "out": str(tmp_path / "out")}
    return PipelineConfig.for_model("multitask", {**base, **overrides})


@pytest.fixture(scope="module")
def _seed(tmp_path_factory):
    """One run's filled cache, made once; tests get a copy of it (see `first`)."""
    tmp = tmp_path_factory.mktemp("cache-first")
    cache = StageCache(tmp / "cache")
    return cache, run(_config(tmp), cache=cache)


@pytest.fixture
def first(_seed, tmp_path):
    """(tmp dir, a private copy of the first run's cache, the first run): tests that corrupt or
    clear their cache cannot change what another test finds, whatever the order."""
    import shutil

    cache, result = _seed
    shutil.copytree(cache.root, tmp_path / "cache")
    return tmp_path, StageCache(tmp_path / "cache"), result


def _hashes(result):
    return {a["name"]: sha256_file(result.run_dir / a["name"])
            for a in result.report["verification"]["artifacts"]}  # fmt: skip


def test_first_run_stores_every_cacheable_stage(first):
    _, _, result = first
    assert result.report["cache"] == {
        "build": "never", "train": "stored", "export_tflite": "stored", "export_onnx": "stored",
        "quantize": "stored", "verify": "never",
    }  # fmt: skip


def test_rerun_reuses_every_stage_and_gives_identical_artifacts(first):
    tmp, cache, result = first
    again = run(_config(tmp), cache=cache)
    assert set(again.report["cache"].values()) == {"hit", "never"}
    assert _hashes(again) == _hashes(result)
    assert (
        again.report["verification"]["reference_accuracy"]
        == (result.report["verification"]["reference_accuracy"])
    )


def test_changing_a_gate_retrains_nothing(first):
    tmp, cache, _ = first
    again = run(_config(tmp, **{"verify.min_speedup": 0.01}), cache=cache)
    assert again.report["cache"]["train"] == "hit"
    assert again.report["cache"]["quantize"] == "hit"
    # the drift budget is also the quantize fallback's: quantize is reused while the drift it
    # estimated on every artifact fits the new budget (the fallback would not engage), else it
    # reruns; training never does
    budget = again.report["stages"]["quantize"]["budget"]
    assert not budget["engaged"] and budget["estimates"]
    worst = max(e["drift"] for e in budget["estimates"].values())
    again = run(_config(tmp, **{"verify.max_drift": 0.5}), cache=cache)
    c = again.report["cache"]
    expected = "hit" if worst <= 0.5 else "stored"
    assert (c["train"], c["export_tflite"], c["quantize"]) == ("hit", "hit", expected)


def test_a_cached_quantize_holds_for_a_budget_only_while_its_estimates_fit():
    from compress.stages import Quantize

    estimates = {"model_int8.tflite": {"drift": 0.8, "relative_error": 0.01}}
    clean = {"budget": {"max_drift": 1.0, "max_error": 0.05, "engaged": False,
                        "estimates": estimates}}  # fmt: skip
    assert Quantize(max_drift=2.0).reuses(clean) and Quantize(max_drift=0.8).reuses(clean)
    assert not Quantize(max_drift=0.5).reuses(clean)  # the fallback would engage now
    assert not Quantize(max_drift=2.0, max_error=0.005).reuses(clean)
    corrected = {"budget": {**clean["budget"], "engaged": True}}
    assert Quantize(max_drift=1.0).reuses(corrected)  # made for exactly this budget
    assert not Quantize(max_drift=2.0).reuses(corrected)
    assert not Quantize(max_ppl_increase=2.0).reuses(corrected)  # another LM budget
    lm = {"model_int8.tflite": {"drift": 0.0, "relative_error": 0.0, "ppl_increase": 0.4}}
    lm_clean = {"budget": {**clean["budget"], "estimates": lm}}
    assert Quantize(max_ppl_increase=0.5).reuses(lm_clean)
    assert not Quantize(max_ppl_increase=0.3).reuses(lm_clean)
    assert not Quantize().reuses({})  # an entry from before budgets were recorded


def test_changing_quantize_mode_reruns_only_quantize(first):
    tmp, cache, _ = first
    again = run(_config(tmp, **{"quantize.mode": "dynamic"}), cache=cache)
    c = again.report["cache"]
    assert (c["train"], c["export_tflite"], c["export_onnx"]) == ("hit", "hit", "hit")
    assert c["quantize"] == "stored"


def test_corrupt_entry_is_detected_and_rebuilt(first):
    tmp, cache, result = first
    entries = [p for p in cache.root.glob("*/*") if (p / "model_fp32.tflite").exists()]
    assert len(entries) == 1
    victim = entries[0] / "model_fp32.tflite"
    victim.write_bytes(victim.read_bytes()[:100])  # truncated
    again = run(_config(tmp), cache=cache)
    assert again.report["cache"]["export_tflite"] == "stored"
    assert again.report["cache"]["train"] == "hit"
    fp32 = next(a for a in again.report["verification"]["artifacts"]
                if a["name"] == "model_fp32.tflite")  # fmt: skip
    assert fp32["heads"]["digit"]["agreement"] == 100.0
    assert _hashes(again)["model_fp32.tflite"] == _hashes(result)["model_fp32.tflite"]


def test_no_cache_flag_runs_everything_and_cache_clear_empties(first, tmp_path, capsys):
    _, cache, _ = first
    out = tmp_path / "o"
    entries = sorted(p.name for p in cache.root.glob("*/*"))
    assert entries  # the first run stored its stages
    # --max-drift 100: one epoch leaves int8 drift as noise; this test is about the cache (int8
    # quality at the shipped gate: test_compression.py, trained models)
    code = main(["run", "multitask", "--epochs", "1", "--out", str(out), "--no-cache",
                 "--max-drift", "100", "--quiet", "--cache-dir", str(cache.root)])  # fmt: skip
    assert code == 0
    assert sorted(p.name for p in cache.root.glob("*/*")) == entries  # --no-cache stored nothing
    (run_dir,) = (out / "multitask").iterdir()
    report = json.loads((run_dir / "report.json").read_text())
    assert report["cache"]["train"] == "off"
    assert main(["cache", "clear", "--cache-dir", str(cache.root)]) == 0
    assert "removed" in capsys.readouterr().out
    assert not cache.root.exists()


def test_rerun_with_every_stage_cached_verifies_without_keras(tmp_path):
    """The float model's reference outputs are cached with it: a rerun of cached stages checks
    every artifact in its runtime without importing TensorFlow, and reports the same accuracy."""
    import subprocess
    import sys

    tmp = tmp_path
    cache = StageCache(tmp / "cache")  # its own: other tests here clear theirs
    result = run(_config(tmp), cache=cache)
    argv = [
        "run",
        "multitask",
        "--epochs",
        "2",
        "--set",
        "verify.timing_budget_s=0.02",
        "--out",
        str(tmp / "out"),
        "--cache-dir",
        str(cache.root),
        "--json",
        "--quiet",
    ]
    code = (
        "import json, sys, contextlib, io\n"
        "from compress.cli import main\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        f"    rc = main({argv!r})\n"
        "report = json.loads(buf.getvalue())\n"
        "print(json.dumps([rc, 'tensorflow' in sys.modules, report['cache'],"
        " report['verification']['reference_accuracy']]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rc, imported_tf, cached, accuracy = json.loads(proc.stdout.splitlines()[-1])
    assert rc == 0 and set(cached.values()) == {"hit", "never"}
    assert not imported_tf
    assert accuracy == result.report["verification"]["reference_accuracy"]


def test_a_claimed_key_makes_a_second_claimant_wait_outside_its_timing_hold(tmp_path):
    """The claim that lets concurrent runs make a stage once: the second claimant of a key
    blocks until the first is done, and waits inside `waiting` (where a tune trial gives up its
    share of the timing lock); another key is not held up."""
    import threading
    import time
    from contextlib import contextmanager

    cache = StageCache(tmp_path / "cache")
    events = []

    @contextmanager
    def waiting():
        events.append("waiting")
        yield

    def first():
        with cache.claim("k"):
            events.append("first in")
            time.sleep(0.5)
            events.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    time.sleep(0.1)
    with cache.claim("other", waiting):
        events.append("other in")
    with cache.claim("k", waiting):
        events.append("second in")
    thread.join()
    assert events == ["first in", "other in", "waiting", "first out", "second in"]
