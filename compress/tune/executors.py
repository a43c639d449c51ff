"""Where a tune's trials run: inline (one at a time, in this process), a pool of spawned trial
processes (`workers`), or Ray Tune (tune/ray.py). One ask / execute / tell path for all."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from compress.core import compat
from compress.core.errors import UsageError
from compress.tune.results import write_outputs
from compress.tune.space import is_signature, post_training, space_points, suggest_point
from compress.tune.study import finished, open_study, propose, remaining, tell, trial_records
from compress.tune.trial import TuneSetup, execute, job, summary

EXECUTORS = ("local", "ray")


def tune(
    setup: TuneSetup,
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
    if trials < 1:
        raise UsageError(f"trials must be >= 1. Got {trials} instead.", key="trials")
    if workers is not None and workers < 1:
        raise UsageError(f"workers must be >= 1. Got {workers} instead.", key="workers")
    if address and executor != "ray":
        raise UsageError("address is the Ray cluster's: it needs the ray executor", key="address")
    if timeout_s is not None and not timeout_s > 0:
        raise UsageError(f"timeout must be > 0 seconds. Got {timeout_s} instead.", key="timeout")
    from compress.core.progress import adapt

    report_to = adapt(progress)

    def say(line: str) -> None:
        report_to.line(line)
        report_to.step("tune: trials", len(finished(study)), trials)

    if is_signature(setup.base.model):  # a SavedModel: nothing to prune, cluster or train
        setup = dataclasses.replace(setup, space=post_training(setup.space))
        report_to.line(f"tune: '{Path(setup.base.model).name}' is a SavedModel without Keras "
                       "layers: searching the post-training quantization modes only")  # fmt: skip
    study = open_study(setup, trials)
    if executor == "ray":
        from compress.tune import ray as tune_ray

        tune_ray.run(study, setup, trials, timeout_s, cache_root, say, workers, address)
    elif (workers or 1) == 1:
        _run_inline(study, setup, trials, timeout_s, cache_root, say)
    else:
        _run_pool(study, setup, trials, timeout_s, cache_root, say, workers, progress is not None)
    done = finished(study)
    if len(done) < trials and not remaining(study, setup, trials):
        say(f"tune: every point of the space has been built ({len(space_points(setup.space))})")
    return write_outputs(setup, trial_records(study))


def _ask(study: Any, setup: TuneSetup, say: Any) -> tuple[Any, dict[str, Any]] | None:
    """The next trial and its point, or None when the sampler proposed a finished point (its
    record is told at once)."""
    trial = study.ask()
    params = suggest_point(trial, setup.space)
    record = propose(study, params)
    if record is None:
        return trial, params
    tell(study, trial, record, setup)
    say(f"tune: trial {trial.number} {params} is trial {record['same_as']}'s point: not rerun")
    return None


def _timed_out(started: float, timeout_s: float | None, say: Any, study: Any) -> bool:
    if timeout_s is not None and time.monotonic() - started > timeout_s:
        say(f"tune: timeout after {len(finished(study))} trials")
        return True
    return False


def _run_inline(
    study: Any, setup: TuneSetup, trials: int, timeout_s: float | None, cache_root: str | None,
    say: Any,
) -> None:  # fmt: skip
    """One trial at a time, in this process (a Ctrl-C leaves the running trial RUNNING in the
    journal: the next tune queues its point again)."""
    started = time.monotonic()
    while remaining(study, setup, trials) and not _timed_out(started, timeout_s, say, study):
        asked = _ask(study, setup, say)
        if asked is None:
            continue
        trial, params = asked
        say(f"tune: trial {trial.number} {params} ...")
        record = execute(
            job(setup, trial.number, params, cache_root, verbose=False),
            progress=lambda line, n=trial.number: say(f"tune: trial {n}: {line}"),
        )
        tell(study, trial, record, setup)
        say(summary(trial.number, record))


def _run_pool(
    study: Any, setup: TuneSetup, trials: int, timeout_s: float | None, cache_root: str | None,
    say: Any, workers: int, verbose: bool,
) -> None:  # fmt: skip
    """At most `workers` trials at once, each in a spawned trial process of a pool (TensorFlow
    imported once per process, the stage cache shared). An interrupt stops them all; their
    trials stay RUNNING in the journal and are queued again by the next tune."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from compress.backends import worker as isolate
    from compress.keras import _tf

    started = time.monotonic()
    pool = ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=_tf.own_process
    )
    running: dict[Any, Any] = {}
    try:
        while True:
            while (
                len(running) < workers
                and remaining(study, setup, trials) > len(running)
                and not _timed_out(started, timeout_s, say, study)
            ):
                asked = _ask(study, setup, say)
                if asked is None:
                    continue
                trial, params = asked
                say(f"tune: trial {trial.number} {params} ...")
                with isolate.main_hidden():  # the pool spawns its processes on submit
                    future = pool.submit(
                        execute, job(setup, trial.number, params, cache_root, verbose)
                    )
                running[future] = trial
            if not running:
                return
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                trial = running.pop(future)
                record = future.result()
                tell(study, trial, record, setup)
                say(summary(trial.number, record))
    finally:
        processes = compat.pool_processes(pool)  # stop them now
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in processes:
            if proc.is_alive():
                proc.terminate()
        for proc in processes:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
