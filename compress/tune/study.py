"""The Optuna study of a tune: in the tune directory (JournalStorage, file backend), created or
continued; a trial's record told as its values (one per objective and runtime, minimized) and
drift constraints; finished points never rebuilt."""

from __future__ import annotations

from typing import Any

from compress.core import compat
from compress.tune.space import (
    METRIC,
    SEEDS,
    decode,
    encode,
    point_key,
    runtimes,
    space_points,
)
from compress.tune.trial import INFEASIBLE, TuneSetup, budget_excess

STUDY = "compress-tune"


def constraint(m: dict[str, Any], max_drift: float) -> float:
    """Optuna's constraint value for one runtime's artifact (<= 0: meets the budget):
    trial.budget_excess."""
    return budget_excess(m, max_drift)


def metric_names(objectives: tuple[str, ...]) -> list[str]:
    """The names of objective_values' values, in their order (`size_litert`, ...)."""
    return [f"{objective}_{runtime}" for objective in objectives for runtime in runtimes()]


def objective_values(measured: dict[str, dict[str, Any]], objectives: tuple[str, ...]) -> list:
    """Optuna's values: for each objective, one per runtime (all minimized); a runtime with no
    measurement (a failed trial measures none) is infeasible."""
    values = []
    for objective in objectives:
        for runtime in runtimes():
            value = measured.get(runtime, {}).get(METRIC[objective])
            values.append(float(value) if value is not None else INFEASIBLE)
    return values


def open_study(setup: TuneSetup, trials: int, sampler_seed: int = 0) -> Any:
    """The study in the tune directory, created or continued. A trial left RUNNING by a process
    that died is marked failed and its point queued again. The seeds are queued first; a space
    no bigger than `trials` is searched exhaustively (every point queued), so any executor runs
    the same trials."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=STUDY,
        storage=storage(setup),
        directions=["minimize"] * (len(setup.objectives) * len(runtimes())),
        # the drift budget is a constraint (Trial.set_constraint: <= 0 is feasible), not a stop
        sampler=optuna.samplers.TPESampler(seed=sampler_seed, multivariate=True),
        load_if_exists=True,
    )
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        compat.optuna_mark_failed(study, t)
        study.enqueue_trial(t.params, skip_if_exists=False)
    points = space_points(setup.space)
    _enqueue(study, points if len(points) <= trials else points[: len(SEEDS)])
    return study


def storage(setup: TuneSetup) -> Any:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    setup.directory.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(setup.directory / "study.journal")))


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


def remaining(study: Any, setup: TuneSetup, trials: int) -> int:
    """How many more trials to start: up to `trials` finished ones, and none once every point of
    the space has been built."""
    done = finished(study)
    built = {point_key(decode(t.params)) for t in done}
    left = [p for p in space_points(setup.space) if point_key(p) not in built]
    return min(max(trials - len(done), 0), len(left))


def propose(study: Any, params: dict[str, Any]) -> dict[str, Any] | None:
    """The record of a finished trial that built the point the sampler proposed again (its
    result stands: nothing is rerun), or None."""
    same = _same_point(study, params)
    if same is None:
        return None
    return {**same.user_attrs["record"], "same_as": same.number}


def _same_point(study: Any, params: dict[str, Any]) -> Any:
    """A finished trial that built exactly this point, if any."""
    from optuna.trial import TrialState

    key = point_key(params)
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if point_key(decode(t.params)) == key and "runtimes" in t.user_attrs.get("record", {}):
            return t
    return None


def trial_records(study: Any) -> list[dict[str, Any]]:
    out = []
    for t in study.get_trials(deepcopy=False):
        record = {"number": t.number, "state": t.state.name, "params": decode(t.params)}
        record.update(t.user_attrs.get("record", {}))
        out.append(record)
    return out


def tell(study: Any, trial: Any, record: dict[str, Any], setup: TuneSetup) -> None:
    """A trial's record into the study: its values and drift constraints, or a failure."""
    from optuna.trial import TrialState

    trial.set_user_attr("record", record)
    if "runtimes" not in record:
        study.tell(trial, state=TrialState.FAIL)
        return
    for runtime, m in record["runtimes"].items():
        trial.set_constraint(f"drift_{runtime}", constraint(m, setup.max_drift))
    study.tell(trial, objective_values(record["runtimes"], setup.objectives))


def _enqueue(study: Any, points: list[dict[str, Any]]) -> None:
    """Queue the points no trial has taken yet (a failed trial without a record was cut, and its
    point was queued again when the study was opened)."""
    taken = {point_key(decode(t.params)) for t in study.trials if t.params}
    for point in points:
        if point_key(point) not in taken:
            study.enqueue_trial(encode(point), skip_if_exists=True)
