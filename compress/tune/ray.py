"""`compress tune --executor ray`: the trials of a tune through Ray Tune, on an existing cluster
(`address`, or RAY_ADDRESS) or a local instance started for the tune.

The study is the tune's own (the same JournalStorage file, the same sampler, seeds and queued
points): Ray Tune's OptunaSearch asks it for each trial's point, and the trial's record is told
back as `compress tune` tells a local one (values, drift constraints, failures), so `local` and
`ray` give the same study. Each trial is `compress.tune.execute` in a Ray worker, reserving the
CPUs it times with (`tune.with_resources`). The workers must see the tune directory and the
stage cache at the same paths (one machine, or a filesystem every node mounts): a trial that
cannot see them fails and says so. Ray is an optional extra: nothing imports it unless the
executor is ray.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from compress.core import compat
from compress.core.errors import InputError, UsageError
from compress.tune import space as tuning_space
from compress.tune import study as tuning_study
from compress.tune import trial as tuning_trial

RECORD = "compress_record"  # the result key carrying a trial's record (a JSON string)
TOKEN = ".executor-token"  # a file in the tune directory a worker must be able to read


def run(
    study: Any,
    setup: tuning_trial.TuneSetup,
    trials: int,
    timeout_s: float | None,
    cache_root: str | None,
    say: Any,
    workers: int | None,
    address: str | None,
) -> None:
    """Run the remaining trials of `study` on Ray; returns when they are told (an interrupt
    leaves the running ones RUNNING in the journal, queued again by the next tune)."""
    try:
        import ray
        from ray import tune as ray_tune
    except ImportError:
        raise UsageError(
            "the ray executor needs Ray: pip install -e '.[ray]'", key="executor"
        ) from None
    count = tuning_study.remaining(study, setup, trials)
    if not count:
        return
    token = secrets.token_hex(8)
    (setup.directory / TOKEN).write_text(token)
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # Ctrl-C stops the tune as a local one
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # the legacy reporter, silent at verbose 0
    started = not ray.is_initialized()
    if started:
        _init(ray, address or os.environ.get("RAY_ADDRESS"), say)
    try:
        searcher = _searcher(
            study,
            setup,
            say,
            lambda number, params: tuning_trial.job(setup, number, params, cache_root, False),
        )
        trainable = ray_tune.with_resources(_trial, {"cpu": setup.base.threads})
        tuner = ray_tune.Tuner(
            ray_tune.with_parameters(
                trainable,
                context={
                    "token": token,
                    "token_file": str((setup.directory / TOKEN).resolve()),
                    "cwd": os.getcwd(),
                },
            ),
            tune_config=ray_tune.TuneConfig(
                search_alg=searcher,
                num_samples=count,
                max_concurrent_trials=workers,
                time_budget_s=timeout_s,
                trial_dirname_creator=_dirname,
            ),
            run_config=ray_tune.RunConfig(
                name="ray",
                storage_path=str(setup.directory.resolve()),
                verbose=0,
                log_to_file=True,
            ),
        )
        tuner.fit()
    finally:
        if started:
            ray.shutdown()


def _init(ray: Any, address: str | None, say: Any) -> None:
    import logging

    options: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.ERROR,
    }
    try:
        if address:
            say(f"tune: connecting to the Ray cluster at {address}")
            ray.init(address=address, **options)
        else:
            say(f"tune: starting a local Ray instance with {os.cpu_count()} CPUs")
            ray.init(num_cpus=os.cpu_count(), **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"at {address}" if address else "locally"
        raise InputError(f"cannot start or reach a Ray cluster {where}: {exc}") from None


def _searcher(study: Any, setup: tuning_trial.TuneSetup, say: Any, make_job: Any) -> Any:
    """OptunaSearch on the tune's study: points from the tune's sampler (queued points first), a
    finished point proposed again answered from its trial, records told as a local tune tells
    them. Its state is the study's journal: Ray's searcher checkpoints are not written."""
    from ray.tune.search.optuna import OptunaSearch

    class Search(OptunaSearch):
        def suggest(self, trial_id: str) -> dict[str, Any] | None:
            params = tuning_space.decode(super().suggest(trial_id))
            ot_trial = self._ot_trials[trial_id]
            same = tuning_study.propose(self._ot_study, params)
            say(f"tune: trial {ot_trial.number} {params} ...")
            return {"job": make_job(ot_trial.number, params), "same": same}

        def on_trial_complete(
            self, trial_id: str, result: dict | None = None, error: bool = False
        ) -> None:
            if trial_id in self._completed_trials:
                return
            self._completed_trials.add(trial_id)
            ot_trial = self._ot_trials[trial_id]
            if result and RECORD in result:
                record = json.loads(result[RECORD])
            elif error:
                where = setup.directory / "ray"
                record = {"error": f"the trial's Ray worker failed (its log: under {where})"}
            else:
                return  # stopped without a result (the tune was interrupted): left RUNNING
            tuning_study.tell(self._ot_study, ot_trial, record, setup)
            if "same_as" in record:
                say(
                    f"tune: trial {ot_trial.number} is trial {record['same_as']}'s point: not rerun"
                )
            else:
                say(tuning_trial.summary(ot_trial.number, record))

        def save_to_dir(self, *args: Any, **kwargs: Any) -> None:
            pass

    metrics = tuning_study.metric_names(setup.objectives)
    return Search(
        space=_Space(setup.space),
        metric=metrics,
        mode=["min"] * len(metrics),
        sampler=study.sampler,
        study_name=tuning_study.STUDY,
        storage=compat.optuna_storage(study),
    )


def _dirname(trial: Any) -> str:
    return f"trial-{trial.config['job']['number']:04d}-{trial.trial_id}"


class _Space:
    """The define-by-run space: OptunaSearch captures the suggestions made on its trial."""

    def __init__(self, space: dict[str, list[Any]]) -> None:
        self.space = space

    def __call__(self, trial: Any) -> None:
        tuning_space.suggest_point(trial, self.space)


def _trial(config: dict[str, Any], context: dict[str, Any]) -> None:
    """One Ray Tune trial: `compress.tune.execute` where the worker sees the tune directory."""
    from ray import tune as ray_tune

    job = config["job"]
    if config.get("same") is not None:
        record = config["same"]
    else:
        try:
            seen = Path(context["token_file"]).read_text()
        except OSError:
            seen = None
        if seen != context["token"]:
            import socket

            record = {
                "error": f"the trial ran on {socket.gethostname()}, which cannot see the tune "
                f"directory {Path(context['token_file']).parent}: the ray executor needs it "
                "(and the cache) on a filesystem every node mounts"
            }
        else:
            if os.path.isdir(context["cwd"]):
                os.chdir(context["cwd"])  # user paths in the pipeline are relative to it
            record = tuning_trial.execute(job)
    objectives = tuple(job["objectives"])
    values = dict(
        zip(
            tuning_study.metric_names(objectives),
            tuning_study.objective_values(record.get("runtimes", {}), objectives),
            strict=True,
        )
    )
    ray_tune.report({**values, RECORD: json.dumps(record)})
