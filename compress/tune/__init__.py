"""compress tune: the smallest (or fastest) artifact per runtime within an accuracy budget.

Each trial is one `compress run` of the target with a point of the search space (prune
sparsity, cluster count, quantize mode, QAT on/off): it builds once and verifies every runtime's
artifact, so one study yields one Pareto front per runtime. Optuna drives the search
(multi-objective; the drift budget is a constraint, not a stopping rule), seeded with the
known-good corners (plain int8, the deep-compression settings). The study lives in the tune
directory (Optuna's JournalStorage, file backend): an interrupted or crashed tune keeps every
finished trial, and the same command continues it. Trials share the stage cache, so the model
is trained once and each sparsity pruned once.

Latencies enter the front only as measured with nothing else timing on the machine: every
timing phase (verify, the recipe search) holds a lock file shared by the trial processes
(timing.exclusive).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compress.core.errors import UsageError
from compress.measure.gates import DEFAULT_MAX_ERROR, head_gate

RUNTIMES = ("litert", "onnxruntime")
OBJECTIVES = ("size", "latency")
# The search space: None means the stage is left out.
DEFAULT_SPACE: dict[str, list[Any]] = {
    "prune": [None, 0.5, 0.8, 0.9, 0.95, 0.97, 0.98, "2:4"],
    "cluster": [None, 8, 16, 32],
    "quantize": ["int8", "dynamic", "float16"],
    "qat": [False, True],
}
# Known-good corners tried first: plain int8, and the deep-compression pipeline's settings.
SEEDS = (
    {"prune": None, "cluster": None, "quantize": "int8", "qat": False},
    {"prune": 0.97, "cluster": 8, "quantize": "int8", "qat": False},
)
STUDY = "compress-tune"
INFEASIBLE = 1e18  # an objective value for a runtime whose artifact is missing
METRIC = {"size": "size_gzip_bytes", "latency": "latency_ms_b1"}  # objective -> measured field


@dataclass(frozen=True)
class TuneSpec:
    """What a tune searches and how it judges a trial. `base` is the target's pipeline config
    (compress.runs.config.PipelineConfig) the trials override."""

    base: Any
    target: str
    objectives: tuple[str, ...] = ("size",)
    max_drift: float = 1.0
    space: dict[str, list[Any]] = field(default_factory=lambda: dict(DEFAULT_SPACE))
    out: Path = Path("artifacts")

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


def parse_objectives(text: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    bad = [p for p in parts if p not in OBJECTIVES]
    if not parts or bad or len(set(parts)) != len(parts):
        raise UsageError(
            f"objective must be size, latency or size,latency. Got {text!r} instead.",
            key="objective",
        )
    return parts


def load_space(path: str | Path) -> dict[str, list[Any]]:
    """A `[space]` table from a toml file: each key one of DEFAULT_SPACE's, a non-empty list
    ("none" for a stage left out)."""
    import tomllib

    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"space file '{path}' does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"space file '{path}' cannot be read: {exc}") from None
    table = raw.get("space")
    if not isinstance(table, dict) or not table:
        raise UsageError(f"{path}: expected a [space] table with keys {', '.join(DEFAULT_SPACE)}")
    space = dict(DEFAULT_SPACE)
    for key, values in table.items():
        if key not in DEFAULT_SPACE:
            raise UsageError(
                f"{path}: space.{key}: unknown dimension. "
                f"Expected one of {', '.join(DEFAULT_SPACE)}"
            )
        if not isinstance(values, list) or not values:
            raise UsageError(f"{path}: space.{key} must be a non-empty list. Got {values!r}")
        space[key] = [None if v == "none" else v for v in values]
    _check_space(space, str(path))
    return space


def _check_space(space: dict[str, list[Any]], where: str) -> None:
    """Each value as its stage would validate it, before any trial runs."""
    from compress.stages.cluster import ClusterParams
    from compress.stages.prune import PruneParams
    from compress.stages.quantize import QuantizeParams

    for value in space["prune"]:
        if value is not None:
            _valid(PruneParams, {"sparsity": value}, f"{where}: space.prune")
    for value in space["cluster"]:
        if value is not None:
            _valid(ClusterParams, {"clusters": value}, f"{where}: space.cluster")
    for value in space["quantize"]:
        if value in ("qat", "none", "auto"):
            raise UsageError(
                f"{where}: space.quantize: {value!r} is not a recipe mode here "
                "(QAT is the qat dimension). Expected int8, dynamic or float16"
            )
        _valid(QuantizeParams, {"mode": value}, f"{where}: space.quantize")
    for value in space["qat"]:
        if not isinstance(value, bool):
            raise UsageError(f"{where}: space.qat values must be true or false. Got {value!r}")


def _valid(params: Any, values: dict[str, Any], where: str) -> None:
    from pydantic import ValidationError

    try:
        params(**values)
    except ValidationError as exc:
        message = exc.errors()[0]["msg"]
        raise UsageError(f"{where}: {next(iter(values.values()))!r}: {message}") from None


def overrides(params: dict[str, Any], objectives: tuple[str, ...]) -> dict[str, Any]:
    """A trial's point as `compress run` overrides."""
    out: dict[str, Any] = {"quantize.mode": "qat" if params["qat"] else params["quantize"]}
    if params["prune"] is not None:
        out["prune.sparsity"] = params["prune"]
    if params["cluster"] is not None:
        out["cluster.clusters"] = params["cluster"]
    out["quantize.objective"] = "latency" if objectives == ("latency",) else "size"
    return out


def measure(report: dict[str, Any], max_drift: float) -> dict[str, dict[str, Any]]:
    """Per runtime, the trial's compressed artifact (its quantized file, or the fp32 one when
    nothing was quantized): sizes, batch-1 latency, worst drift over the heads (points; a
    numeric head's relative error is held to its own gate), and whether it meets the budget."""
    out: dict[str, dict[str, Any]] = {}
    rows = report["verification"]["artifacts"]
    for runtime in RUNTIMES:
        mine = [r for r in rows if r["runtime"] == runtime]
        chosen = next((r for r in mine if r["precision"] != "fp32"), None) or next(
            (r for r in mine if r["precision"] == "fp32"), None
        )
        if chosen is None:
            out[runtime] = {"artifact": None, "feasible": False}
            continue
        drifts = [m["drift"] for m in chosen["heads"].values() if "drift" in m]
        baseline = [m["baseline_drift"] for m in chosen["heads"].values() if "baseline_drift" in m]
        drift = max(baseline or drifts or [0.0])  # against the float model before compression
        max_error = report["verification"].get("max_error", DEFAULT_MAX_ERROR)
        numeric_ok = all(  # drift is judged above, against the baseline: here numeric heads only
            head_gate(m, float("inf"), max_error) is None
            for m in chosen["heads"].values()
            if m.get("task") == "regress"
        )
        latency = (chosen.get("latency_ms") or {}).get("b1") or {}
        out[runtime] = {
            "artifact": chosen["name"],
            "recipe": chosen["recipe"]["id"],
            "size_bytes": chosen["size_bytes"],
            "size_gzip_bytes": chosen["size_gzip_bytes"],
            "latency_ms_b1": latency.get("p50_ms"),
            "drift": drift,
            "feasible": drift <= max_drift and numeric_ok and chosen.get("repeatable", True),
        }
    return out


def constraint(m: dict[str, Any], max_drift: float) -> float:
    """Optuna's constraint value for one runtime's artifact (<= 0: meets the budget): the drift
    past the budget; a positive value when it misses in another way (a numeric head's error, a
    stateful runner), the largest when there is no artifact."""
    if not m.get("artifact"):
        return INFEASIBLE
    excess = float(m["drift"] - max_drift)
    return excess if m["feasible"] else max(excess, 1.0)


def metric_names(objectives: tuple[str, ...]) -> list[str]:
    """The names of objective_values' values, in their order (`size_litert`, ...)."""
    return [f"{objective}_{runtime}" for objective in objectives for runtime in RUNTIMES]


def objective_values(measured: dict[str, dict[str, Any]], objectives: tuple[str, ...]) -> list:
    """Optuna's values: for each objective, one per runtime (all minimized); a runtime with no
    measurement (a failed trial measures none) is infeasible."""
    key = METRIC
    values = []
    for objective in objectives:
        for runtime in RUNTIMES:
            value = measured.get(runtime, {}).get(key[objective])
            values.append(float(value) if value is not None else INFEASIBLE)
    return values


def pareto(points: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """The points no other point beats on every key (all minimized)."""
    front = []
    for p in points:
        dominated = any(
            all(q[k] <= p[k] for k in keys) and any(q[k] < p[k] for k in keys)
            for q in points
            if q is not p
        )
        if not dominated:
            front.append(p)
    return sorted(front, key=lambda p: tuple(p[k] for k in keys))


def fronts(trials: list[dict[str, Any]], spec: TuneSpec) -> dict[str, list[dict[str, Any]]]:
    """Per runtime, the Pareto front of the feasible trials over (objectives..., drift)."""
    key = METRIC
    out = {}
    for runtime in RUNTIMES:
        points = []
        for t in trials:
            m = (t.get("runtimes") or {}).get(runtime) or {}
            if t["state"] != "COMPLETE" or not m.get("feasible") or "same_as" in t:
                continue
            if any(m.get(key[o]) is None for o in spec.objectives):
                continue
            points.append({"trial": t["number"], "params": t["params"], **m})
        out[runtime] = pareto(points, tuple(key[o] for o in spec.objectives) + ("drift",))
    return out


def best(trials: list[dict[str, Any]], spec: TuneSpec) -> dict[str, dict[str, Any]]:
    """Per runtime and objective, the recommended trial: the best feasible one, or (when none
    meets the budget) the one closest to it, marked `within_budget: false`."""
    key = METRIC
    out = {}
    done = [t for t in trials if t["state"] == "COMPLETE" and "same_as" not in t]
    for runtime in RUNTIMES:
        for objective in spec.objectives:
            rows = [
                (t, t["runtimes"][runtime])
                for t in done
                if t["runtimes"].get(runtime, {}).get(key[objective]) is not None
            ]
            feasible = [(t, m) for t, m in rows if m["feasible"]]
            if feasible:
                t, m = min(feasible, key=lambda tm: (tm[1][key[objective]], tm[1]["drift"]))
                within = True
            elif rows:
                t, m = min(rows, key=lambda tm: (tm[1]["drift"], tm[1][key[objective]]))
                within = False
            else:
                continue
            out[f"{runtime}-{objective}"] = {
                "trial": t["number"],
                "params": t["params"],
                "within_budget": within,
                **m,
            }
    return out


def run_trial(
    base: Any,
    params: dict[str, Any],
    objectives: tuple[str, ...],
    out: str,
    cache_root: str | None,
    progress: Any = None,
) -> dict[str, Any]:
    """One trial: the target's pipeline with the point's overrides, run into `out`. Returns the
    run directory and report."""
    from compress.runs.cache import StageCache
    from compress.runs.pipeline import run

    config = with_stages(base, {**overrides(params, objectives), "out": out})
    cache = StageCache(Path(cache_root)) if cache_root else None
    result = run(config, progress=progress, cache=cache)
    return {"run_dir": str(result.run_dir), "report": result.report}


def execute(job: dict[str, Any], progress: Any = None) -> dict[str, Any]:
    """One trial wherever it runs (the tune's process, a local trial process, a Ray worker):
    the job is plain data (see `job`), the result its small JSON record. The trial holds its
    share of the timing lock while it runs (timing.trial), so its latencies are measured with no
    other trial running, and other trials' timings wait for its builds."""
    from compress.measure import timing
    from compress.runs.config import make
    from compress.core.errors import CompressError

    t0, wall = time.perf_counter(), time.time()
    verbose = job.get("verbose", False)
    number = job["number"]

    def say(line: str) -> None:
        if progress is not None:
            progress(line)
        elif verbose:
            print(f"tune: trial {number}: {line}", file=sys.stderr, flush=True)

    with timing.lock_file(job["lock"]), timing.trial():
        try:
            shutil.rmtree(job["trial_dir"], ignore_errors=True)
            result = run_trial(
                make(**job["base"]),
                job["params"],
                tuple(job["objectives"]),
                job["trial_dir"],
                job["cache_root"],
                say,
            )
        except CompressError as exc:
            return {
                "error": str(exc),
                "started": round(wall, 3),
                "seconds": round(time.perf_counter() - t0, 2),
            }
    return {
        "runtimes": measure(result["report"], job["max_drift"]),
        "run_dir": str(Path(result["run_dir"]).resolve()),
        "started": round(wall, 3),  # Unix time
        "seconds": round(time.perf_counter() - t0, 2),
        "failures": result["report"]["verification"]["failures"],
    }


def job(
    spec: TuneSpec, number: int, params: dict[str, Any], cache_root: str | None, verbose: bool
) -> dict[str, Any]:
    """What `execute` needs for one trial, as plain (picklable, JSON) data; every path absolute
    (a Ray worker does not run in this directory)."""
    return {
        "number": number,
        "params": params,
        "base": spec.base.model_dump(mode="json"),
        "objectives": list(spec.objectives),
        "max_drift": spec.max_drift,
        "trial_dir": str((spec.directory / "trials" / f"{number:04d}").resolve()),
        "cache_root": str(Path(cache_root).resolve()) if cache_root else None,
        "lock": lock_path(spec),
        "verbose": verbose,
    }


def lock_path(spec: TuneSpec) -> str:
    """The timing lock of a tune: one file per machine (trials on other machines time on their
    own cores), in its temp directory."""
    import tempfile

    return str(Path(tempfile.gettempdir()) / f"compress-timing-{spec.tune_id}.lock")


def tell(study: Any, trial: Any, record: dict[str, Any], spec: TuneSpec) -> None:
    """A trial's record into the study: its values and drift constraints, or a failure."""
    from optuna.trial import TrialState

    trial.set_user_attr("record", record)
    if "runtimes" not in record:
        study.tell(trial, state=TrialState.FAIL)
        return
    for runtime, m in record["runtimes"].items():
        trial.set_constraint(f"drift_{runtime}", constraint(m, spec.max_drift))
    study.tell(trial, objective_values(record["runtimes"], spec.objectives))


def summary(number: int, record: dict[str, Any]) -> str:
    if "runtimes" not in record:
        return f"tune: trial {number} failed: {record.get('error')}"
    return f"tune: trial {number} done: " + ", ".join(
        f"{rt} {m.get('size_gzip_bytes', '-')} B gzip, drift {m.get('drift', 0):.2f}"
        for rt, m in record["runtimes"].items()
        if m.get("artifact")
    )


def with_stages(config: Any, point: dict[str, Any]) -> Any:
    """`config` with `point`'s overrides, the stages they name added where the pipeline lacks
    them (prune and cluster are optional), each in its place in the registry's order."""
    from compress.runs.config import apply_overrides, make
    from compress.stages import REGISTRY

    names = {k.partition(".")[0] for k in point if "." in k}
    present = dict(config.stages)
    stages = {n: present.get(n, {}) for n in REGISTRY if n in present or n in names}
    return make(**apply_overrides({**config.model_dump(), "stages": stages}, point))


def point_key(params: dict[str, Any]) -> str:
    """What a trial builds: with QAT on, the quantize mode is QAT's (the mode drawn is unused)."""
    effective = {**params, "quantize": "qat" if params.get("qat") else params.get("quantize")}
    return json.dumps(effective, sort_keys=True, default=str)


def _same_point(study: Any, params: dict[str, Any]) -> Any:
    """A finished trial that built exactly this point, if any."""
    from optuna.trial import TrialState

    key = point_key(params)
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if point_key(decode(t.params)) == key and "runtimes" in t.user_attrs.get("record", {}):
            return t
    return None


def suggest_point(trial: Any, space: dict[str, list[Any]]) -> dict[str, Any]:
    """Optuna's categorical choices must be plain values: None is spelled "none"."""
    params = {}
    for key, values in space.items():
        choices = ["none" if v is None else v for v in values]
        value = trial.suggest_categorical(key, choices)
        params[key] = None if value == "none" else value
    return params


def space_points(space: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every point of the space, one per thing built (see point_key), the seeds first."""
    import itertools

    seeds = [{k: s[k] if s[k] in space[k] else space[k][0] for k in space} for s in SEEDS]
    grid = [dict(zip(space, values, strict=True)) for values in itertools.product(*space.values())]
    out, seen = [], set()
    for point in seeds + grid:
        if point_key(point) not in seen:
            seen.add(point_key(point))
            out.append(point)
    return out


def _enqueue(study: Any, points: list[dict[str, Any]]) -> None:
    """Queue the points no trial has taken yet (a failed trial without a record was cut, and its
    point was queued again when the study was opened)."""
    taken = {point_key(decode(t.params)) for t in study.trials if t.params}
    for point in points:
        if point_key(point) not in taken:
            study.enqueue_trial(encode(point), skip_if_exists=True)


def encode(params: dict[str, Any]) -> dict[str, Any]:
    return {k: "none" if v is None else v for k, v in params.items()}


def decode(params: dict[str, Any]) -> dict[str, Any]:
    return {k: None if v == "none" else v for k, v in params.items()}


def open_study(spec: TuneSpec, trials: int, sampler_seed: int = 0) -> Any:
    """The study in the tune directory, created or continued. A trial left RUNNING by a process
    that died is marked failed and its point queued again. The seeds are queued first; a space
    no bigger than `trials` is searched exhaustively (every point queued), so any executor runs
    the same trials."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=STUDY,
        storage=storage(spec),
        directions=["minimize"] * (len(spec.objectives) * len(RUNTIMES)),
        # the drift budget is a constraint (Trial.set_constraint: <= 0 is feasible), not a stop
        sampler=optuna.samplers.TPESampler(seed=sampler_seed, multivariate=True),
        load_if_exists=True,
    )
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        study.enqueue_trial(t.params, skip_if_exists=False)
    points = space_points(spec.space)
    _enqueue(study, points if len(points) <= trials else points[: len(SEEDS)])
    return study


def storage(spec: TuneSpec) -> Any:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    spec.directory.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(spec.directory / "study.journal")))


def finished(study: Any) -> list[Any]:
    """Complete trials, and failed ones with a reason (a trial a dead process left RUNNING was
    marked failed without one, and its point queued again)."""
    from optuna.trial import TrialState

    return [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state == TrialState.COMPLETE
        or (t.state == TrialState.FAIL and "record" in t.user_attrs)
    ]


def remaining(study: Any, spec: TuneSpec, trials: int) -> int:
    """How many more trials to start: up to `trials` finished ones, and none once every point of
    the space has been built."""
    done = finished(study)
    built = {point_key(decode(t.params)) for t in done}
    left = [p for p in space_points(spec.space) if point_key(p) not in built]
    return min(max(trials - len(done), 0), len(left))


def propose(study: Any, params: dict[str, Any]) -> dict[str, Any] | None:
    """The record of a finished trial that built the point the sampler proposed again (its
    result stands: nothing is rerun), or None."""
    same = _same_point(study, params)
    if same is None:
        return None
    return {**same.user_attrs["record"], "same_as": same.number}


def trial_records(study: Any) -> list[dict[str, Any]]:
    out = []
    for t in study.get_trials(deepcopy=False):
        record = {"number": t.number, "state": t.state.name, "params": decode(t.params)}
        record.update(t.user_attrs.get("record", {}))
        out.append(record)
    return out


EXECUTORS = ("local", "ray")


def tune(
    spec: TuneSpec,
    *,
    trials: int,
    timeout_s: float | None = None,
    cache_root: str | None = None,
    progress: Any = None,
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
) -> dict[str, Any]:
    """Run trials until the study holds `trials` finished ones, every point of the space has
    been built, or `timeout_s` passes; then write tune.json, pareto.csv, pareto.png and best/.
    `executor` "local" runs at most `workers` trials at once on this machine (one: in this
    process); "ray" runs them through Ray Tune on the cluster at `address` (RAY_ADDRESS, or a
    local instance), at most `workers` at once when given (default: what the cluster fits).
    Returns the tune record."""
    if executor not in EXECUTORS:
        raise UsageError(
            f"executor must be local or ray. Got {executor!r} instead.", key="executor"
        )
    if workers is not None and workers < 1:
        raise UsageError(f"workers must be >= 1. Got {workers} instead.", key="workers")
    from compress.core.progress import adapt

    report_to = adapt(progress)

    def say(line: str) -> None:
        report_to.line(line)
        report_to.step("tune: trials", len(finished(study)), trials)

    study = open_study(spec, trials)
    if executor == "ray":
        from compress.tune import ray as tune_ray

        tune_ray.run(study, spec, trials, timeout_s, cache_root, say, workers, address)
    elif (workers or 1) == 1:
        _run_inline(study, spec, trials, timeout_s, cache_root, say)
    else:
        _run_pool(study, spec, trials, timeout_s, cache_root, say, workers, progress is not None)
    done = finished(study)
    if len(done) < trials and not remaining(study, spec, trials):
        say(f"tune: every point of the space has been built ({len(space_points(spec.space))})")
    return write_outputs(spec, trial_records(study))


def _ask(study: Any, spec: TuneSpec, say: Any) -> tuple[Any, dict[str, Any]] | None:
    """The next trial and its point, or None when the sampler proposed a finished point (its
    record is told at once)."""
    trial = study.ask()
    params = suggest_point(trial, spec.space)
    record = propose(study, params)
    if record is None:
        return trial, params
    tell(study, trial, record, spec)
    say(f"tune: trial {trial.number} {params} is trial {record['same_as']}'s point: not rerun")
    return None


def _timed_out(started: float, timeout_s: float | None, say: Any, study: Any) -> bool:
    if timeout_s is not None and time.monotonic() - started > timeout_s:
        say(f"tune: timeout after {len(finished(study))} trials")
        return True
    return False


def _run_inline(
    study: Any, spec: TuneSpec, trials: int, timeout_s: float | None, cache_root: str | None,
    say: Any,
) -> None:  # fmt: skip
    """One trial at a time, in this process (a Ctrl-C leaves the running trial RUNNING in the
    journal: the next tune queues its point again)."""
    started = time.monotonic()
    while remaining(study, spec, trials) and not _timed_out(started, timeout_s, say, study):
        asked = _ask(study, spec, say)
        if asked is None:
            continue
        trial, params = asked
        say(f"tune: trial {trial.number} {params} ...")
        record = execute(
            job(spec, trial.number, params, cache_root, verbose=False),
            progress=lambda line, n=trial.number: say(f"tune: trial {n}: {line}"),
        )
        tell(study, trial, record, spec)
        say(summary(trial.number, record))


def _run_pool(
    study: Any, spec: TuneSpec, trials: int, timeout_s: float | None, cache_root: str | None,
    say: Any, workers: int, verbose: bool,
) -> None:  # fmt: skip
    """At most `workers` trials at once, each in a spawned trial process of a pool (TensorFlow
    imported once per process, the stage cache shared). An interrupt stops them all; their
    trials stay RUNNING in the journal and are queued again by the next tune."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from compress.backends import worker as isolate

    started = time.monotonic()
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    running: dict[Any, Any] = {}
    try:
        while True:
            while (
                len(running) < workers
                and remaining(study, spec, trials) > len(running)
                and not _timed_out(started, timeout_s, say, study)
            ):
                asked = _ask(study, spec, say)
                if asked is None:
                    continue
                trial, params = asked
                say(f"tune: trial {trial.number} {params} ...")
                with isolate.main_hidden():  # the pool spawns its processes on submit
                    future = pool.submit(
                        execute, job(spec, trial.number, params, cache_root, verbose)
                    )
                running[future] = trial
            if not running:
                return
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                trial = running.pop(future)
                record = future.result()
                tell(study, trial, record, spec)
                say(summary(trial.number, record))
    finally:
        processes = list((pool._processes or {}).values())  # noqa: SLF001 - stop them now
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in processes:
            if proc.is_alive():
                proc.terminate()
        for proc in processes:
            proc.join(10)
            if proc.is_alive():
                proc.kill()


def write_outputs(spec: TuneSpec, trials: list[dict[str, Any]]) -> dict[str, Any]:
    """tune.json, pareto.csv, pareto.png and best/ (each recommended trial's run directory)."""
    from compress.report.text import page as report_html
    from compress.core.fileio import write_json_atomic, write_text_atomic

    fp32 = _fp32_reference(trials)
    record = {
        "tune_id": spec.tune_id,
        "target": spec.target,
        "objectives": list(spec.objectives),
        "max_drift": spec.max_drift,
        "space": {k: ["none" if v is None else v for v in vs] for k, vs in spec.space.items()},
        "latency": "every latency was measured with no other trial running: trials hold a "
        "shared lock while they run and time only while holding it exclusively (timing.trial, "
        "timing.exclusive)",
        "fp32_weight_bytes": fp32,
        "trials": trials,
        "fronts": fronts(trials, spec),
        "best": best(trials, spec),
    }
    record["passed"] = bool(record["best"]) and all(
        b["within_budget"] for b in record["best"].values()
    )
    best_dir = spec.directory / "best"
    shutil.rmtree(best_dir, ignore_errors=True)
    for name, b in record["best"].items():
        source = Path(next(t["run_dir"] for t in trials if t["number"] == b["trial"]))
        if source.is_dir():
            shutil.copytree(source, best_dir / name)
            b["run_dir"] = str(best_dir / name)
    write_json_atomic(spec.directory / "tune.json", record)
    write_text_atomic(spec.directory / "pareto.csv", pareto_csv(record))
    plot(record, spec.directory / "pareto.png")
    write_text_atomic(spec.directory / "tune.html", report_html.render_tune(record))
    return record


def _fp32_reference(trials: list[dict[str, Any]]) -> int | None:
    """The float model's fp32 weight bytes (what compression ratios are measured against)."""
    for t in trials:
        if t.get("run_dir") and Path(t["run_dir"], "report.json").is_file():
            report = json.loads(Path(t["run_dir"], "report.json").read_text())
            return report["verification"].get("float_weight_bytes")
    return None


def pareto_csv(record: dict[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(
        [
            "runtime",
            "trial",
            "prune",
            "cluster",
            "quantize",
            "qat",
            "artifact",
            "recipe",
            "size_bytes",
            "size_gzip_bytes",
            "latency_ms_b1",
            "drift",
        ]
    )
    for runtime, front in record["fronts"].items():
        for p in front:
            writer.writerow(
                [
                    runtime,
                    p["trial"],
                    *(p["params"].get(k) for k in DEFAULT_SPACE),
                    p["artifact"],
                    p["recipe"],
                    p["size_bytes"],
                    p["size_gzip_bytes"],
                    p["latency_ms_b1"],
                    f"{p['drift']:.3f}",
                ]
            )
    return buf.getvalue()


def plot(record: dict[str, Any], path: Path) -> None:
    """pareto.png, written atomically."""
    import matplotlib.pyplot as plt

    from compress.core.fileio import write_atomic

    fig = pareto_figure(record)

    def save(tmp: Path) -> None:
        fig.savefig(tmp, format="png", dpi=90)

    write_atomic(path, save)
    plt.close(fig)


def pareto_figure(record: dict[str, Any]) -> Any:
    """Every finished trial per runtime (gzip size or latency against drift), the front joined,
    the budget drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    objective = record["objectives"][0]
    key = METRIC[objective]
    fig, axes = plt.subplots(1, len(RUNTIMES), figsize=(11, 4.2), squeeze=False)
    for ax, runtime in zip(axes[0], RUNTIMES, strict=True):
        pts = [
            (
                t["runtimes"][runtime][key],
                t["runtimes"][runtime]["drift"],
                t["runtimes"][runtime]["feasible"],
            )
            for t in record["trials"]
            if t["state"] == "COMPLETE" and t["runtimes"].get(runtime, {}).get(key)
        ]
        if pts:
            ax.scatter(
                [p[0] for p in pts],
                [p[1] for p in pts],
                s=18,
                c=["tab:blue" if p[2] else "tab:gray" for p in pts],
                label="trials",
            )
        front = record["fronts"].get(runtime, [])
        if front:
            ax.plot(
                [p[key] for p in front],
                [p["drift"] for p in front],
                "o-",
                color="tab:red",
                label="Pareto front",
            )
        ax.axhline(record["max_drift"], color="tab:orange", ls="--", label="max drift")
        ax.set_xscale("log")
        ax.set_xlabel("gzip size (bytes)" if objective == "size" else "p50 latency, batch 1 (ms)")
        ax.set_ylabel("drift vs the float model (pts)")
        ax.set_title(f"{record['target']}: {runtime}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def render(record: dict[str, Any]) -> str:
    """The fronts and the recommendations as a terminal table."""
    fp32 = record.get("fp32_weight_bytes")
    lines = []
    header = [
        "runtime",
        "trial",
        "prune",
        "cluster",
        "quant",
        "qat",
        "gzip (B)",
        "ratio",
        "p50 b1 ms",
        "drift pts",
    ]
    rows = []
    for runtime, front in record["fronts"].items():
        for p in front:
            ratio = f"{fp32 / p['size_gzip_bytes']:.1f}x" if fp32 else "-"
            lat = p["latency_ms_b1"]
            rows.append(
                [
                    runtime,
                    str(p["trial"]),
                    str(p["params"]["prune"]),
                    str(p["params"]["cluster"]),
                    str(p["params"]["quantize"]),
                    str(p["params"]["qat"]),
                    f"{p['size_gzip_bytes']:,}",
                    ratio,
                    "-" if lat is None else f"{lat:.3f}",
                    f"{p['drift']:+.2f}",
                ]
            )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    done = sum(t["state"] == "COMPLETE" for t in record["trials"])
    lines.append(
        f"{done} trials finished; Pareto front per runtime above (within "
        f"{record['max_drift']:g} pts)"
    )
    for name, b in record["best"].items():
        tag = "" if b["within_budget"] else "  (NO trial met the budget: closest shown)"
        lines.append(
            f"best {name}: trial {b['trial']} {b['artifact']} "
            f"{b['size_gzip_bytes']:,} B gzip, drift {b['drift']:+.2f} pts{tag}"
        )
    return "\n".join(lines)
