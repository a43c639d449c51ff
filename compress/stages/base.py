"""The stage contract.

A stage is constructed from its parameters (validated up front, unknown keys refused) and has one
method, `run(state) -> state`: it reads what earlier stages produced and returns a new state with
its own output added. Stages keep no global state, so one stage run can move to another process
or machine.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from compress.core.errors import StageError, validation_error
from compress.core.state import RunState
from compress.keras.data import Dataset


class StageParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @classmethod
    def inherited(cls) -> dict[str, str]:
        """Parameters a pipeline gives this stage from another stage's setting, declared where
        the parameter is defined (`Field(..., json_schema_extra={"from": "verify.max_drift"})`):
        parameter -> `stage.param`. Set there unless the pipeline file sets it here."""
        return {
            name: extra["from"]
            for name, f in cls.model_fields.items()
            if isinstance(extra := f.json_schema_extra, dict) and "from" in extra
        }


class Stage:
    """Base class: subclasses set `name`, a `Params` model, and implement `run`."""

    name: ClassVar[str]
    Params: ClassVar[type[StageParams]] = StageParams
    cacheable: ClassVar[bool] = True  # its output may be reused by a later run (see runs/cache.py)
    produces_model: ClassVar[bool] = False  # it changes the Keras model (cache stores it)
    # The Keras artifact this stage saves the model it returns into, if any: the cache keeps
    # the model as that file instead of saving it twice.
    model_artifact: ClassVar[str | None] = None
    needs_model: ClassVar[bool] = True  # the pipeline loads the model before it runs
    # Parameters left out of the stage's cache key because they change its output only when
    # its own result says so (`reuses` decides; e.g. the fallback's drift budget).
    cache_ignores: ClassVar[tuple[str, ...]] = ()
    optional: ClassVar[bool] = False  # in a model's standard pipeline only when asked for

    def __init__(self, **params: Any) -> None:
        self.params = self.validate_params(params)

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> StageParams:
        """Validated parameters, or a UsageError naming `stage.param` and what was expected."""
        try:
            return cls.Params(**params)
        except ValidationError as exc:
            raise validation_error(exc, prefix=f"{cls.name}.") from None

    def run(self, state: RunState) -> RunState:
        raise NotImplementedError

    def reuses(self, info: dict[str, Any]) -> bool:
        """Whether a cached result of this stage (its `info` record) holds for these parameters,
        the `cache_ignores` ones included."""
        return True

    def changes_layers(self) -> bool:
        """Whether this stage, with its parameters, trains or rewrites the model's layers: it
        then needs a Keras model with its layers, not a SavedModel's signature."""
        return False

    def model(self, state: RunState) -> Any:
        """The Keras model this stage works on; a stage that changes it returns it in the state.
        (A pipeline materializes the model once; called alone, a stage loads it itself.)"""
        if state.model is not None:
            model = state.model
        elif state.model_loader is not None:
            model = state.model_loader()
        else:
            raise StageError(f"stage {self.name!r} needs a Keras model; run 'build' before it")
        if self.changes_layers():
            from compress.keras import signature

            signature.needs_layers(model, self.name)
        return model

    def data(self, state: RunState) -> Dataset:
        if state.data is None:
            raise StageError(f"stage {self.name!r} needs a data set; run 'build' before it")
        return state.data

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.model_dump().items())
        return f"{type(self).__name__}({args})"


def materialize(state: RunState) -> RunState:
    """Load or build the model, once, before a stage that runs needs it."""
    if state.model is None and state.model_loader is not None:
        return state.replace(model=state.model_loader(), model_loader=None)
    return state


def with_reference_outputs(state: RunState) -> RunState:
    """The state with the float model's outputs on the held-out split (verify's reference),
    computed after a stage changed the model."""
    from compress.backends.keras import KerasRunner

    data = state.data
    if state.model is None or data is None:
        return state
    return state.replace(reference_outputs=KerasRunner(state.model).predict(data.x_test))


def worker_for(state: RunState) -> Any:
    """The run's worker process (isolate.Worker) for steps that can crash natively; a stage
    run alone, outside a pipeline, uses the process's shared worker."""
    from compress.backends import worker as isolate

    return state.worker if state.worker is not None else isolate.shared()
