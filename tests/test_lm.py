"""The reference language model (`lm`, tiny size) and language-model heads: perplexity, its
gate, next-token agreement and generation speed, recomputed here from the files and the split the
report records; a user's own language model with token-id data."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_cache_root

from compress.cli import main
from compress.measure.gates import head_gate
from compress.measure.heads import head_metrics, infer_task, nll

TINY = ["--size", "tiny", "--set", "verify.timing_budget_s=0.02",
        "--set", "verify.generate_tokens=8"]  # fmt: skip


def _run(argv: list[str]) -> tuple[int, dict]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["run", *argv, "--json", "--quiet"])
    return code, json.loads(buf.getvalue())


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lm")
    cache = str(shared_cache_root(tmp_path_factory))
    code, report = _run(["lm", "--quantize", "int8", "--epochs", "2", "--out", str(out),
                         "--cache-dir", cache, *TINY])  # fmt: skip
    return {"code": code, "report": report, "dir": out / "lm" / report["run_id"],
            "out": out, "cache": cache}  # fmt: skip


def _rows(report):
    return {a["name"]: a for a in report["verification"]["artifacts"]}


@pytest.mark.slow
def test_lm_int8_reports_perplexity_agreement_and_generation_beside_fp32(lm_run):
    report = lm_run["report"]
    assert lm_run["code"] == 0, report["verification"]["failures"]
    assert report["verification"]["tasks"] == {"next_token": "lm"}
    rows = _rows(report)
    assert {"model_fp32.tflite", "model_fp32.onnx", "model_int8.tflite", "model_int8.onnx"} <= set(
        rows
    )
    reference = rows["model.keras"]["heads"]["next_token"]["perplexity"]
    unigram = report["stages"]["build"]["unigram_perplexity"]
    # two epochs of the tiny model: about 6 against the unigram's 28 on the same held-out bytes
    assert reference < unigram / 2, (reference, unigram)
    for name, row in rows.items():
        m = row["heads"]["next_token"]
        assert m["task"] == "lm" and m["reference_perplexity"] == pytest.approx(reference)
        assert m["bits_per_token"] == pytest.approx(np.log2(m["perplexity"]))
        if row["runtime"] == "keras":
            continue
        assert m["ppl_increase"] <= report["verification"]["max_ppl_increase"] == 1.0, name
        g = row["generation"]
        assert g["new_tokens"] == 8 and g["tokens_per_s"] > 0 and g["kv_cache"] is False
        assert "recomputes the whole context" in g["method"]
        assert g["prefill_ms"] == row["latency_ms"]["b1"]["p50_ms"]
        if row["precision"] == "fp32":
            assert m["agreement"] == 100.0 and g["agreement_with_keras"] == 100.0
            assert g["speedup"] == 1.0
        else:
            assert m["agreement"] >= 95.0 and g["speedup"] > 0


@pytest.mark.slow
def test_perplexity_recomputed_from_the_files_and_the_recorded_split(lm_run):
    """Another reader's perplexity: the held-out windows cut again from the package's files at
    the recorded offsets, each file run in its own runtime, the NLL computed here."""
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    report = lm_run["report"]
    source = report["data"]["source"]
    root = Path(importlib.util.find_spec(source["package"]).submodule_search_locations[0])
    context = source["context"]
    windows = np.stack([
        np.frombuffer((root / f).read_bytes()[o : o + context + 1], dtype=np.uint8)
        for f, o in source["held_out_windows"]
    ])  # fmt: skip
    assert set(source["held_out_files"]).isdisjoint(source["train_files"])
    x, y = windows[:, :-1].astype(np.int32), windows[:, 1:].astype(np.int64)
    rows = _rows(report)
    for name in ("model_fp32.onnx", "model_int8.onnx"):
        session = ort.InferenceSession(str(lm_run["dir"] / name))
        key = session.get_inputs()[0].name
        # one window a call, as deployed (and as compress runs them): dynamic int8 scales
        # activations per call, so a batch's other windows would change a window's logits
        logits = np.concatenate([session.run(None, {key: x[i : i + 1]})[0]
                                 for i in range(len(x))])  # fmt: skip
        expected = rows[name]["heads"]["next_token"]["perplexity"]
        assert np.exp(nll(logits, y)) == pytest.approx(expected, rel=1e-4), name
    for name in ("model_fp32.tflite", "model_int8.tflite"):
        interp = Interpreter(model_path=str(lm_run["dir"] / name))
        runner = interp.get_signature_runner()
        (key,) = runner.get_input_details()
        logits = np.concatenate([next(iter(runner(**{key: x[i : i + 1]}).values()))
                                 for i in range(len(x))])  # fmt: skip
        expected = rows[name]["heads"]["next_token"]["perplexity"]
        assert np.exp(nll(logits, y)) == pytest.approx(expected, rel=1e-4), name


@pytest.mark.slow
def test_perplexity_gate_fails_the_run_naming_artifact_and_increase(lm_run, capsys):
    rows = _rows(lm_run["report"])
    worst = max(r["heads"]["next_token"]["ppl_increase"] for r in rows.values()
                if r["precision"] == "int8")  # fmt: skip
    assert worst > 0  # quantization costs some perplexity; half of it is a gate it misses
    gate = worst / 2
    code = main(["run", "lm", "--quantize", "int8", "--epochs", "2", "--out",
                 str(lm_run["out"]), "--cache-dir", lm_run["cache"], "--quiet",
                 "--max-ppl-increase", str(gate), "--set", "quantize.fallback=false",
                 *TINY])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert "(next_token): perplexity" in err and f"over max_ppl_increase {gate:g}%" in err


@pytest.mark.slow
def test_lm_prunes_and_trains_quantization_aware(lm_run, capsys):
    code, report = _run(["lm", "--prune", "0.5", "--quantize", "qat", "--epochs", "2",
                         "--set", "prune.epochs=1", "--out", str(lm_run["out"]),
                         "--cache-dir", lm_run["cache"], "--max-ppl-increase", "100",
                         *TINY])  # fmt: skip
    rows = _rows(report)
    assert code == 0, report["verification"]["failures"]
    assert min(report["stages"]["prune"]["layers"].values()) >= 0.45
    assert {"model_qat.tflite", "model_qat.onnx"} <= set(rows)
    # the unpruned float model's perplexity is the baseline tune judges a trial against
    base = report["verification"]["baseline_perplexity"]["next_token"]
    unpruned = _rows(lm_run["report"])["model.keras"]["heads"]["next_token"]["perplexity"]
    assert base == pytest.approx(unpruned, rel=1e-6)
    for row in rows.values():
        m = row["heads"]["next_token"]
        assert np.isfinite(m["perplexity"])
        assert m["baseline_ppl_increase"] == pytest.approx((m["perplexity"] / base - 1) * 100)


def test_lm_head_metrics_and_gate():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 16, (4, 5))
    uniform = np.zeros((4, 5, 16), np.float32)
    m = head_metrics(uniform, uniform, labels, "lm")
    assert m["perplexity"] == pytest.approx(16.0) and m["bits_per_token"] == pytest.approx(4.0)
    logits = rng.normal(size=(4, 5, 16)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    assert nll(probs, labels) == pytest.approx(nll(logits, labels), rel=1e-5)
    worse = head_metrics(logits, uniform, labels, "lm")
    expected = (worse["perplexity"] / worse["reference_perplexity"] - 1) * 100
    assert worse["ppl_increase"] == pytest.approx(expected)
    why = head_gate(worse, max_drift=1.0, max_error=0.05, max_ppl_increase=1.0)
    if worse["ppl_increase"] > 1.0:
        assert "over max_ppl_increase 1%" in why
    assert head_gate(m, 1.0, 0.05, max_ppl_increase=0.0) is None  # itself: +0%


def test_a_time_by_vocab_output_with_token_labels_is_a_language_model_head():
    tokens = np.random.default_rng(0).integers(0, 50, (8, 12))
    assert infer_task(None, None, tokens, (12, 50)) == "lm"
    assert infer_task(None, None, tokens.astype(np.float32), (12, 50)) == "regress"
    assert infer_task(None, None, tokens, (11, 50)) == "regress"  # lengths differ
    assert infer_task(10, "softmax", np.arange(8) % 10, (10,)) == "classify"


@pytest.mark.slow
def test_a_users_language_model_with_token_id_data(tmp_path, capsys):
    """A user's own causal LM (built here with compress's layers, saved by tf_keras) and an
    .npz of token ids: its head is inferred as a language model and gated by perplexity."""
    from compress.keras.models import lm

    model = lm.build(context=16, d_model=16, blocks=1, heads=2)
    model.save(tmp_path / "mylm.keras")
    rng = np.random.default_rng(0)
    text = np.tile(np.arange(40), 50)  # a repeating sequence a model learns quickly
    starts = rng.integers(0, len(text) - 17, 300)
    windows = np.stack([text[s : s + 17] for s in starts])
    np.savez(tmp_path / "tokens.npz", x=windows[:, :-1].astype(np.int32), y=windows[:, 1:])
    code, report = _run([str(tmp_path / "mylm.keras"), "--data", str(tmp_path / "tokens.npz"),
                         "--epochs", "3", "--quantize", "dynamic", "--out", str(tmp_path / "o"),
                         "--set", "verify.timing_budget_s=0.02",
                         "--set", "verify.generate_tokens=4"])  # fmt: skip
    assert code == 0, report["verification"]["failures"]
    assert report["verification"]["tasks"] == {"next_token": "lm"}
    rows = _rows(report)
    assert rows["model_dynamic.tflite"]["heads"]["next_token"]["ppl_increase"] <= 1.0
    assert rows["model_dynamic.tflite"]["generation"]["tokens_per_s"] > 0


@pytest.mark.slow
def test_a_kerashub_gpt2_causal_lm_runs_int8_and_its_artifacts_agree_token_by_token(
    tmp_path, capsys
):
    """A Keras 3 KerasHub GPT-2 causal LM (a small GPT2Backbone built from a config, inputs
    token_ids and padding_mask), saved by Keras 3: its own SavedModel export is the reference,
    and each artifact agrees with it token by token. Runs where the `hub` extra is installed."""
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=256, num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64,
        max_sequence_length=32,
    )  # fmt: skip
    model = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    model.save(tmp_path / "gpt2.keras")
    rng = np.random.default_rng(0)
    text = np.frombuffer(Path(np.__file__).read_bytes(), dtype=np.uint8)
    windows = np.stack([text[s : s + 33] for s in rng.integers(0, len(text) - 33, 300)])
    mask = np.ones((300, 32), np.int32)
    np.savez(tmp_path / "tokens.npz", x_token_ids=windows[:, :-1].astype(np.int32),
             x_padding_mask=mask, y=windows[:, 1:].astype(np.int64))  # fmt: skip
    code, report = _run([str(tmp_path / "gpt2.keras"), "--data", str(tmp_path / "tokens.npz"),
                         "--quantize", "int8", "--out", str(tmp_path / "o"),
                         "--set", "verify.timing_budget_s=0.02",
                         "--set", "verify.generate_tokens=8"])  # fmt: skip
    assert code == 0, report["verification"]["failures"]
    assert list(report["verification"]["tasks"].values()) == ["lm"]  # inferred: (time, vocab)
    rows = _rows(report)
    assert {"model_int8.tflite", "model_int8.onnx"} <= set(rows)
    for row in rows.values():
        (m,) = row["heads"].values()
        assert m["agreement"] >= 95.0 and m["ppl_increase"] <= 1.0, row["name"]
        assert row["generation"]["agreement_with_keras"] >= 75.0, row["name"]


@pytest.mark.slow
def test_lm_recipe_search_ranks_candidates_by_sample_perplexity(lm_run):
    report = lm_run["report"]
    budget = report["verification"]["max_ppl_increase"]
    for name, row in _rows(report).items():
        cands = row["recipe"].get("candidates") or []
        if not cands:
            continue
        measured = [c for c in cands if "p50_ms_b1" in c]
        assert all(np.isfinite(c["ppl_increase"]) for c in measured), name
        chosen = next(c for c in cands if c["chosen"])
        within = [c for c in measured if c["ppl_increase"] <= budget]
        # the chosen recipe is within the budget whenever any candidate is
        assert (
            chosen in within
            if within
            else chosen["ppl_increase"] == min(c["ppl_increase"] for c in measured)
        ), (name, cands)
        assert row["recipe"]["selection"]["max_ppl_increase"] == budget


def _with_perplexity(report: dict, name: str, factor: float) -> dict:
    changed = json.loads(json.dumps(report))
    for row in changed["verification"]["artifacts"]:
        if row["name"] == name:
            row["heads"]["next_token"]["perplexity"] *= factor
    return changed


@pytest.mark.slow
def test_diff_compares_perplexity_and_generation_and_gates_a_rise(lm_run, tmp_path, capsys):
    base = lm_run["dir"] / "report.json"
    assert main(["diff", str(base), str(base), "--max-ppl-increase", "0", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    rows = {r["row"]: r for r in result["rows"]}
    shipped = rows["litert shipped"]
    assert shipped["heads"]["next_token"]["perplexity"]["pct"] == 0.0
    assert shipped["generation"]["tokens_per_s"]["base"] > 0
    assert shipped["generation"]["ms_per_token"]["pct"] == 0.0
    worse = tmp_path / "report.json"
    worse.write_text(json.dumps(_with_perplexity(json.loads(base.read_text()),
                                                 "model_int8.tflite", 1.02)))  # fmt: skip
    code = main(["diff", str(base), str(worse), "--max-ppl-increase", "1"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "litert shipped: head next_token perplexity" in err and "(+2.00%)" in err
    assert "exceeds max_ppl_increase 1%" in err and "next_token ppl +2.00%" in out
    assert main(["diff", str(base), str(worse), "--max-ppl-increase", "3"]) == 0


@pytest.mark.slow
def test_bench_feeds_token_ids_and_times_generation_beside_fp32(lm_run, tmp_path, capsys):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(lm_run["dir"], run_dir)
    assert main(["bench", str(run_dir), "--threads", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["generation"]["head"] == "next_token"
    assert "recomputes the whole context" in result["generation"]["method"]
    for e in result["artifacts"]:
        g = e["generation"]
        assert g["tokens_per_s"] == pytest.approx(1000.0 / g["ms_per_token"])
        assert g["speedup"] == 1.0 if e["precision"] == "fp32" else g["speedup"] > 0
        assert e["b1"]["warm"]["p50_ms"] > 0
    assert main(["bench", str(run_dir), "--threads", "1"]) == 0
    assert "gen tok/s" in capsys.readouterr().out


@pytest.mark.slow
def test_report_html_shows_perplexity_per_artifact_and_a_perplexity_size_chart(lm_run):
    page = (lm_run["dir"] / "report.html").read_text()
    rows = _rows(lm_run["report"])
    assert "next_token: ppl (+%)" in page and "gen tok/s" in page
    assert "perplexity against size per recipe" in page and "<svg" in page
    assert "max perplexity increase 1%" in page
    for row in rows.values():
        assert f"{row['heads']['next_token']['perplexity']:.4f}" in page
    unigram = lm_run["report"]["stages"]["build"]["unigram_perplexity"]
    assert f"unigram baseline perplexity {unigram:.2f}" in page
