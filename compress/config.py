"""Run configuration: one pydantic model, validated before any work starts.

Field names are the names used everywhere: the CLI flag (`--max-drift`), the report key
(`max_drift`) and the Python argument.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from compress.errors import UsageError

QuantizeMode = Literal["int8", "dynamic", "float16", "none"]
QUANTIZE_MODES: tuple[str, ...] = ("int8", "dynamic", "float16", "none")


class RunConfig(BaseModel):
    """Everything that determines a run. Stored verbatim in the manifest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    quantize: QuantizeMode = "int8"
    epochs: int | None = Field(
        None, ge=0, le=10_000, description="training epochs (None: the model's default)"
    )
    batch_size: int = Field(32, ge=1, le=65_536, description="training batch size")
    learning_rate: float | None = Field(
        None, gt=0.0, le=1.0, allow_inf_nan=False, description="Adam (None: the model's default)"
    )
    seed: int = Field(0, ge=0, le=2**31 - 1, description="seed for split, init and training")
    test_size: float = Field(0.2, gt=0.0, lt=1.0, description="held-out fraction")
    calibration_samples: int = Field(
        200, ge=1, le=100_000, description="training-split samples used to calibrate int8"
    )
    opset: int = Field(17, ge=13, le=18, description="ONNX opset (tf2onnx 1.17 works at 13-18)")
    threads: int = Field(1, ge=1, le=256, description="threads each runtime uses when timed")
    max_drift: float = Field(
        1.0, ge=0.0, allow_inf_nan=False, description="accuracy drop gate, percentage points"
    )
    min_speedup: float | None = Field(
        None, gt=0.0, allow_inf_nan=False, description="speedup gate vs fp32, batch 1"
    )
    out: Path = Path("artifacts")


def _describe(err: dict[str, Any]) -> str:
    ctx = err.get("ctx") or {}
    kind = err["type"]
    if kind == "greater_than_equal":
        return f"must be >= {ctx['ge']}"
    if kind == "greater_than":
        return f"must be > {ctx['gt']}"
    if kind == "less_than_equal":
        return f"must be <= {ctx['le']}"
    if kind == "less_than":
        return f"must be < {ctx['lt']}"
    if kind == "literal_error":
        return f"must be one of {ctx['expected']}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return "must be an integer"
    if kind in ("float_parsing", "float_type", "finite_number"):
        return "must be a finite number"
    if kind == "extra_forbidden":
        return "is not a known setting"
    if kind == "missing":
        return "is required"
    return str(err["msg"]).rstrip(".").lower()


def format_validation_error(exc: ValidationError, style: str = "key") -> str:
    """One line for the first problem: `--max-drift must be >= 0.0. Got -1 instead.`

    `style` "flag" spells keys as CLI flags, "key" as config keys.
    """
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"]) or "config"
    if style == "flag":
        key = "--" + key.replace("_", "-")
    line = f"{key} {_describe(err)}."
    if err["type"] != "missing":
        line += f" Got {err['input']!r} instead."
    return line


def make_config(style: str = "key", **values: Any) -> RunConfig:
    """Build a RunConfig, turning validation errors into one-line UsageErrors."""
    try:
        return RunConfig(**values)
    except ValidationError as exc:
        raise UsageError(format_validation_error(exc, style)) from None
