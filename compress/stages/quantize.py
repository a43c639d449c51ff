"""quantize: quantized twins of the fp32 exports, one per backend that has the mode's recipes.

Each backend builds its recipes (TFLite quantizes during conversion from the Keras model;
onnxruntime quantizes the fp32 ONNX graph). With `select` on, a mode's candidate recipes are
measured against each other (see backends/select.py; the drift fallback: backends/fallback.py; QAT:
keras/qat.py) and the winner kept. Calibration uses
samples of the training split only.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from compress.backends import Sources, exported
from compress.backends.fallback import CheckSet
from compress.backends.select import quantized_artifact
from compress.core.errors import one_line
from compress.core.state import Artifact, RunState, Skipped
from compress.keras.qat import quantization_aware_model
from compress.measure.gates import DEFAULT_MAX_DRIFT, DEFAULT_MAX_ERROR, DEFAULT_MAX_PPL_INCREASE
from compress.measure.timing import NO_LOCK, TIMING_BUDGET_S
from compress.stages.base import Stage, StageParams, worker_for


class QuantizeParams(StageParams):
    mode: Literal["int8", "auto", "dynamic", "float16", "int4", "qat", "none"] = Field(
        "int8", description="int8: the best recipe storing weights in int8 (full-integer, "
        "dynamic-range or mixed), chosen per runtime; auto: the best of every recipe (float16 "
        "and int4 too); dynamic, float16, int4 (onnxruntime weight-only; for a Keras 3 model "
        "measured against Keras 3's own int4), qat: that recipe; "
        "none: no quantized artifact"
    )  # fmt: skip
    select: bool = Field(
        True, description="int8/auto: measure the candidate recipes per runtime and keep the "
        "best for the objective among those agreeing with fp32 on >= min_agreement % of "
        "training-split samples (off: the mode's default recipe)"
    )  # fmt: skip
    objective: Literal["latency", "size"] = Field(
        "latency", description="latency: the fastest candidate (ties within 5% to the smaller); "
        "size: the smallest that is not slower than fp32"
    )  # fmt: skip
    min_agreement: float = Field(99.0, ge=0.0, le=100.0)
    fallback: bool = Field(
        True, description="when an artifact's accuracy drift, estimated on held-back "
        "training-split samples, exceeds max_drift: keep its most sensitive layers float, a "
        "group at a time, until it fits"
    )  # fmt: skip
    max_drift: float = Field(
        DEFAULT_MAX_DRIFT, ge=0.0,
        description="the fallback's drift budget, points (a pipeline gives it verify.max_drift)",
        json_schema_extra={"from": "verify.max_drift"},
    )  # fmt: skip
    max_error: float = Field(
        DEFAULT_MAX_ERROR, ge=0.0,
        description="the fallback's budget for numeric heads, relative error (a pipeline gives "
        "it verify.max_error)",
        json_schema_extra={"from": "verify.max_error"},
    )  # fmt: skip
    max_ppl_increase: float = Field(
        DEFAULT_MAX_PPL_INCREASE, ge=0.0,
        description="the fallback's budget for language model heads, percent of perplexity "
        "(a pipeline gives it verify.max_ppl_increase)",
        json_schema_extra={"from": "verify.max_ppl_increase"},
    )  # fmt: skip
    threads: int = Field(1, ge=1, description="threads when timing candidates (as verify's)")
    timing_budget_s: float = Field(
        TIMING_BUDGET_S, gt=0.0,
        description="the recipe search times its candidates side by side in rounds of a "
        "quarter of this many seconds each (3 to 8 rounds: until the winner holds three in a "
        "row); a pipeline gives it verify.timing_budget_s",
        json_schema_extra={"from": "verify.timing_budget_s"},
    )  # fmt: skip
    qat_epochs: int = Field(
        1, ge=1, le=1000, description="QAT fine-tuning epochs (untrained QAT exports garbage)"
    )
    qat_learning_rate: float = Field(1e-4, gt=0.0, le=1.0)
    seed: int = Field(0, ge=0)


class Quantize(Stage):
    name = "quantize"
    Params = QuantizeParams
    # The budget changes the artifacts only when the fallback engages: a rerun that changes
    # only a gate reuses them while the drift estimated on them stays within the new budget.
    cache_ignores = ("max_drift", "max_error", "max_ppl_increase")

    def reuses(self, info: dict[str, Any]) -> bool:
        budget = info.get("budget")
        if budget is None:
            return False
        p = self.params
        searched = budget.get("search_ppl") or {}
        if (
            any(e["excluded"] for e in searched.values())
            and budget["max_ppl_increase"] != p.max_ppl_increase
        ):  # the recipe search ruled candidates out by that budget
            return False
        if any(e["chosen"] > p.max_ppl_increase for e in searched.values()):
            return False  # the chosen recipe's sample perplexity is over the new budget
        if budget["engaged"]:  # the artifacts were corrected for that budget exactly
            made_for = (budget["max_drift"], budget["max_error"],
                        budget.get("max_ppl_increase", DEFAULT_MAX_PPL_INCREASE))  # fmt: skip
            return made_for == (p.max_drift, p.max_error, p.max_ppl_increase)
        return all(
            e["drift"] <= p.max_drift
            and e["relative_error"] <= p.max_error
            and e.get("ppl_increase", 0.0) <= p.max_ppl_increase
            for e in budget["estimates"].values()
        )

    def changes_layers(self) -> bool:
        return self.params.mode == "qat"

    def run(self, state: RunState) -> RunState:
        p = self.params
        if p.mode == "none":
            return state
        model, data = self.model(state), self.data(state)
        qat_model, qat_float = None, []
        if p.mode == "qat":
            prune = state.info.get("prune")
            qat_model, qat_float = quantization_aware_model(
                model, data, pruned_layers=list(prune["layers"]) if prune else None,
                clustered="cluster" in state.info, epochs=p.qat_epochs,
                learning_rate=p.qat_learning_rate, seed=p.seed,
            )  # fmt: skip
        opset = state.info.get("export_onnx", {}).get("opset")
        made: list[Artifact] = []
        skipped: list[Skipped] = []
        # the fallback's drift estimate (QAT is judged by verify's drift gate alone)
        check = None
        if p.fallback and p.mode != "qat":
            check = CheckSet(model, data, p.max_drift / max(p.max_error, 1e-9),
                             p.max_drift / max(p.max_ppl_increase, 1e-9))  # fmt: skip
        worker = worker_for(state)
        for backend in exported():
            fp32 = state.artifact(backend.runtime, "fp32")
            src = Sources(model, data.x_calib, fp32, qat_model, tuple(qat_float), opset,
                          tasks={h: data.task(h) for h in data.heads}, worker=worker)  # fmt: skip
            default = backend.default(p.mode, src)
            if fp32 is not None and default is None and p.mode in backend.no_recipe:
                reason = backend.no_recipe[p.mode]  # said in the report, not faked
                skipped.append(Skipped(backend.file_name(p.mode), backend.runtime, reason))
                continue
            if fp32 is None or default is None:
                continue  # this format was not exported, or has no recipe for the mode
            name = backend.file_name(p.mode)
            try:
                step = _stepper(state, f"quantize: {backend.runtime} candidates")
                lock = state.timing_lock or NO_LOCK
                art = quantized_artifact(backend, default, src, name, state.workdir, p, check,
                                         step, lock=lock)  # fmt: skip
                made.append(art)
            except Exception as exc:  # the converter or quantizer cannot, or crashed
                reason = f"{backend.runtime} {p.mode} recipe failed: {one_line(exc)}"
                skipped.append(Skipped(name, backend.runtime, reason))
        info = {
            "mode": p.mode,
            "recipes": {a.name: a.recipe.id for a in made},
            # what reuses() judges a cached result by: the fallback's budget, whether it
            # changed any artifact, and the drift it estimated on each before any change
            "budget": {
                "max_drift": p.max_drift,
                "max_error": p.max_error,
                "max_ppl_increase": p.max_ppl_increase,
                "engaged": any(a.recipe.fallback for a in made),
                "estimates": dict(check.estimates) if check is not None else {},
                "search_ppl": _search_ppl(made, p.max_ppl_increase),
            },
        }
        return state.add(tuple(made), tuple(skipped)).with_info("quantize", info)


def _search_ppl(made: list[Artifact], budget: float) -> dict[str, dict[str, Any]]:
    """Per artifact whose recipe search measured a language model's sample perplexity: the
    chosen recipe's increase (percent) and whether the budget ruled any candidate out (the
    choice then depends on the budget)."""
    out = {}
    for a in made:
        cands = [c for c in a.recipe.candidates if "ppl_increase" in c]
        chosen = next((c for c in cands if c.get("chosen")), None)
        if chosen is not None and "max_ppl_increase" in a.recipe.selection:
            out[a.name] = {"chosen": chosen["ppl_increase"],
                           "excluded": any(c["ppl_increase"] > budget for c in cands)}  # fmt: skip
    return out


def _stepper(state: RunState, task: str) -> Any:
    """A (done, total) callback reporting `task`'s steps to the run's progress, or None."""
    if state.progress is None:
        return None
    return lambda done, total: state.progress.step(task, done, total)
