"""The run's data: what flows between stages. Plain frozen records that import nothing of
compress, so every module can use them without an import cycle."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Recipe:
    """How an artifact was made: a row of its backend's recipe table (`id`, `description`,
    the `knobs` the builder read) and, when it was chosen by measurement, what every candidate
    measured (`candidates`: dicts with `id`, `chosen`, and `p50_ms_b1`, `speedup_b1`,
    `agreement`, `size_bytes` or `error`), and how the choice was made (`selection`: the
    objective, the agreement floor, the winner after each timing round) and corrected
    (`fallback`: the layers kept float to meet the drift budget, with the drift before and
    after)."""

    id: str
    description: str
    knobs: dict[str, Any] = field(default_factory=dict)
    candidates: tuple[dict[str, Any], ...] = ()
    selection: dict[str, Any] = field(default_factory=dict)
    fallback: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = {
            "id": self.id,
            "description": self.description,
            "knobs": dict(self.knobs),
            "candidates": [dict(c) for c in self.candidates],
        }
        if self.selection:
            out["selection"] = dict(self.selection)
        if self.fallback:
            out["fallback"] = dict(self.fallback)
        return out

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Recipe:
        return cls(
            id=record["id"],
            description=record["description"],
            knobs=dict(record.get("knobs", {})),
            candidates=tuple(record.get("candidates", ())),
            selection=dict(record.get("selection", {})),
            fallback=dict(record.get("fallback", {})),
        )


@dataclass(frozen=True)
class Artifact:
    """One file a run produced, and how it is run."""

    name: str  # file name inside the run directory, e.g. model_int8.tflite
    path: Path
    format: str  # keras | tflite | onnx
    runtime: str  # a backend name: keras | litert | onnxruntime
    precision: str  # fp32 | int8 | dynamic | float16 | int4 | qat
    recipe: Recipe
    options: dict[str, bool] = field(default_factory=dict)  # runner options (e.g. reset_state)
    left_float: tuple[str, ...] = ()  # op types whose weights a quantizer left in float32
    # Properties of the file's bytes (gzip size, weight statistics), measured when it is
    # written: deterministic in its content, so a cached artifact keeps them.
    facts: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """JSON-ready fields, without the path (which depends on the run directory)."""
        return {
            "name": self.name,
            "format": self.format,
            "runtime": self.runtime,
            "precision": self.precision,
            "recipe": self.recipe.as_dict(),
            "options": dict(self.options),
            "left_float": list(self.left_float),
            "facts": self.facts,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any], path: Path) -> Artifact:
        return cls(
            name=record["name"],
            path=path,
            format=record["format"],
            runtime=record["runtime"],
            precision=record["precision"],
            recipe=Recipe.from_dict(record["recipe"]),
            options=dict(record.get("options", {})),
            left_float=tuple(record.get("left_float", ())),
            facts=record.get("facts", {}),
        )


@dataclass(frozen=True)
class Skipped:
    """An artifact a stage could not produce for this model, and why."""

    name: str
    runtime: str
    reason: str


@dataclass(frozen=True)
class RunState:
    """What flows between stages. Stages return a new state; they never mutate one."""

    workdir: Path
    model_name: str = ""
    data: Any = None  # compress.keras.data.Dataset (this layer imports nothing above it)
    model: Any = None  # the float tf_keras Model
    # How to get `model` when a stage needs it and it is not in hand: load a cached stage's
    # file, or build a reference model (so a run whose stages are all cached imports no Keras).
    model_loader: Callable[[], Any] | None = None
    # The float model's outputs on the held-out split, by head: verify's reference. Kept with
    # the model in the cache, so a rerun verifies without running Keras.
    reference_outputs: dict[str, Any] | None = None
    artifacts: tuple[Artifact, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    verification: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)  # per-stage facts for the report
    # The run's worker process for framework steps that can crash natively (isolate.Worker);
    # None: a stage that needs one starts its own.
    worker: Any = field(default=None, compare=False, repr=False)
    # The timing lock every timing of the run holds (measure.timing.TimingLock; None: none):
    # a tune's trials time one at a time.
    timing_lock: Any = field(default=None, compare=False, repr=False)
    # Where the run reports progress (compress.core.progress.Progress: stage steps such as epochs);
    # None: nowhere.
    progress: Any = field(default=None, compare=False, repr=False)

    def replace(self, **changes: Any) -> RunState:
        return dataclasses.replace(self, **changes)

    def add(
        self, artifacts: tuple[Artifact, ...] = (), skipped: tuple[Skipped, ...] = ()
    ) -> RunState:
        return self.replace(artifacts=self.artifacts + artifacts, skipped=self.skipped + skipped)

    def with_model(self, model: Any) -> RunState:
        """The state with a changed model (its reference outputs are then unknown)."""
        return self.replace(model=model, model_loader=None, reference_outputs=None)

    def with_info(self, stage: str, facts: Any) -> RunState:
        return self.replace(info={**self.info, stage: facts})

    def artifact(self, runtime: str, precision: str) -> Artifact | None:
        for a in self.artifacts:
            if a.runtime == runtime and a.precision == precision:
                return a
        return None
