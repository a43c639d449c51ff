"""Reference model registry. Adding a model: one file with a `SPEC`, plus one entry below.

Model files import TensorFlow only inside `build()`, so listing models stays fast.
"""

from __future__ import annotations

from compress.core.errors import UsageError
from compress.keras.models import attention, cnn, multitask, rnn, transformer
from compress.keras.models.base import ModelSpec

REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (cnn.SPEC, rnn.SPEC, attention.SPEC, multitask.SPEC, transformer.SPEC)
}


def get(name: str) -> ModelSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UsageError(
            f"unknown model {name!r}. Expected one of: {', '.join(REGISTRY)}"
        ) from None


__all__ = ["REGISTRY", "ModelSpec", "get"]
