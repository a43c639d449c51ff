"""Reference model registry. Adding a model: one file with a `SPEC`, plus one entry below.

Model files import TensorFlow only inside `build()`, so listing models stays fast.
"""

from __future__ import annotations

from compress.core.errors import UsageError
from compress.keras.models import attention, cnn, lm, multitask, rnn, transformer
from compress.keras.models.base import ModelSpec

REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (cnn.SPEC, rnn.SPEC, attention.SPEC, multitask.SPEC, transformer.SPEC, lm.SPEC)
}


def unknown_model(name: str, targets: str = "") -> str:
    """The one message for a model name that is neither a reference model nor a file;
    `targets` names what else the caller accepts (e.g. "all, a pipeline file (.toml)")."""
    extra = f"{targets}, " if targets else ""
    return (
        f"unknown model {name!r}. Expected one of: {', '.join(REGISTRY)}, {extra}"
        "or a Keras model file (.keras, .h5, SavedModel directory)"
    )


def data_for_files(name: str) -> str:
    """The one message for data given with a reference model (it trains on its own data)."""
    own = "text" if REGISTRY[name].load is not None else "digits"
    return f"data is for Keras model files; reference model {name!r} trains on {own}"


def get(name: str) -> ModelSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UsageError(unknown_model(name)) from None


__all__ = ["REGISTRY", "ModelSpec", "data_for_files", "get", "unknown_model"]
