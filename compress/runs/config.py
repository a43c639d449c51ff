"""Run configuration: the pipeline file format, CLI flag overrides, and one-line validation errors.

A pipeline is a model (a reference model name or a `.keras` file), optional data, a seed, an
output directory, and named stages in order, each with its parameters:

    model = "cnn"
    seed = 0

    [stages.build]
    [stages.train]
    epochs = 5
    [stages.export_tflite]
    [stages.export_onnx]
    opset = 17
    [stages.quantize]
    mode = "int8"
    [stages.verify]
    max_drift = 1.0

`compress run cnn --quantize int8` means exactly `PipelineConfig.for_model("cnn")` with
`quantize.mode = "int8"`; flags and `--set stage.param=value` override file values. Names are the
same everywhere: the flag `--max-drift` is the key `verify.max_drift` and the report's `max_drift`.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from compress.core.errors import UsageError, validation_error

# CLI flag -> (stage, parameter); `None` stage means a top-level key.
FLAG_KEYS: dict[str, tuple[str | None, str]] = {
    "quantize": ("quantize", "mode"),
    "objective": ("quantize", "objective"),
    "prune": ("prune", "sparsity"),
    "cluster": ("cluster", "clusters"),
    "epochs": ("train", "epochs"),
    "opset": ("export_onnx", "opset"),
    "threads": (None, "threads"),
    "max_drift": ("verify", "max_drift"),
    "max_error": ("verify", "max_error"),
    "max_ppl_increase": ("verify", "max_ppl_increase"),
    "size": ("build", "size"),
    "task": ("verify", "task"),
    "min_speedup": ("verify", "min_speedup"),
    "seed": (None, "seed"),
    "out": (None, "out"),
    "data": (None, "data"),
}


class PipelineConfig(BaseModel):
    """A validated pipeline: what a pipeline file holds, and what CLI flags build."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    model: str = Field(min_length=1, description="reference model name or path to a .keras file")
    data: str | None = Field(None, description=".npz file with the data (user models)")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="seed for split, init and training")
    threads: int = Field(
        1, ge=1, description="threads of every timing: verify, the recipe search (a stage's own "
        "`threads` overrides it)"
    )  # fmt: skip
    out: str = Field("artifacts", min_length=1, description="output directory")
    stages: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="stage name -> parameters, in run order"
    )

    @classmethod
    def for_model(cls, model: str, overrides: dict[str, Any] | None = None) -> PipelineConfig:
        """The standard pipeline (build, train, export both formats, quantize int8, verify)
        for a reference model or a .keras file, with `overrides` (see with_overrides). Prune
        and cluster stages join it (in their place) when an override names them."""
        from compress.stages import REGISTRY  # in run order

        overrides = overrides or {}
        asked = {key.partition(".")[0] for key in overrides}
        names = [n for n, cls in REGISTRY.items() if not cls.optional or n in asked]
        raw = {"model": model, "stages": {name: {} for name in names}}
        return make(**apply_overrides(raw, overrides))

    def with_overrides(self, overrides: dict[str, Any]) -> PipelineConfig:
        """Apply `key -> value` overrides where key is `stage.param` or a top-level key."""
        return make(**apply_overrides(self.model_dump(), overrides))


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of a raw (unvalidated) config dict with `stage.param` / top-level keys set."""
    data = dict(raw)
    stages = raw.get("stages")
    stages = {n: dict(p) for n, p in stages.items()} if isinstance(stages, dict) else stages
    top_keys = [k for k in PipelineConfig.model_fields if k != "stages"]
    for key, value in overrides.items():
        stage, sep, param = key.partition(".")
        if not sep:
            if key not in top_keys:
                expected = ", ".join(top_keys)
                raise UsageError(
                    f"{key}: unknown key. Expected stage.param or one of {expected}", key=key
                )
            data[key] = value
        elif not isinstance(stages, dict) or stage not in stages:
            names = ", ".join(stages) if isinstance(stages, dict) else "none"
            raise UsageError(
                f"{key}: the pipeline has no stage {stage!r} (its stages: {names})", key=key
            )
        else:
            stages[stage][param] = value
    if stages is not None:
        data["stages"] = stages
    return data


def make(**values: Any) -> PipelineConfig:
    """Build a PipelineConfig and check every stage's parameters, before any work."""
    try:
        config = PipelineConfig(**values)
    except ValidationError as exc:
        raise validation_error(exc) from None
    check_inputs(config)
    resolve_stages(config)
    return config


def check_inputs(config: PipelineConfig) -> None:
    """The model and data exist and go together (a reference model trains on its own data)."""
    from compress.keras import models

    if config.model in models.REGISTRY:
        if config.data is not None:
            raise UsageError(models.data_for_files(config.model), key="data")
        return
    model = Path(config.model)
    if not model.exists():
        if model.suffix in (".keras", ".h5", ".hdf5"):
            raise UsageError(f"model file '{config.model}' does not exist")
        raise UsageError(models.unknown_model(config.model))
    from compress.keras.model_io import inspect_model_file

    if inspect_model_file(model) == "signature":  # what it is, archive sanity, no code in it
        from compress.keras.signature import needs_layers_message
        from compress.stages import REGISTRY

        for name, params in resolve_stages(config):
            if REGISTRY[name](**params).changes_layers():
                raise UsageError(needs_layers_message(name, model))
    if config.data is None:
        message = f"data is required: model file '{config.model}' needs an .npz"
        raise UsageError(message, key="data")
    if not Path(config.data).is_file():
        raise UsageError(f"data file '{config.data}' does not exist")


def target_configs(target: str, overrides: dict[str, Any] | None = None) -> list[PipelineConfig]:
    """Validated configs for what `compress run` takes: a reference model, `all` (one config per
    reference model), a pipeline file (.toml) or a Keras model file; before any work."""
    from compress.keras import models

    overrides = overrides or {}
    if target == "all":  # a size (build.size) is for the models that come in sizes
        return [
            PipelineConfig.for_model(
                n, {k: v for k, v in overrides.items() if k != "build.size" or spec.sizes}
            )
            for n, spec in models.REGISTRY.items()
        ]
    if target.endswith(".toml"):
        return [load_pipeline_file(target, overrides)]
    if target in models.REGISTRY or Path(target).exists() or target.endswith((".keras", ".h5")):
        return [PipelineConfig.for_model(target, overrides)]  # a file's kind is read from it
    raise UsageError(models.unknown_model(target, "all, a pipeline file (.toml)"))


def load_pipeline_file(path: str | Path, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Read a pipeline file, apply `overrides` (CLI flags), and validate it fully; errors name
    the file and the key."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"pipeline file '{path}' does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"pipeline file '{path}' cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    if "model" in raw and isinstance(raw["model"], str) and raw["model"].endswith(".keras"):
        raw["model"] = _relative_to(path, raw["model"])
    if isinstance(raw.get("data"), str):
        raw["data"] = _relative_to(path, raw["data"])
    try:
        return make(**apply_overrides(raw, overrides or {}))
    except UsageError as exc:
        raise UsageError(f"{path}: {exc}", key=exc.key) from None


def _relative_to(file: Path, value: str) -> str:
    """Paths in a pipeline file are relative to the file, unless absolute."""
    p = Path(value)
    return str(p if p.is_absolute() else file.parent / p)


def resolve_stages(config: PipelineConfig) -> list[tuple[str, dict[str, Any]]]:
    """Each stage's full parameters: the file's, plus what the top level and the model imply
    (model, data and seed for build; seed and the model's default epochs for train).
    Validates every stage's parameters (UsageError naming `stage.param`)."""
    from compress import stages
    from compress.keras import models

    if not config.stages:
        raise UsageError("stages must list at least one stage")
    resolved = []
    for name, params in config.stages.items():
        cls = stages.REGISTRY.get(name)
        if cls is None:
            raise UsageError(
                f"unknown stage {name!r}. Expected one of: {', '.join(stages.REGISTRY)}"
            )
        params = dict(params)
        for injected in ("model", "data") if name == "build" else ():
            if injected in params:
                raise UsageError(f"build.{injected} is set by the top-level key {injected!r}")
        if name == "build":
            params.update(model=config.model, data=config.data)
        if name == "train" and config.model in models.REGISTRY:
            spec = models.REGISTRY[config.model]
            size = spec.size(config.stages.get("build", {}).get("size")) if spec.sizes else None
            params.setdefault("epochs", size.epochs if size else spec.epochs)
            params.setdefault("learning_rate", spec.learning_rate)
        elif name == "train":
            params.setdefault("epochs", 0)  # a user's model is taken as trained unless asked
        for shared in ("seed", "threads"):  # top-level keys every stage that has them takes
            if shared in cls.Params.model_fields:
                params.setdefault(shared, getattr(config, shared))
        cls.validate_params(params)
        resolved.append((name, params))
    by_name = dict(resolved)
    for name, params in resolved:
        # what a stage takes from another stage's setting, as its parameter declares it; set
        # after validation, so a bad value is reported under the key the user wrote
        for param, source in stages.REGISTRY[name].Params.inherited().items():
            stage, _, field = source.partition(".")
            if stage in by_name and param not in config.stages[name]:
                default = stages.REGISTRY[stage].Params.model_fields[field].default
                params[param] = by_name[stage].get(field, default)
    return resolved
