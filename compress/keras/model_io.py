"""Reading and writing Keras files: the one module that loads a model.

A user's model is untrusted: it is identified from its bytes (never its extension), zip archives
are checked for path traversal and absurd uncompressed sizes before anything reads them, Keras
configs are scanned for layers that carry code (Lambda) before a model is built, and every load
runs with safe_mode. compress's own files (a run's `model.keras`, cache entries) load through the
same `load_model`, with compress's custom layers registered.
"""

from __future__ import annotations

import functools
import gc
import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from compress.core.errors import InputError, one_line

MAX_UNCOMPRESSED = 8 * 1024**3  # bytes a zip may expand to (the machine has 24 GiB)
MAX_RATIO = 1000  # uncompressed / compressed: beyond this a zip is a bomb, not a model
CODE_LAYERS = {"Lambda", "TFOpLambda", "SlicingOpLambda"}  # refused in SavedModel metadata
# Layers that record a TensorFlow op by its public API name (`x + y` is `__operators__.add`):
# tf_keras looks the name up in TensorFlow's API registry on loading; no code is deserialized.
# Allowed in .keras and HDF5 configs once the name is checked (op_symbol_problem, resolve_ops).
OP_LAYERS = {"TFOpLambda", "SlicingOpLambda"}
_SYMBOL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
# Public API symbols that reach outside the graph (files, Python callables, printing, raw ops):
# a model has no business calling them, so they are refused even though they resolve.
DENIED_NAMESPACES = {"io", "raw_ops", "compat", "debugging", "summary", "saved_model", "data",
                     "distribute", "config", "sysconfig", "experimental", "autograph", "lite",
                     "keras", "estimator", "train", "queue", "tpu", "profiler", "test"}  # fmt: skip
DENIED_SYMBOLS = {"py_function", "numpy_function", "py_func", "print", "Print", "write_file",
                  "read_file", "load_op_library", "load_library", "function", "Variable",
                  "eager_py_func"}  # fmt: skip
KERAS_FORMATS = ("keras", "h5", "savedmodel")


def detect(path: Path) -> str:
    """keras | h5 | savedmodel | onnx | tflite | zip | unknown, from the content."""
    path = Path(path)
    if path.is_dir():
        return "savedmodel" if (path / "saved_model.pb").is_file() else "unknown"
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        try:
            with zipfile.ZipFile(path) as zf:
                names = set(zf.namelist())
        except zipfile.BadZipFile:
            return "unknown"
        return "keras" if "config.json" in names else "zip"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "h5"
    if head[4:8] == b"TFL3":
        return "tflite"
    if _looks_like_onnx(path):
        return "onnx"
    return "unknown"


def _looks_like_onnx(path: Path) -> bool:
    if path.stat().st_size > 2 * 1024**3:
        return False
    try:
        from onnx import ModelProto

        proto = ModelProto()
        proto.ParseFromString(path.read_bytes())
        return proto.ir_version > 0 and len(proto.graph.node) > 0
    except Exception:
        return False


def check_zip(path: Path, what: str) -> None:
    """Refuse archive members that escape the archive or expand absurdly, before extraction."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except zipfile.BadZipFile as exc:
        raise InputError(f"{what} '{path.name}' is a corrupt zip archive: {exc}") from None
    total = 0
    for info in infos:
        name = info.filename
        if name.startswith(("/", "\\")) or ".." in Path(name).parts or ":" in name:
            raise InputError(f"{what} '{path.name}' has an unsafe member path {name!r}: refused")
        total += info.file_size
        if info.compress_size and info.file_size / info.compress_size > MAX_RATIO:
            raise InputError(
                f"{what} '{path.name}': member {name!r} expands {info.file_size:,} bytes from "
                f"{info.compress_size:,} (ratio > {MAX_RATIO}): refused as a zip bomb"
            )
    if total > MAX_UNCOMPRESSED:
        raise InputError(
            f"{what} '{path.name}' expands to {total:,} bytes (limit {MAX_UNCOMPRESSED:,}): refused"
        )


def scan_config(config: Any, where: str) -> None:
    """Refuse a Keras model config that would run code when built: Lambda layers, or classes
    from modules other than Keras (KerasHub when installed) and compress."""
    for node in _dicts(config):
        cls = node.get("class_name")
        name = _layer_name(node)
        layer = f" (layer {name!r})" if name else ""
        holds = f"{where} holds {cls} layer {name!r}" if name else f"{where} holds a {cls} layer"
        if cls in OP_LAYERS:
            problem = op_symbol_problem((node.get("config") or {}).get("function"))
            if problem:
                raise InputError(f"{holds} whose op {problem}: refused")
        elif cls in CODE_LAYERS:
            raise InputError(f"{holds}, whose code would run on loading: refused")
        module, registered = node.get("module"), node.get("registered_name")
        if (
            isinstance(registered, str)
            and ">" in registered
            and not trusted_registration(registered)
        ):
            raise InputError(
                f"{where} names class {cls!r}{layer} registered as {registered!r} (a user's "
                "custom class, not Keras's or compress's), which compress does not trust: refused"
            )
        if isinstance(module, str) and isinstance(cls, str) and not trusted_module(module):
            raise InputError(
                f"{where} names class {cls!r}{layer} from module {module!r}, which compress does "
                f"not trust (expected a class of {', '.join(trusted_roots())}): refused"
            )


_TRUSTED_ROOTS = ("keras", "tf_keras", "tensorflow", "compress", "builtins")


def trusted_registration(registered: str) -> bool:
    """A registered class name ("package>Class") a model file may name: compress's own, and
    KerasHub's when it is installed (it registers its models and layers when imported)."""
    package = registered.partition(">")[0]
    return package == "compress" or (package == "keras_hub" and package in trusted_roots())


@functools.cache
def trusted_roots() -> tuple[str, ...]:
    """The packages whose classes a model file may name: Keras (both), TensorFlow, compress, and
    KerasHub when it is installed (its models are Keras models)."""
    import importlib.util

    hub = importlib.util.find_spec("keras_hub") is not None
    return (*_TRUSTED_ROOTS, "keras_hub") if hub else _TRUSTED_ROOTS


def trusted_module(module: str) -> bool:
    """`module` is one of trusted_roots() or inside one (`keras.src.layers`, not `kerasx`)."""
    return any(module == root or module.startswith(root + ".") for root in trusted_roots())


def _layer_name(node: dict[str, Any]) -> str | None:
    """The name in a layer's config node, if it has one."""
    config = node.get("config")
    name = config.get("name") if isinstance(config, dict) else None
    return name if isinstance(name, str) else None


def op_symbol_problem(symbol: Any) -> str | None:
    """Why a TFOpLambda's recorded op name is not allowed (None if it is, as far as can be told
    without TensorFlow; resolve_ops checks it resolves)."""
    if not isinstance(symbol, str) or not _SYMBOL.match(symbol):
        return f"name {symbol!r} is not a TensorFlow API name"
    parts = symbol.split(".")
    if parts[0] in DENIED_NAMESPACES or parts[-1] in DENIED_SYMBOLS:
        return f"tf.{symbol} reaches outside the model's graph (files, Python code, printing)"
    return None


def _dicts(config: Any) -> Iterator[dict[str, Any]]:
    """Every dict nested anywhere in a JSON config (layers, their configs, nested models)."""
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def op_symbols(config: Any) -> list[str]:
    """The op names the config's TFOpLambda / SlicingOpLambda layers record."""
    return [(node.get("config") or {}).get("function") for node in _dicts(config)
            if node.get("class_name") in OP_LAYERS]  # fmt: skip


def resolve_ops(config: Any, where: str) -> None:
    """Every recorded op name resolves in TensorFlow's public API registry (the lookup tf_keras
    itself makes when it loads the layer) to a TensorFlow function."""
    symbols = op_symbols(config)
    if not symbols:
        return
    from compress.keras import _tf

    _tf.tf()
    from tensorflow.python.util import tf_export

    for symbol in symbols:
        target = tf_export.get_symbol_from_name(symbol)
        module = getattr(target, "__module__", "") or ""
        if target is None or not module.startswith("tensorflow"):
            raise InputError(
                f"{where} holds a TFOpLambda layer whose op tf.{symbol} is not in TensorFlow's "
                "public API: refused"
            )


def inspect_model_file(path: Path) -> str:
    """Every check that needs no framework: what the file is, that its archive is sane and that
    its config holds no code. Returns the kind (keras, h5, savedmodel: a tf_keras SavedModel,
    or signature: a SavedModel without Keras metadata, run through its serving signature).
    Fast (TensorFlow is imported for a signature only): run before any work, and again right
    before loading."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"model file '{path}' does not exist")
    kind = detect(path)
    where = f"model file '{path.name}'"
    if kind in ("onnx", "tflite"):
        raise InputError(
            f"{where} is a {kind.upper()} model; compress compresses Keras models "
            "(.keras, .h5 or a SavedModel directory) and exports TFLite and ONNX itself"
        )
    if kind not in KERAS_FORMATS:
        raise InputError(f"{where} is not a Keras model (.keras zip, HDF5 or SavedModel)")
    try:
        if kind in ("keras", "h5"):
            scan_config(model_config(path, kind), where)
        else:
            meta = path / "keras_metadata.pb"
            if not meta.is_file():  # Keras 3's model.export, or any TensorFlow SavedModel
                from compress.keras import signature

                signature.check(path)
                return "signature"
            blob = meta.read_bytes()
            for cls in CODE_LAYERS:
                if f'"class_name": "{cls}"'.encode() in blob:
                    raise InputError(
                        f"{where} holds a {cls} layer, whose code would run on loading: refused"
                    )
    except InputError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{where} is not a readable Keras model: {exc}") from None
    return kind


def model_config(path: Path, kind: str) -> Any:
    """The model config (JSON) of a .keras or HDF5 file, read without building anything."""
    where = f"model file '{path.name}'"
    if kind == "keras":
        check_zip(path, "model file")
        with zipfile.ZipFile(path) as zf:
            return json.loads(zf.read("config.json"))
    import h5py

    with h5py.File(path, "r") as f:
        raw = f.attrs.get("model_config")
    if raw is None:
        raise InputError(f"{where} is HDF5 without a model config (weights only?)")
    return json.loads(raw if isinstance(raw, str) else raw.decode())


def load_keras_model(path: Path) -> tuple[Any, Any]:
    """A user's Keras model in any of its formats, loaded without running code from the file:
    (the tf_keras model every stage uses, the Keras 3 model it was translated from or None). A
    Keras 3 model without a tf_keras translation comes back as its own SavedModel export's
    signature (the post-training path; `signature.needs_layers` says why in one line).
    Which Keras wrote a `.keras` file is read from the file's metadata."""
    from compress.keras import _tf, keras3

    path = Path(path)
    kind = inspect_model_file(path)
    where = f"model file '{path.name}'"
    is_keras3 = kind in ("keras", "h5") and keras3.is_keras3_file(path)
    if kind in ("keras", "h5") and not is_keras3:
        resolve_ops(model_config(path, kind), where)
    if kind == "signature":
        from compress.keras import signature

        return signature.load(path), None
    try:
        if is_keras3:
            original = keras3.load(path)
        elif kind == "keras":
            return load_model(path), None
        else:
            return _tf.keras().models.load_model(str(path), compile=False, safe_mode=True), None
    except Exception as exc:
        raise InputError(f"{where} cannot be loaded safely: {one_line(exc)}") from None
    try:
        return keras3.to_tf_keras(original), original
    except keras3.TranslationError as exc:
        reason = str(exc)
    except Exception as exc:
        reason = f"no tf_keras translation: {one_line(exc)}"
    # No tf_keras twin: the post-training path, through Keras 3's own SavedModel export (its
    # serving signature), proven against the Keras 3 model like a translation (stages/build.py).
    from compress.keras import signature

    try:
        directory = keras3.export_signature(original, path)
    except Exception as exc:
        raise InputError(
            f"{where} (Keras 3) has {reason}, and its SavedModel export failed: {one_line(exc)}"
        ) from None
    return signature.load(directory, reason=f"{where} (Keras 3): {reason}"), original


def load_model(path: str | Path) -> Any:
    """Load a `.keras` file written by compress (or any model using only registered layers),
    with safe_mode on: no Lambda or other code from the file runs."""
    from compress.keras import _tf, keras3

    if keras3.is_keras3_file(path):  # a Keras 3 user model's run file: its tf_keras twin
        return keras3.to_tf_keras(keras3.load(path))
    keras = _tf.keras()
    config = _config_json(Path(path))
    if config is None or b'"compress>' in config:
        # compress's layers (and tfmot with them) are imported only for a file that names them
        import compress.keras.layers  # noqa: F401  (registers AttentionLayer for deserialization)
        import compress.keras.signature  # noqa: F401  (a SavedModel's signature, see there)

    applications = config is not None and APPLICATIONS.encode() in config
    custom = _application_layers(config) if applications else {}
    return keras.models.load_model(str(path), safe_mode=True, compile=False, custom_objects=custom)


APPLICATIONS = "tf_keras.src.applications."  # Keras's own model zoo: its classes are Keras's


def _application_layers(raw: bytes) -> dict[str, Any]:
    """Layer classes that tf_keras's applications define without registering them (ConvNeXt's
    `LayerScale`): tf_keras cannot load its own ConvNeXt file without them. Only classes of
    tf_keras's applications package are looked up, by the module and name the config states."""
    import importlib

    from compress.keras import _tf

    try:
        config = json.loads(raw)
    except ValueError:
        return {}  # Keras reports what is wrong with the file
    base = _tf.keras().layers.Layer
    found = {}
    for node in _dicts(config):
        module, cls = node.get("module"), node.get("class_name")
        if (
            isinstance(module, str)
            and module.startswith(APPLICATIONS)
            and _SYMBOL.match(module)
            and isinstance(cls, str)
        ):
            target = getattr(importlib.import_module(module), cls, None)
            if isinstance(target, type) and issubclass(target, base):
                found[cls] = target
    return found


def _config_json(path: Path) -> bytes | None:
    """A .keras file's config.json, read from the zip without building anything (None: not
    readable; Keras then reports what is wrong with the file)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.read("config.json")
    except (OSError, KeyError, zipfile.BadZipFile):
        return None


def copy_model(model: Any) -> Any:
    """A fresh, uncompiled model with the same weights (tfmot's wrappers mutate the layers they
    wrap; a saved copy carries no optimizer state)."""
    from compress.keras import _tf

    fresh = _tf.keras().models.clone_model(model)
    fresh.set_weights(model.get_weights())
    return same_origin(fresh, model)


def same_origin(model: Any, like: Any) -> Any:
    """`model` (a copy or stripped version of `like`) saved in the Keras `like` came in: a
    translated Keras 3 model's config travels with every model made from it."""
    from compress.keras import keras3

    return keras3.mark(model, keras3.origin(like))


def wrapped_weight(wrapper: Any, weight: Any) -> Any | None:
    """The variable of a tfmot wrapper (QAT, pruning, clustering keep the layer's name) that
    holds `weight` of the unwrapped layer: same last name part (`kernel:0`), same shape."""
    suffix, shape = weight.name.split("/")[-1], tuple(weight.shape)
    return next(
        (t for t in wrapper.weights if t.name.split("/")[-1] == suffix and tuple(t.shape) == shape),
        None,
    )


def trained_weights_into(model: Any, trained: Any) -> Any:
    """A copy of the float `model` with the weights `trained` (its tfmot-wrapped twin, e.g.
    after quantization-aware training) ended with: the float graph, the fine-tuned values."""
    fresh = copy_model(model)
    for layer in fresh.layers:
        if not layer.weights:
            continue
        wrapper = trained.get_layer(layer.name)
        found = [wrapped_weight(wrapper, w) for w in layer.weights]
        if any(f is None for f in found):
            missing = [w.name for w, f in zip(layer.weights, found, strict=True) if f is None]
            raise ValueError(f"layer {layer.name!r}: no trained value for {', '.join(missing)}")
        layer.set_weights([f.numpy() for f in found])
    return fresh


def save_model(model: Any, path: str | Path) -> None:
    """Save architecture and weights without the optimizer state (which triples an
    Adam-trained file), in the Keras the model came in: a Keras 3 user's model as Keras 3."""
    from compress.keras import _tf, keras3
    from compress.measure.weights import float_weight_bytes

    copy = keras3.to_keras3(model) if keras3.origin(model) is not None else copy_model(model)
    try:
        copy.save(str(path))
    finally:
        weights = float_weight_bytes(copy)
        del copy
        if weights > _tf.COLLECT_ABOVE:
            # the copy is cyclic garbage that the collector, counting objects, not bytes, may
            # not reach for a long time: 1x the weights per save (a 600M-parameter run saves
            # twice before its exports, and the worker was OOM-killed beside it)
            gc.collect()
