"""Choose a recipe per runtime by measuring the candidates on the user's model.

What wins depends on the layers and the CPU (onnxruntime's int8 conv on 3 input channels is
slower than its fp32 conv, so for the CNN leaving the conv in fp32 wins), so nothing is assumed:
each candidate is built, its batch-1 latency measured side by side with the others and the fp32
artifact, and its top-1 agreement with the fp32 artifact checked on training-split samples (the
held-out split stays untouched). The fastest candidate that agrees on at least `min_agreement`
percent of them wins; every candidate's numbers go into the report with the chosen recipe.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compress.arrays import rows
from compress.backends.base import Backend, RecipeSpec, Sources
from compress.errors import one_line
from compress.timing import measure_interleaved

SELECTION_SAMPLES = 200
TIE = 1.05  # a candidate must be 5% faster than the default recipe to replace it


def agreement(reference: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> float:
    """Lowest top-1 agreement over the heads, percent (heads matched by position)."""
    scores = [
        float((r.argmax(-1) == o.argmax(-1)).mean() * 100)
        for r, o in zip(reference.values(), outputs.values(), strict=True)
    ]
    return min(scores)


def choose(entries: list[dict[str, Any]], min_agreement: float) -> dict[str, Any]:
    """The winning entry among measured candidates (default first): the fastest that agrees on
    >= min_agreement %. Timing noise is a few percent, so the default keeps its place unless
    another is more than TIE faster, or when nothing is faster than fp32 at all (then the
    default int8 is kept for its size). When none agrees enough, the best-agreeing wins."""
    usable = [e for e in entries if "p50_ms_b1" in e]
    if not usable:
        raise RuntimeError("; ".join(f"{e['id']}: {e.get('error')}" for e in entries))
    good = [e for e in usable if e["agreement"] >= min_agreement]
    if not good:
        return max(usable, key=lambda e: (e["agreement"], -e["p50_ms_b1"]))
    winner = min(good, key=lambda e: e["p50_ms_b1"])
    default = entries[0] if any(e is entries[0] for e in good) else None
    if default is not None and (
        default["p50_ms_b1"] <= winner["p50_ms_b1"] * TIE or winner["speedup_b1"] < TIE
    ):
        return default
    return winner


@dataclass
class Selection:
    spec: RecipeSpec  # the winner
    blob: bytes  # its file
    decided: dict[str, Any]  # knobs its build decided for this model
    candidates: tuple[dict[str, Any], ...]  # what every candidate measured


def search(
    backend: Backend,
    specs: list[RecipeSpec],
    src: Sources,
    *,
    threads: int,
    min_agreement: float,
    options: dict[str, bool] | None = None,
) -> Selection:
    """Build each candidate recipe, measure them side by side against the fp32 artifact
    (`src.fp32`) at `threads` threads, and return the winner."""
    if src.fp32 is None or src.x_calib is None:
        raise ValueError("a recipe search needs the fp32 artifact and calibration samples")
    options = options or {}
    sample = rows(src.x_calib, 0, SELECTION_SAMPLES)
    reference = backend.open_runner(src.fp32.path, threads, **options)
    ref_out = reference.predict(sample)
    entries: list[dict[str, Any]] = []
    runners, paths, decided = {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="compress-recipes-") as tmp:
        for spec in specs:
            path = Path(tmp) / f"{spec.id}{backend.suffix}"
            entry: dict[str, Any] = {"id": spec.id}
            try:
                decided[spec.id] = backend.build(spec, src, path) or {}
                runner = backend.open_runner(path, threads, **options)
                entry["agreement"] = agreement(ref_out, runner.predict(sample))
                entry["size_bytes"] = path.stat().st_size
                runners[spec.id], paths[spec.id] = runner, path
            except Exception as exc:  # a recipe this model or runtime cannot take
                entry["error"] = one_line(exc)
            entries.append(entry)
        calls = {n: r.timed_call(sample, 1) for n, r in runners.items()}
        calls["fp32"] = reference.timed_call(sample, 1)
        timings = measure_interleaved({n: c for n, c in calls.items() if c})
        for entry in entries:
            t = timings.get(entry["id"])
            if t and "fp32" in timings:
                entry["p50_ms_b1"] = t.p50_ms
                entry["speedup_b1"] = timings["fp32"].p50_ms / t.p50_ms
        winner = choose(entries, min_agreement)
        for entry in entries:
            entry["chosen"] = entry is winner
        blob = paths[winner["id"]].read_bytes()
    spec = next(s for s in specs if s.id == winner["id"])
    return Selection(spec, blob, decided[spec.id], tuple(entries))
