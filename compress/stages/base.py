"""The stage contract.

A stage is constructed from its parameters (validated up front, unknown keys refused) and has one
method, `run(state) -> state`: it reads what earlier stages produced and returns a new state with
its own output added. Stages keep no global state, so one stage run can move to another process
or machine.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from compress.config import format_validation_error
from compress.data import Dataset
from compress.errors import StageError, UsageError


@dataclass(frozen=True)
class Artifact:
    """One file a run produced, and how it is run."""

    name: str  # file name inside the run directory, e.g. model_int8.tflite
    path: Path
    format: str  # keras | tflite | onnx
    runtime: str  # keras | litert | onnxruntime
    precision: str  # fp32 | int8 | dynamic | float16
    recipe: str  # how it was made, in words
    options: dict[str, bool] = field(default_factory=dict)  # runner options (e.g. reset_state)
    left_float: tuple[str, ...] = ()  # op types whose weights a quantizer left in float32
    # Properties of the file's bytes (gzip size, weight statistics), measured when it is
    # written: deterministic in its content, so a cached artifact keeps them.
    facts: dict[str, Any] = field(default_factory=dict)

    def measured(self, model: Any = None) -> Artifact:
        """This artifact with its facts counted from the file (`model`: for a Keras file)."""
        from compress.weights import file_facts

        return dataclasses.replace(self, facts=file_facts(self.path, self.format, model))


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
    data: Dataset | None = None
    model: Any = None  # the float tf_keras Model
    model_file: Path | None = None  # where to load `model` from when a cached stage restored it
    artifacts: tuple[Artifact, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    verification: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)  # per-stage facts for the report

    def replace(self, **changes: Any) -> RunState:
        return dataclasses.replace(self, **changes)

    def add(
        self, artifacts: tuple[Artifact, ...] = (), skipped: tuple[Skipped, ...] = ()
    ) -> RunState:
        return self.replace(artifacts=self.artifacts + artifacts, skipped=self.skipped + skipped)

    def artifact(self, runtime: str, precision: str) -> Artifact | None:
        for a in self.artifacts:
            if a.runtime == runtime and a.precision == precision:
                return a
        return None

    def materialize(self) -> RunState:
        """Load the model a cache restore left on disk, before a stage that runs needs it."""
        if self.model is None and self.model_file is not None:
            from compress.loading import load_model

            return self.replace(model=load_model(self.model_file), model_file=None)
        return self

    def require_model(self, stage: str) -> Any:
        if self.model is None:
            raise StageError(f"stage {stage!r} needs a Keras model; run 'build' before it")
        return self.model

    def require_data(self, stage: str) -> Dataset:
        if self.data is None:
            raise StageError(f"stage {stage!r} needs a data set; run 'build' before it")
        return self.data


def one_line(exc: BaseException) -> str:
    """`TypeName: first line of the message`, for one-line reports of a library's failure."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


class StageParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Stage:
    """Base class: subclasses set `name`, a `Params` model, and implement `run`."""

    name: ClassVar[str]
    Params: ClassVar[type[StageParams]] = StageParams
    cacheable: ClassVar[bool] = True  # its output may be reused by a later run (see cache.py)
    produces_model: ClassVar[bool] = False  # it changes the Keras model (cache stores it)

    def __init__(self, **params: Any) -> None:
        self.params = self.validate_params(params)

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> StageParams:
        """Validated parameters, or a UsageError naming `stage.param` and what was expected."""
        try:
            return cls.Params(**params)
        except ValidationError as exc:
            raise UsageError(f"{cls.name}.{format_validation_error(exc)}") from None

    def run(self, state: RunState) -> RunState:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.model_dump().items())
        return f"{type(self).__name__}({args})"
