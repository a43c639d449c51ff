"""The search space of a tune and its points: what each dimension may take (checked as the stage
it sets would check it), the known-good corners tried first, and how a point becomes the
overrides of one `compress run`. Runtimes are the backend registry's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from compress.core.errors import UsageError

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

METRIC = {"size": "size_gzip_bytes", "latency": "latency_ms_b1"}  # objective -> measured field


def runtimes() -> tuple[str, ...]:
    """The runtimes a trial is judged in, in the registry's order (every exported backend)."""
    from compress.backends import exported

    return tuple(b.runtime for b in exported())


def post_training(space: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """The space without the dimensions that change a model's layers (prune, cluster, QAT): a
    SavedModel's signature takes post-training quantization only."""
    return {**space, "prune": [None], "cluster": [None], "qat": [False]}


def is_signature(model: str) -> bool:
    """Whether the target is a SavedModel without Keras metadata (see keras/signature.py)."""
    from compress.keras.model_io import inspect_model_file

    return Path(model).is_dir() and inspect_model_file(Path(model)) == "signature"


def encode_value(value: Any) -> Any:
    """A space value as Optuna and the tune record store it: None (a stage left out) is
    "none"; the one place this spelling is made."""
    return "none" if value is None else value


def decode_value(value: Any) -> Any:
    return None if value == "none" else value


def encode(params: dict[str, Any]) -> dict[str, Any]:
    return {k: encode_value(v) for k, v in params.items()}


def decode(params: dict[str, Any]) -> dict[str, Any]:
    return {k: decode_value(v) for k, v in params.items()}


def parse_objectives(text: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    bad = [p for p in parts if p not in OBJECTIVES]
    if not parts or bad or len(set(parts)) != len(parts):
        raise UsageError(
            f"objectives must be size, latency or size,latency. Got {text!r} instead.",
            key="objectives",
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
        space[key] = [decode_value(v) for v in values]
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


def suggest_point(trial: Any, space: dict[str, list[Any]]) -> dict[str, Any]:
    """Optuna's categorical choices must be plain values: None is spelled "none"."""
    params = {}
    for key, values in space.items():
        value = trial.suggest_categorical(key, [encode_value(v) for v in values])
        params[key] = decode_value(value)
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
