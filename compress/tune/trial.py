"""One trial of a tune, wherever it runs: the target's pipeline with a point's overrides, and
what it measured per runtime, read from the run's report (the artifact the runtime ships: its
quantized file, or the fp32 one when nothing was quantized)."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compress.measure.gates import (
    DEFAULT_MAX_ERROR,
    DEFAULT_MAX_PPL_INCREASE,
    row_checks,
    shipped_row,
)
from compress.tune.space import DEFAULT_SPACE, overrides, runtimes, with_stages


@dataclass(frozen=True)
class TuneSetup:
    """What a tune searches and how it judges a trial. `base` is the target's pipeline config
    (compress.runs.config.PipelineConfig) the trials override."""

    base: Any
    target: str
    objectives: tuple[str, ...] = ("size",)
    max_drift: float = 1.0
    space: dict[str, list[Any]] = field(default_factory=lambda: dict(DEFAULT_SPACE))
    out: Path = Path("artifacts")

    def __post_init__(self) -> None:
        from compress.core.errors import UsageError

        if not self.max_drift >= 0:  # NaN fails too
            raise UsageError(
                f"max_drift must be a number >= 0. Got {self.max_drift} instead.", key="max_drift"
            )

    @property
    def tune_id(self) -> str:
        """Names the study from what defines it (not the trial count or timeout), so the same
        command continues the same study."""
        blob = json.dumps(
            {
                "config": self.base.model_dump(mode="json"),
                "objectives": self.objectives,
                "max_drift": self.max_drift,
                "space": self.space,
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    @property
    def directory(self) -> Path:
        return Path(self.out) / "tune" / Path(self.target).stem / self.tune_id


def trial_metrics(report: dict[str, Any], max_drift: float) -> dict[str, dict[str, Any]]:
    """Per runtime, what the trial's run measured on the artifact it ships (gates.shipped_row):
    sizes, batch-1 latency, worst drift over the heads (points, against the float model before
    compression), a language model's worst perplexity increase (percent) and whether it meets
    the budget (every gate of gates.row_checks, drift read against that baseline)."""
    out: dict[str, dict[str, Any]] = {}
    rows = report["verification"]["artifacts"]
    max_error = report["verification"].get("max_error", DEFAULT_MAX_ERROR)
    max_ppl = report["verification"].get("max_ppl_increase", DEFAULT_MAX_PPL_INCREASE)
    for runtime in runtimes():
        chosen = shipped_row(rows, runtime)
        if chosen is None:
            out[runtime] = {"artifact": None, "feasible": False}
            continue
        drifts = [m["drift"] for m in chosen["heads"].values() if "drift" in m]
        baseline = [m["baseline_drift"] for m in chosen["heads"].values() if "baseline_drift" in m]
        checks = row_checks(chosen, max_drift, max_error, drift="baseline_drift",
                            max_ppl_increase=max_ppl, ppl="baseline_ppl_increase")  # fmt: skip
        latency = (chosen.get("latency_ms") or {}).get("b1") or {}
        # against the float model before prune/cluster, as drift is
        ppl = [m.get("baseline_ppl_increase", m["ppl_increase"])
               for m in chosen["heads"].values() if m.get("task") == "lm"]  # fmt: skip
        out[runtime] = {
            "artifact": chosen["name"],
            "recipe": chosen["recipe"]["id"],
            "size_bytes": chosen["size_bytes"],
            "size_gzip_bytes": chosen["size_gzip_bytes"],
            "latency_ms_b1": latency.get("p50_ms"),
            "drift": max(baseline or drifts or [0.0]),
            **({"ppl_increase": max(ppl), "max_ppl_increase": max_ppl} if ppl else {}),
            "feasible": all(why is None for _, why in checks),
        }
    return out


INFEASIBLE = 1e18  # the budget excess of a runtime whose artifact is missing


def budget_excess(m: dict[str, Any], max_drift: float) -> float:
    """How far one runtime's artifact (a trial_metrics entry) is past the budget (<= 0: within
    it): the drift past max_drift (a language model: the larger of that and its perplexity
    increase past max_ppl_increase, percent); a positive value when it misses in another way (a
    numeric head's error, a stateful runner), the largest when there is no artifact. Optuna's
    constraint, and what ranks the closest trial when none is within the budget."""
    if not m.get("artifact"):
        return INFEASIBLE
    excess = float(m["drift"] - max_drift)
    if m.get("ppl_increase") is not None:
        excess = max(excess, float(m["ppl_increase"] - m["max_ppl_increase"]))
    return excess if m["feasible"] else max(excess, 1.0)


def run_trial(
    base: Any,
    params: dict[str, Any],
    objectives: tuple[str, ...],
    out: str,
    cache_root: str | None,
    progress: Any = None,
    timing_lock: Any = None,
) -> dict[str, Any]:
    """One trial: the target's pipeline with the point's overrides, run into `out` (every timing
    holding `timing_lock`). Returns the run directory and report."""
    from compress.runs.cache import StageCache
    from compress.runs.pipeline import run

    config = with_stages(base, {**overrides(params, objectives), "out": out})
    cache = StageCache(Path(cache_root)) if cache_root else None
    result = run(config, progress=progress, cache=cache, timing_lock=timing_lock)
    return {"run_dir": str(result.run_dir), "report": result.report}


def execute(job: dict[str, Any], progress: Any = None) -> dict[str, Any]:
    """One trial wherever it runs (the tune's process, a local trial process, a Ray worker):
    the job is plain data (see `job`), the result its small JSON record. The trial holds its
    share of the timing lock while it runs (TimingLock.trial), so its latencies are measured with no
    other trial running, and other trials' timings wait for its builds."""
    from compress.core.errors import CompressError
    from compress.measure import timing
    from compress.runs.config import make

    t0, wall = time.perf_counter(), time.time()
    verbose = job.get("verbose", False)
    number = job["number"]

    def say(line: str) -> None:
        if progress is not None:
            progress(line)
        elif verbose:
            print(f"tune: trial {number}: {line}", file=sys.stderr, flush=True)

    lock = timing.TimingLock(job["lock"])
    with lock.trial():
        try:
            shutil.rmtree(job["trial_dir"], ignore_errors=True)
            result = run_trial(
                make(**job["base"]),
                job["params"],
                tuple(job["objectives"]),
                job["trial_dir"],
                job["cache_root"],
                say,
                lock,
            )
        except CompressError as exc:
            return {
                "error": str(exc),
                "started": round(wall, 3),
                "seconds": round(time.perf_counter() - t0, 2),
            }
    return {
        "runtimes": trial_metrics(result["report"], job["max_drift"]),
        "run_dir": str(Path(result["run_dir"]).resolve()),
        "started": round(wall, 3),  # Unix time
        "seconds": round(time.perf_counter() - t0, 2),
        "failures": result["report"]["verification"]["failures"],
    }


def job(
    setup: TuneSetup, number: int, params: dict[str, Any], cache_root: str | None, verbose: bool
) -> dict[str, Any]:
    """What `execute` needs for one trial, as plain (picklable, JSON) data; every path absolute
    (a Ray worker does not run in this directory)."""
    return {
        "number": number,
        "params": params,
        "base": setup.base.model_dump(mode="json"),
        "objectives": list(setup.objectives),
        "max_drift": setup.max_drift,
        "trial_dir": str((setup.directory / "trials" / f"{number:04d}").resolve()),
        "cache_root": str(Path(cache_root).resolve()) if cache_root else None,
        "lock": lock_path(setup),
        "verbose": verbose,
    }


def lock_path(setup: TuneSetup) -> str:
    """The timing lock of a tune: one file per machine (trials on other machines time on their
    own cores), in its temp directory."""
    import tempfile

    return str(Path(tempfile.gettempdir()) / f"compress-timing-{setup.tune_id}.lock")


def summary(number: int, record: dict[str, Any]) -> str:
    if "runtimes" not in record:
        return f"tune: trial {number} failed: {record.get('error')}"
    return f"tune: trial {number} done: " + ", ".join(
        f"{rt} {m.get('size_gzip_bytes', '-')} B gzip, "
        + (
            f"perplexity {m['ppl_increase']:+.2f}%"
            if "ppl_increase" in m
            else f"drift {m.get('drift', 0):.2f}"
        )  # fmt: skip
        for rt, m in record["runtimes"].items()
        if m.get("artifact")
    )
