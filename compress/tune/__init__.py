"""compress tune: the smallest (or fastest) artifact per runtime within an accuracy budget.

Each trial is one `compress run` of the target with a point of the search space (prune
sparsity, cluster count, quantize mode, QAT on/off): it builds once and verifies every runtime's
artifact, so one study yields one Pareto front per runtime (every runtime of the backend
registry). Optuna drives the search (multi-objective; the drift budget is a constraint, not a
stopping rule), seeded with the known-good corners (plain int8, the deep-compression settings).
The study lives in the tune directory (Optuna's JournalStorage, file backend): an interrupted or
crashed tune keeps every finished trial, and the same command continues it. Trials share the
stage cache, so the model is trained once and each sparsity pruned once.

Latencies enter the front only as measured with nothing else timing on the machine: every
timing phase (verify, the recipe search) holds the tune's lock file, shared by the trial
processes (measure.timing.TimingLock).

    space.py      the search space, its points and their overrides
    study.py      the Optuna study: open, ask, tell
    trial.py      one trial: run it, read what it measured per runtime
    results.py    fronts, recommendations, the tune directory's files
    executors.py  inline, a process pool, or Ray (ray.py)
"""

from compress.tune.executors import EXECUTORS, tune
from compress.tune.results import best, fronts, pareto, write_outputs
from compress.tune.space import (
    DEFAULT_SPACE,
    OBJECTIVES,
    SEEDS,
    load_space,
    parse_objectives,
    runtimes,
    suggest_point,
)
from compress.tune.study import open_study, propose, tell
from compress.tune.trial import TuneSetup, execute, trial_metrics

__all__ = [
    "DEFAULT_SPACE",
    "EXECUTORS",
    "OBJECTIVES",
    "SEEDS",
    "TuneSetup",
    "best",
    "execute",
    "fronts",
    "load_space",
    "open_study",
    "pareto",
    "parse_objectives",
    "propose",
    "runtimes",
    "suggest_point",
    "tell",
    "trial_metrics",
    "tune",
    "write_outputs",
]
