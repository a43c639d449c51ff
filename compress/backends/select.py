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
from compress.core.fileio import artifact_bytes
from compress.core.state import Artifact
from compress.measure.gates import SMALLER, TIMING_NOISE
from compress.measure.generation import token_input
from compress.measure.heads import agreement_score, match_heads, nll
from compress.measure.timing import (
    NO_LOCK,
    ROUND_SHARE,
    TIMING_BUDGET_S,
    Timing,
    TimingLock,
    measure_until_stable,
)

SELECTION_SAMPLES = 200
TIE = TIMING_NOISE  # latencies within 5% are a tie
# Under half the fp32 speed, a smaller file loses to one at fp32's speed under --objective latency
# (MobileNetV3Small's only smaller ONNX int8 file ran at 0.19x); between half and full speed the
# smaller file still wins and is reported as slower.
FAR_SLOWER = 0.5
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
    """The winning entry among measured candidates (see `decide`)."""
    return decide(entries, min_agreement, objective, fp32_size, max_ppl_increase)[0]


def below_floor(
    entries: list[dict[str, Any]], min_agreement: float, max_ppl_increase: float | None = None
) -> dict[str, str]:
    """Candidate id -> why it is below the search's accuracy floor, for the measured `entries`
    that are: the perplexity budget when `max_ppl_increase` is given and every entry has a
    perplexity increase (a language model), else the agreement floor."""
    usable = [e for e in entries if "p50_ms_b1" in e]
    by_ppl = max_ppl_increase is not None and all("ppl_increase" in e for e in usable)
    out: dict[str, str] = {}
    for e in usable:
        if by_ppl and e["ppl_increase"] > max_ppl_increase:
            out[e["id"]] = (f"perplexity {e['ppl_increase']:+.2f}% over the "
                            f"{max_ppl_increase:g}% budget")  # fmt: skip
        elif not by_ppl and e["agreement"] < min_agreement:
            out[e["id"]] = f"agreement {e['agreement']:.1f}% < {min_agreement:g}% floor"
    return out


def decide(
    entries: list[dict[str, Any]],
    min_agreement: float,
    objective: Objective = "latency",
    fp32_size: int | None = None,
    max_ppl_increase: float | None = None,
) -> tuple[dict[str, Any], dict[str, str], bool]:
    """The winning entry, why each other measured candidate lost, and whether the winner pays
    (smaller than fp32 by SMALLER and not slower beyond TIE).

    Only candidates that agree with fp32 on >= `min_agreement` % (a language model's, when
    `max_ppl_increase` is given: whose sample perplexity rises by at most that many percent, the
    number verify gates it by) compete (when none does, the best-agreeing wins), and of those
    only the ones smaller than the fp32 file by SMALLER (`fp32_size`), when any is: a quantized
    artifact exists to be smaller.
    - latency: the fastest; candidates within TIE of it are a tie, won by the smaller, then the
      more accurate. When every smaller one runs at under FAR_SLOWER of the fp32 speed and
      another that competes is not slower than fp32, the fastest of all that compete wins
      instead (a 5x slower file is never the latency answer); a winner that is not smaller or
      is slower does not pay: the fp32 file is the one to ship.
    - size: the smallest that is not slower than fp32 (within TIE); when every one is slower,
      the smallest. Sizes within SMALLER of the smallest are a tie, won by the faster.
    """
    usable = [e for e in entries if "p50_ms_b1" in e]
    if not usable:
        raise RuntimeError("; ".join(f"{e['id']}: {e.get('error')}" for e in entries))
    by_ppl = max_ppl_increase is not None and all("ppl_increase" in e for e in usable)
    lost = below_floor(usable, min_agreement, max_ppl_increase)
    good = [e for e in usable if e["id"] not in lost]
    if not good:
        if by_ppl:
            winner = min(usable, key=lambda e: (e["ppl_increase"], e["p50_ms_b1"]))
        else:
            winner = max(usable, key=lambda e: (e["agreement"], -e["p50_ms_b1"]))
        return winner, _without(lost, winner), False

    def smaller(e: dict[str, Any]) -> bool:
        return fp32_size is None or e["size_bytes"] <= fp32_size * SMALLER

    def faster(e: dict[str, Any]) -> bool:  # not slower than fp32 beyond the noise
        return e["speedup_b1"] * TIE >= 1.0

    pool = [e for e in good if smaller(e)] or good
    for e in good:
        if e not in pool:
            lost[e["id"]] = (f"not smaller than fp32 by {(1 - SMALLER) * 100:.0f}% "
                             f"({e['size_bytes'] / fp32_size:.3f}x its size)")  # fmt: skip
    if objective == "size":
        not_slower = [e for e in pool if faster(e)] or pool
        for e in pool:
            if e not in not_slower:
                lost[e["id"]] = f"slower than fp32 ({e['speedup_b1']:.2f}x)"
        least = min(e["size_bytes"] for e in not_slower)
        tied = [e for e in not_slower if e["size_bytes"] * SMALLER <= least]
        winner = min(tied, key=lambda e: (e["p50_ms_b1"], e["size_bytes"], -e["agreement"]))
        for e in not_slower:
            if e in tied and e is not winner:
                lost[e["id"]] = (f"as small as the winner within {(1 - SMALLER) * 100:.0f}% but "
                                 f"slower ({e['speedup_b1']:.2f}x vs "
                                 f"{winner['speedup_b1']:.2f}x)")  # fmt: skip
            elif e is not winner:
                lost[e["id"]] = f"larger ({e['size_bytes']:,} B vs {winner['size_bytes']:,} B)"
        return winner, lost, smaller(winner) and faster(winner)
    if max(e["speedup_b1"] for e in pool) < FAR_SLOWER and any(faster(e) for e in good):
        pool = good  # every smaller file is far slower than fp32: speed decides among all
    fastest = min(e["p50_ms_b1"] for e in pool)
    tied = [e for e in pool if e["p50_ms_b1"] <= fastest * TIE]
    winner = min(tied, key=lambda e: (e["size_bytes"], -e["agreement"], e["p50_ms_b1"]))
    for e in pool:
        if e is winner:
            continue
        if e in tied:
            lost[e["id"]] = (f"as fast as the winner within {(TIE - 1) * 100:.0f}% but "
                             f"{e['size_bytes']:,} B vs {winner['size_bytes']:,} B")  # fmt: skip
        else:
            lost[e["id"]] = f"slower ({e['speedup_b1']:.2f}x vs {winner['speedup_b1']:.2f}x)"
    return winner, _without(lost, winner), smaller(winner) and faster(winner)


def annotate(
    entries: list[dict[str, Any]],
    min_agreement: float,
    objective: Objective = "latency",
    fp32_size: int | None = None,
    max_ppl_increase: float | None = None,
) -> tuple[dict[str, Any], bool]:
    """`decide`, written on the entries: `chosen`, each loser's `lost` reason, `eligible`
    (measured and within the floor), and on a winner that is itself below the floor (no
    candidate reached it: the closest won) its `below_floor` reason. The winner and whether
    it pays."""
    winner, lost, pays = decide(entries, min_agreement, objective, fp32_size, max_ppl_increase)
    under = below_floor(entries, min_agreement, max_ppl_increase).get(winner["id"])
    for entry in entries:
        entry["chosen"] = entry is winner
        if entry["id"] in lost:
            entry["lost"] = lost[entry["id"]]
        elif "error" in entry:
            entry["lost"] = f"failed: {entry['error']}"
        if entry is winner and under:
            entry["below_floor"] = under
        entry["eligible"] = "p50_ms_b1" in entry and not _below_floor(entry, lost)
    return winner, pays


def _below_floor(entry: dict[str, Any], lost: dict[str, str]) -> bool:
    """Whether the candidate lost on accuracy (the agreement floor, the perplexity budget)."""
    why = lost.get(entry["id"], "")
    return why.startswith(("agreement", "perplexity"))


def _without(lost: dict[str, str], winner: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in lost.items() if k != winner["id"]}


@dataclass
class Selection:
    spec: RecipeSpec  # the winner
    blob: bytes  # its file
    decided: dict[str, Any]  # knobs its build decided for this model
    candidates: tuple[dict[str, Any], ...]  # what every candidate measured
    rounds: list[str]  # the winner after each timing round (the search stops when it is stable)
    pays: bool = True  # smaller than fp32 (by SMALLER) and not slower (beyond TIE)


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
    timing_budget_s: float = TIMING_BUDGET_S,
) -> Selection:
    """Build each candidate recipe, measure them side by side against the fp32 artifact
    (`src.fp32`) at `threads` threads until the choice is stable (rounds of ROUND_SHARE of
    `timing_budget_s` seconds per candidate), and return the winner."""
    if src.fp32 is None or src.x_calib is None:
        raise ValueError("a recipe search needs the fp32 artifact and calibration samples")
    options = options or {}
    sample = rows(src.x_calib, 0, SELECTION_SAMPLES)
    reference = backend.open_runner(src.fp32.path, threads, **options)
    ref_out = reference.predict(sample)
    fp32_size = artifact_bytes(src.fp32.path)
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
                if decided[spec.id]:  # what its build decided for this model (op types, batch)
                    entry["decided"] = decided[spec.id]
                runner = backend.open_runner(path, threads, **options)
                out = runner.predict(sample)
                entry["agreement"] = agreement(ref_out, out, src.tasks)
                ppl = sample_ppl_increase(ref_out, out, src.tasks, sample)
                if ppl is not None:
                    entry["ppl_increase"] = ppl
                entry["size_bytes"] = artifact_bytes(path)
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

        def leader(timings: dict[str, Timing]) -> str:
            record(timings)
            return choose(entries, min_agreement, objective, fp32_size, max_ppl_increase)["id"]

        timings, rounds = measure_until_stable(
            calls, leader, lock=lock, round_budget_s=timing_budget_s * ROUND_SHARE
        )
        record(timings)
        winner, pays = annotate(entries, min_agreement, objective, fp32_size, max_ppl_increase)
        blob = paths[winner["id"]].read_bytes()
    spec = next(s for s in specs if s.id == winner["id"])
    return Selection(spec, blob, decided[spec.id], tuple(entries), rounds, pays)


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
    objective, min_agreement, max_drift, threads, timing_budget_s; a stage's QuantizeParams)."""
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
                timing_budget_s=p.timing_budget_s,
            )  # fmt: skip
            spec, decided = chosen.spec, chosen.decided
            path.write_bytes(chosen.blob)
            how["candidates"] = chosen.candidates
            how["selection"] = {"objective": p.objective, "min_agreement": p.min_agreement,
                                "rounds": chosen.rounds, "pays": chosen.pays}  # fmt: skip
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
