"""Loading saved Keras models safely: safe_mode on (no Lambda or other code from the file runs),
with compress's own custom layers registered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compress import _tf


def load_model(path: str | Path) -> Any:
    """Load a `.keras` file written by compress (or any model using only registered layers)."""
    keras = _tf.keras()
    if _uses_compress_layers(Path(path)):
        import compress.layers  # noqa: F401  (registers AttentionLayer for deserialization)

    return keras.models.load_model(str(path), safe_mode=True, compile=False)


def _uses_compress_layers(path: Path) -> bool:
    """Whether a .keras file's config names a compress layer. Reading config.json from the zip
    is cheap; importing compress.layers (and with it tfmot) is not."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            return b'"compress>' in zf.read("config.json")
    except (OSError, KeyError, zipfile.BadZipFile):
        return True  # let Keras report what is wrong with the file


def copy_model(model: Any) -> Any:
    """A fresh, uncompiled model with the same weights (tfmot's wrappers mutate the layers they
    wrap; a saved copy carries no optimizer state)."""
    keras = _tf.keras()
    fresh = keras.models.clone_model(model)
    fresh.set_weights(model.get_weights())
    return fresh


def save_model(model: Any, path: str | Path) -> None:
    """Save architecture and weights without the optimizer state (which triples an
    Adam-trained file)."""
    copy_model(model).save(str(path))
