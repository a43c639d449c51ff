"""build: the reference model (untrained) and its data set with the held-out split."""

from __future__ import annotations

from pydantic import Field

from compress import _tf, models
from compress.data import load_digits
from compress.errors import StageError
from compress.stages.base import RunState, Stage, StageParams


class BuildParams(StageParams):
    model: str
    seed: int = Field(0, ge=0)
    test_size: float = Field(0.2, gt=0.0, lt=1.0)
    calibration_samples: int = Field(200, ge=1)


class Build(Stage):
    name = "build"
    Params = BuildParams

    def run(self, state: RunState) -> RunState:
        p = self.params
        spec = models.get(p.model)
        _tf.keras().utils.set_random_seed(p.seed)
        model = spec.build()
        data = load_digits(
            spec.layout,
            spec.targets,
            seed=p.seed,
            test_size=p.test_size,
            calibration_samples=p.calibration_samples,
        )
        missing = set(data.heads) - set(model.output_names)
        if missing:
            raise StageError(f"model {spec.name!r} has no output named {sorted(missing)}")
        info = {"parameters": int(model.count_params()), "dataset": data.name}
        return state.replace(
            model_name=spec.name, model=model, data=data, info={**state.info, "build": info}
        )
