"""Choose a recipe per runtime by measuring the candidates on the user's model.

What wins depends on the layers and the CPU (onnxruntime's int8 conv on 3 input channels is
slower than its fp32 conv; TFLite's integer LSTM kernel is ~9x slower than its float one; on one
Xeon dynamic-range int8 beats full int8 for the CNN, on an EPYC the reverse), so nothing is
assumed: each candidate is built, its batch-1 latency measured side by side with the others and
the fp32 artifact in interleaved rounds until the choice stops changing, and its top-1 agreement
with the fp32 artifact checked on training-split samples (the held-out split stays untouched).
The rule (`choose`) is a pure function of those numbers; every candidate's numbers go into the
report with the chosen recipe.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from compress.backends.base import Backend, RecipeSpec, Sources
from compress.backends.fallback import CheckSet, layer_errors
from compress.backends.fallback import fallback as correct
from compress.backends.isolated import build_isolated
from compress.core.arrays import rows
from compress.core.errors import one_line
from compress.core.state import Artifact
from compress.measure.generation import token_input
from compress.measure.heads import agreement_score, match_heads, nll
from compress.measure.timing import NO_LOCK, Timing, TimingLock, measure_until_stable

SELECTION_SAMPLES = 200
TIE = 1.05  # latencies within 5% are a tie (the noise of one measurement on a busy CPU)
Objective = Literal["latency", "size"]


def agreement(
    reference: dict[str, np.ndarray], outputs: dict[str, np.ndarray], tasks: dict[str, str]
) -> float:
    """Lowest agreement over the heads, percent: top-1 agreement for classifiers, 100 x (1 -
    relative error) for numeric heads (heads.agreement_score). Heads are matched by name
    (`tasks` names them; without it, every output is a classifier head)."""
    heads = list(tasks) or list(reference)
    ref = match_heads("fp32 artifact", reference, heads)
    out = match_heads("candidate", outputs, heads)
    return min(agreement_score(ref[h], out[h], tasks.get(h, "classify")) for h in heads)


def sample_ppl_increase(
    reference: dict[str, np.ndarray],
    outputs: dict[str, np.ndarray],
    tasks: dict[str, str],
    sample: Any,
) -> float | None:
    """A language model's perplexity increase over the fp32 artifact on the selection sample,
    percent (the worst of its lm heads): each window's own next tokens are the labels (position
    t predicts token t+1; the last position has none). None when no head is a language model's
    or the sample holds no token ids."""
    heads = [h for h, t in tasks.items() if t == "lm"]
    tokens = np.asarray(sample[token_input(sample)] if isinstance(sample, dict) else sample)
    if not heads or tokens.ndim != 2 or not np.issubdtype(tokens.dtype, np.integer):
        return None
    ref = match_heads("fp32 artifact", reference, heads)
    out = match_heads("candidate", outputs, heads)
    worst = None
    for h in heads:
        if ref[h].ndim != 3 or ref[h].shape[1] != tokens.shape[1]:
            return None
        labels = tokens[:, 1:]
        increase = (np.exp(nll(out[h][:, :-1], labels) - nll(ref[h][:, :-1], labels)) - 1) * 100
        worst = increase if worst is None else max(worst, increase)
    return float(worst) if worst is not None else None


def choose(
    entries: list[dict[str, Any]],
    min_agreement: float,
    objective: Objective = "latency",
    fp32_size: int | None = None,
    max_ppl_increase: float | None = None,
) -> dict[str, Any]:
    """The winning entry among measured candidates.

    Only candidates that agree with fp32 on >= `min_agreement` % (a language model's, when
    `max_ppl_increase` is given: whose sample perplexity rises by at most that many percent, the
    number verify gates it by) compete (when none does, the best-agreeing wins), and of those
    only the ones smaller than the fp32 file (`fp32_size`), when any is: a quantized artifact
    exists to be smaller.
    - latency: the fastest; candidates within TIE of it are a tie, won by the smaller, then the
      more accurate.
    - size: the smallest that is not slower than fp32 (within TIE); when every one is slower,
      the smallest. Equal sizes go to the more accurate, then the faster.
    """
    usable = [e for e in entries if "p50_ms_b1" in e]
    if not usable:
        raise RuntimeError("; ".join(f"{e['id']}: {e.get('error')}" for e in entries))
    by_ppl = max_ppl_increase is not None and all("ppl_increase" in e for e in usable)
    if by_ppl:
        good = [e for e in usable if e["ppl_increase"] <= max_ppl_increase]
    else:
        good = [e for e in usable if e["agreement"] >= min_agreement]
    if not good:
        if by_ppl:
            return min(usable, key=lambda e: (e["ppl_increase"], e["p50_ms_b1"]))
        return max(usable, key=lambda e: (e["agreement"], -e["p50_ms_b1"]))
    smaller = [e for e in good if fp32_size is None or e["size_bytes"] < fp32_size]
    pool = smaller or good
    if objective == "size":
        not_slower = [e for e in pool if e["speedup_b1"] * TIE >= 1.0]
        return min(not_slower or pool,
                   key=lambda e: (e["size_bytes"], -e["agreement"], e["p50_ms_b1"]))  # fmt: skip
    fastest = min(e["p50_ms_b1"] for e in pool)
    tied = [e for e in pool if e["p50_ms_b1"] <= fastest * TIE]
    return min(tied, key=lambda e: (e["size_bytes"], -e["agreement"], e["p50_ms_b1"]))


@dataclass
class Selection:
    spec: RecipeSpec  # the winner
    blob: bytes  # its file
    decided: dict[str, Any]  # knobs its build decided for this model
    candidates: tuple[dict[str, Any], ...]  # what every candidate measured
    rounds: list[str]  # the winner after each timing round (the search stops when it is stable)


def search(
    backend: Backend,
    specs: list[RecipeSpec],
    src: Sources,
    *,
    threads: int,
    min_agreement: float,
    objective: Objective = "latency",
    options: dict[str, bool] | None = None,
    step: Callable[[int, int], None] | None = None,
    lock: TimingLock = NO_LOCK,
    max_ppl_increase: float | None = None,
) -> Selection:
    """Build each candidate recipe, measure them side by side against the fp32 artifact
    (`src.fp32`) at `threads` threads until the choice is stable, and return the winner."""
    if src.fp32 is None or src.x_calib is None:
        raise ValueError("a recipe search needs the fp32 artifact and calibration samples")
    options = options or {}
    sample = rows(src.x_calib, 0, SELECTION_SAMPLES)
    reference = backend.open_runner(src.fp32.path, threads, **options)
    ref_out = reference.predict(sample)
    fp32_size = src.fp32.path.stat().st_size
    entries: list[dict[str, Any]] = []
    runners, paths, decided = {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="compress-recipes-") as tmp:
        for spec in specs:
            path = Path(tmp) / f"{spec.id}{backend.suffix}"
            entry: dict[str, Any] = {"id": spec.id}
            started = time.perf_counter()
            try:
                decided[spec.id] = build_isolated(backend, spec, src, path)
                entry["build_s"] = round(time.perf_counter() - started, 2)
                runner = backend.open_runner(path, threads, **options)
                out = runner.predict(sample)
                entry["agreement"] = agreement(ref_out, out, src.tasks)
                ppl = sample_ppl_increase(ref_out, out, src.tasks, sample)
                if ppl is not None:
                    entry["ppl_increase"] = ppl
                entry["size_bytes"] = path.stat().st_size
                runners[spec.id], paths[spec.id] = runner, path
            except Exception as exc:  # a recipe this model or runtime cannot take
                entry["error"] = one_line(exc)
            entries.append(entry)
            if step is not None:  # progress: candidates built so far
                step(len(entries), len(specs))
        calls = {n: r.timed_call(sample, 1) for n, r in runners.items()}
        calls["fp32"] = reference.timed_call(sample, 1)
        calls = {n: c for n, c in calls.items() if c}

        def record(timings: dict[str, Timing]) -> None:
            for entry in entries:
                t = timings.get(entry["id"])
                if t and "fp32" in timings:
                    entry["p50_ms_b1"] = t.p50_ms
                    entry["speedup_b1"] = timings["fp32"].p50_ms / t.p50_ms

        def decide(timings: dict[str, Timing]) -> str:
            record(timings)
            return choose(entries, min_agreement, objective, fp32_size, max_ppl_increase)["id"]

        timings, rounds = measure_until_stable(calls, decide, lock=lock)
        record(timings)
        winner = choose(entries, min_agreement, objective, fp32_size, max_ppl_increase)
        for entry in entries:
            entry["chosen"] = entry is winner
        blob = paths[winner["id"]].read_bytes()
    spec = next(s for s in specs if s.id == winner["id"])
    return Selection(spec, blob, decided[spec.id], tuple(entries), rounds)


def quantized_artifact(
    backend: Backend,
    default: RecipeSpec,
    src: Sources,
    name: str,
    workdir: Path,
    p: Any,
    check: CheckSet | None,
    step: Callable[[int, int], None] | None = None,
    lock: TimingLock = NO_LOCK,
) -> Artifact:
    """A quantize mode's artifact for one backend: the measured choice among its candidates
    (or the default recipe), corrected by the fallback when `check` (the drift estimate) finds
    it over budget, with its per-layer errors. `p` holds the quantize settings (mode, select,
    objective, min_agreement, max_drift, threads; a stage's QuantizeParams)."""
    candidates = backend.candidates(p.mode, src) if p.select else []
    with tempfile.TemporaryDirectory(prefix="compress-quantize-") as tmp:
        path = Path(tmp) / name
        how: dict[str, Any] = {}
        if len(candidates) > 1:
            chosen = search(
                backend, candidates, src, threads=p.threads,
                # QAT candidates are one fine-tuned model stored two ways: agreement with
                # the float fp32 file does not rank them (verify's drift gate does)
                min_agreement=0.0 if p.mode == "qat" else p.min_agreement,
                objective=p.objective, options=src.fp32.options, step=step, lock=lock,
                max_ppl_increase=None if p.mode == "qat" else p.max_ppl_increase,
            )  # fmt: skip
            spec, decided = chosen.spec, chosen.decided
            path.write_bytes(chosen.blob)
            how["candidates"] = chosen.candidates
            how["selection"] = {"objective": p.objective, "min_agreement": p.min_agreement,
                                "rounds": chosen.rounds}  # fmt: skip
            if any("ppl_increase" in c for c in chosen.candidates) and p.mode != "qat":
                how["selection"]["max_ppl_increase"] = p.max_ppl_increase
        else:
            spec = default
            decided = build_isolated(backend, spec, src, path)
        errors = layer_errors(backend, path, src)
        if check is not None:
            spec, fallback = correct(backend, spec, src, path, errors, check, p.max_drift)
            if fallback:
                how["fallback"] = fallback
            if fallback.get("kept_float"):
                errors = layer_errors(backend, path, src)
        art = backend.make(
            workdir, spec, src, name=name, precision=precision(p.mode, spec), extra=decided,
            write=lambda target: shutil.copyfile(path, target), **how,
        )  # fmt: skip
    return replace(art, facts={**art.facts, "layer_errors": errors})


def precision(mode: str, spec: Any) -> str:
    """The artifact's precision: the mode asked for (`int8` whichever int8 recipe won), or for
    `auto` the winning recipe's own mode (int8, dynamic, float16)."""
    return spec.mode if mode == "auto" else mode
