"""Keras 3 models in: an exact translation into tf_keras, proven on the user's data, and back.

tfmot, the TFLite converter's Keras path and tf2onnx's Keras path need Keras 2 (tf_keras); a
user on TensorFlow >= 2.16 saves Keras 3 files. A Keras 3 model is rebuilt layer by layer from
its (already scanned) config as the same tf_keras layers with the same names, its op nodes
(`x + y` is `keras.src.ops.numpy.Add`) as the TensorFlow ops they name, and its weights copied
by layer name. The translation is proven before any stage uses it: both models run on samples
of the user's data and the largest absolute output difference must stay within
`TOLERANCE`; it is recorded for the report. A layer or op without a tf_keras counterpart is a
`TranslationError` naming it. The reverse direction (`to_keras3`) rebuilds the user's own
Keras 3 architecture from its config and copies the (pruned, clustered, fine-tuned) weights back
by layer name, so the `.keras` file a run writes loads in the Keras the user brought.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from compress.core.errors import InputError

TOLERANCE = 1e-4  # largest |keras3 - tf_keras| output difference a translation may show
# Keras 3 options tf_keras has no argument for, with the values that mean tf_keras's behaviour.
# `None` as the allowed value set: any value (a dropout seed changes no inference output).
_DROPPABLE: dict[str, tuple[Any, ...] | None] = {
    "seed": None, "lora_rank": (None,), "lora_alpha": (None,), "quantization_config": (None,),
    "optional": (False,), "rms_scaling": (False,), "flash_attention": (None, False),
    "use_cudnn": ("auto", True, False), "sparse": (False,), "ragged": (False,),
    "build_config": None, "input_axes": (None,), "output_axes": (None,), "use_gate": (False,),
    "sliding_window": (None,), "zero_output_for_mask": (False, True),
}  # fmt: skip
_LAYER_KWARGS = {"name", "trainable", "dtype", "input_dim", "input_shape", "batch_size",
                 "batch_input_shape", "weights", "activity_regularizer", "autocast",
                 "dynamic"}  # fmt: skip
_RENAMED = {("LeakyReLU", "negative_slope"): "alpha"}  # Keras 3 name -> tf_keras argument
# Keras 3 activation names whose tf_keras namesake differs or is missing -> compress's own
# (registered in keras/layers.py, computing what Keras 3 computes)
_ACTIVATIONS = {"hard_sigmoid": "compress>hard_sigmoid", "hard_silu": "compress>hard_silu",
                "hard_swish": "compress>hard_silu"}  # fmt: skip
_APPLICATIONS = "keras.src.applications."  # Keras 3's model zoo; tf_keras has the same classes
_MODELS = {"Functional", "Sequential", "Model"}


class TranslationError(InputError):
    """A Keras 3 layer, op or option with no tf_keras counterpart."""


def is_keras3_file(path: Any) -> bool:
    """Whether a `.keras` archive (its metadata.json) or an HDF5 file (its `keras_version`
    attribute) was written by Keras 3."""
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                version = str(json.loads(zf.read("metadata.json")).get("keras_version", ""))
        else:
            import h5py

            with h5py.File(path, "r") as f:
                raw = f.attrs.get("keras_version", "")
            version = raw if isinstance(raw, str) else raw.decode()
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return False
    return version.split(".")[0].isdigit() and int(version.split(".")[0]) >= 3


def keras3() -> Any:
    from compress.keras import _tf

    _tf.tf()
    import keras

    return keras


def load(path: Any) -> Any:
    """A scanned Keras 3 file, loaded by Keras 3 with safe_mode on."""
    return keras3().saving.load_model(str(path), compile=False, safe_mode=True)


# ---- ops: Keras 3 operation class -> the TensorFlow call on tf_keras tensors ------------------


def _ops() -> dict[str, Callable[[list[Any], dict[str, Any], dict[str, Any]], Any]]:
    from compress.keras import _tf

    tf = _tf.tf()

    def binary(fn: Callable[..., Any]) -> Callable[..., Any]:
        return lambda a, k, c: fn(a[0], a[1])

    def unary(fn: Callable[..., Any]) -> Callable[..., Any]:
        return lambda a, k, c: fn(a[0])

    def reduce(fn: Callable[..., Any]) -> Callable[..., Any]:
        return lambda a, k, c: fn(a[0], axis=c.get("axis"), keepdims=bool(c.get("keepdims")))

    return {
        "Add": binary(tf.math.add), "Subtract": binary(tf.math.subtract),
        "Multiply": binary(tf.math.multiply), "Divide": binary(tf.math.truediv),
        "TrueDivide": binary(tf.math.truediv), "Power": binary(tf.math.pow),
        "Maximum": binary(tf.math.maximum), "Minimum": binary(tf.math.minimum),
        "Matmul": binary(tf.linalg.matmul),
        "NotEqual": binary(tf.math.not_equal), "Equal": binary(tf.math.equal),
        "Greater": binary(tf.math.greater), "Less": binary(tf.math.less),
        "LogicalAnd": binary(tf.math.logical_and), "LogicalOr": binary(tf.math.logical_or),
        "Mean": reduce(tf.math.reduce_mean), "Sum": reduce(tf.math.reduce_sum),
        "Max": reduce(tf.math.reduce_max), "Min": reduce(tf.math.reduce_min),
        "Tanh": unary(tf.math.tanh), "Sigmoid": unary(tf.math.sigmoid),
        "Relu": unary(tf.nn.relu), "Exp": unary(tf.math.exp), "Sqrt": unary(tf.math.sqrt),
        "Square": unary(tf.math.square), "Abs": unary(tf.math.abs),
        "Negative": unary(tf.math.negative), "Log": unary(tf.math.log),
        "Softmax": lambda a, k, c: tf.nn.softmax(a[0], axis=c.get("axis", -1)),
        "Reshape": lambda a, k, c: tf.reshape(a[0], c["newshape"]),
        "Transpose": lambda a, k, c: tf.transpose(a[0], c.get("axes")),
        "Concatenate": lambda a, k, c: tf.concat(list(a[0]), axis=c.get("axis", 0)),
        "Stack": lambda a, k, c: tf.stack(list(a[0]), axis=c.get("axis", 0)),
        "ExpandDims": lambda a, k, c: tf.expand_dims(a[0], c["axis"]),
        "Squeeze": lambda a, k, c: tf.squeeze(a[0], c.get("axis")),
        "GetItem": lambda a, k, c: a[0][a[1] if not isinstance(a[1], list) else tuple(a[1])],
        "Cast": lambda a, k, c: tf.cast(a[0], c["dtype"]),
    }  # fmt: skip


# ---- configs ----------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A Keras 3 serialized value in the form tf_keras deserializes: dtype policies as their
    name, `{"module", "class_name", "config", "registered_name"}` objects as the legacy
    `{"class_name", "config"}`."""
    if isinstance(value, dict):
        if value.get("class_name") == "DTypePolicy":
            return value["config"]["name"]
        if "class_name" in value and isinstance(value.get("config"), dict):
            config = {k: v for k, v in value["config"].items() if not _droppable(k, v)}
            return {"class_name": value["class_name"], "config": _plain(config)}
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _droppable(key: str, value: Any) -> bool:
    allowed = _DROPPABLE.get(key, ())
    return key in _DROPPABLE and (allowed is None or value in allowed)


def _layer_config(cls: type, name: str, config: dict[str, Any]) -> dict[str, Any]:
    params = set(_LAYER_KWARGS)
    for klass in cls.__mro__:  # a V2 wrapper passes **kwargs on to its base
        if "__init__" in vars(klass):
            params |= set(inspect.signature(klass.__init__).parameters)
    out = {}
    for key, value in config.items():
        key = _RENAMED.get((cls.__name__, key), key)
        if key == "activation" and isinstance(value, str) and value in _ACTIVATIONS:
            import compress.keras.layers  # noqa: F401  (registers the activations)

            value = _ACTIVATIONS[value]
        if key in params:
            out[key] = _plain(value)
        elif _droppable(key, value):
            continue
        else:
            raise TranslationError(
                f"layer {name!r} ({cls.__name__}): Keras 3 option {key}={value!r} has no "
                "tf_keras counterpart"
            )
    return out


def _tk_layer(entry: dict[str, Any]) -> Any:
    from compress.keras import _tf

    tk = _tf.keras()
    cls_name, name = entry["class_name"], entry["config"].get("name", entry.get("name"))
    cls = getattr(tk.layers, cls_name, None)
    module = entry.get("module")
    if cls is None and isinstance(module, str) and module.startswith(_APPLICATIONS):
        # a class of Keras 3's applications (ConvNeXt's LayerScale): tf_keras's own, looked up
        # only in tf_keras's applications package, by the module and name the config states
        import importlib

        try:
            found = importlib.import_module("tf_keras.src.applications." +
                                            module.removeprefix(_APPLICATIONS))  # fmt: skip
        except Exception:  # no such module in tf_keras (or not a module name at all)
            found = None
        cls = getattr(found, cls_name, None)
        cls = cls if isinstance(cls, type) and issubclass(cls, tk.layers.Layer) else None
    if cls is None or not isinstance(cls, type):
        raise TranslationError(f"layer {name!r}: Keras 3 {cls_name} has no tf_keras counterpart")
    config = _layer_config(cls, name, entry["config"])
    if cls_name == "MultiHeadAttention":  # tf_keras's from_config pops these; built when called
        config = {"query_shape": None, "key_shape": None, "value_shape": None, **config}
    return cls.from_config(config)


# ---- the graph --------------------------------------------------------------------------------


def _args(value: Any, tensors: dict[tuple[str, int, int], Any]) -> Any:
    if isinstance(value, dict):
        kind = value.get("class_name")
        if kind == "__keras_tensor__":
            return tensors[tuple(value["config"]["keras_history"])]
        if kind == "__slice__":
            c = value["config"]
            return slice(c.get("start"), c.get("stop"), c.get("step"))
        if kind == "__ellipsis__":
            return Ellipsis
        if kind in ("__tensor__", "__numpy__"):
            c = value["config"]
            return np.asarray(c["value"], dtype=c.get("dtype"))
        return {k: _args(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_args(v, tensors) for v in value]
    return value


def _ready(value: Any, tensors: dict[tuple[str, int, int], Any]) -> bool:
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            return tuple(value["config"]["keras_history"]) in tensors
        return all(_ready(v, tensors) for v in value.values())
    if isinstance(value, list):
        return all(_ready(v, tensors) for v in value)
    return True


def _flat(refs: Any) -> list[tuple[str, int, int]]:
    """Output/input references of a config ([name, node, index], lists or dicts of them)."""
    if isinstance(refs, dict):
        return [r for v in refs.values() for r in _flat(v)]
    if isinstance(refs, list) and len(refs) == 3 and isinstance(refs[0], str):
        return [(refs[0], refs[1], refs[2])]
    return [r for v in refs for r in _flat(v)]


def _input(entry: dict[str, Any]) -> Any:
    from compress.keras import _tf

    c = entry["config"]
    shape = c.get("batch_shape") or c.get("batch_input_shape")
    return _tf.keras().Input(
        batch_shape=tuple(shape), dtype=_plain(c.get("dtype", "float32")), name=c["name"]
    )


def _sequential(config: dict[str, Any]) -> Any:
    from compress.keras import _tf

    entries = config["layers"]
    if entries and entries[0]["class_name"] == "InputLayer":
        x, entries = _input(entries[0]), entries[1:]
    else:
        shape = (config.get("build_input_shape") or
                 entries[0].get("build_config", {}).get("input_shape"))  # fmt: skip
        if shape is None:
            raise TranslationError(f"model {config.get('name')!r} has no input shape")
        x = _tf.keras().Input(batch_shape=tuple(shape))
    first = x
    for entry in entries:
        x = _make(entry)(x)
    return _tf.keras().Model(first, x, name=config.get("name"))


def _make(entry: dict[str, Any]) -> Any:
    """The tf_keras layer (or nested model) a Keras 3 config entry describes."""
    return _model(entry) if entry["class_name"] in _MODELS else _tk_layer(entry)


def _model(entry: dict[str, Any]) -> Any:
    if entry["class_name"] == "Sequential":
        return _sequential(entry["config"])
    return _functional(entry["config"])


def _functional(config: dict[str, Any]) -> Any:
    from compress.keras import _tf

    tk, ops = _tf.keras(), _ops()
    tensors: dict[tuple[str, int, int], Any] = {}
    pending: list[tuple[dict[str, Any], Any, int, dict[str, Any]]] = []
    for entry in config["layers"]:
        if entry["class_name"] == "InputLayer":
            tensors[(entry["name"], 0, 0)] = _input(entry)
            continue
        layer = None
        if entry.get("module", "").startswith("keras.src.ops"):
            if entry["class_name"] not in ops:
                raise TranslationError(
                    f"op {entry['name']!r}: Keras 3 keras.ops.{entry['class_name']} has no "
                    "tf_keras counterpart"
                )
        else:
            layer = _make(entry)
        for index, node in enumerate(entry["inbound_nodes"]):
            pending.append((entry, layer, index, node))
    while pending:
        ready = [p for p in pending if _ready(p[3], tensors)]
        if not ready:
            names = ", ".join(sorted({p[0]["name"] for p in pending}))
            raise TranslationError(f"model {config.get('name')!r}: cannot order layers {names}")
        for item in ready:
            entry, layer, index, node = item
            pending.remove(item)
            args = _args(node.get("args", []), tensors)
            # `training` is dropped: Keras 3 records the value a layer was built with (an LSTM's
            # `training=False`) but overrides it with the model's own when called; a tf_keras
            # node would keep it, freezing the layer in inference mode when fine-tuned (tfmot's
            # pruning masks never updated, dropout never on)
            kwargs = {k: v for k, v in _args(node.get("kwargs", {}), tensors).items()
                      if v is not None and k != "training"}  # fmt: skip
            if layer is None:
                out = ops[entry["class_name"]](args, kwargs, entry["config"])
            else:
                out = layer(*args, **kwargs)
            outs = out if isinstance(out, list | tuple) else [out]
            for j, t in enumerate(outs):
                tensors[(entry["name"], index, j)] = t
    inputs = [tensors[r] for r in _flat(config["input_layers"])]
    outputs = [tensors[r] for r in _flat(config["output_layers"])]
    return tk.Model(
        inputs[0] if len(inputs) == 1 else inputs,
        outputs[0] if len(outputs) == 1 else outputs,
        name=config.get("name"),
    )


def _copy_weights(src: Any, dst: Any) -> None:
    """Weights of every layer of `src` into the layer of `dst` with the same name (nested
    models recursively); a shape mismatch is a translation error naming the layer."""
    by_name = {layer.name: layer for layer in dst.layers}
    for layer in src.layers:
        if not layer.weights:
            continue
        target = by_name.get(layer.name)
        if target is None:
            raise TranslationError(f"layer {layer.name!r}: not found after translation")
        if hasattr(layer, "layers") and hasattr(target, "layers"):
            _copy_weights(layer, target)
            continue
        values = layer.get_weights()
        shapes = [tuple(w.shape) for w in target.weights]
        if [v.shape for v in values] != shapes:
            raise TranslationError(
                f"layer {layer.name!r} ({type(layer).__name__}): weights "
                f"{[v.shape for v in values]} do not fit the tf_keras layer's {shapes}"
            )
        target.set_weights(values)


def to_tf_keras(model: Any) -> Any:
    """The tf_keras twin of a Keras 3 model: same layers, names and weights. The Keras 3 config
    travels with it (`ORIGIN`), so saving it writes a Keras 3 file again."""
    serialized = json.dumps(keras3().saving.serialize_keras_object(model))
    config = json.loads(serialized)  # the form a file holds: lists, not tuples
    if config.get("class_name") not in _MODELS or "layers" not in (config.get("config") or {}):
        raise TranslationError(
            f"{config.get('class_name')} (module {config.get('module')}) is a subclassed model "
            "that records no layer graph, so it has no tf_keras counterpart"
        )
    twin = _model(config)
    _copy_weights(model, twin)
    mark(twin, serialized)
    return twin


ORIGIN = "_compress_keras3_config"  # attribute a translated tf_keras model carries


def mark(model: Any, config: str | None) -> Any:
    if config is not None:
        setattr(model, ORIGIN, config)
    return model


def origin(model: Any) -> str | None:
    """The Keras 3 config a tf_keras model was translated from (None: a tf_keras model)."""
    return getattr(model, ORIGIN, None)


def to_keras3(model: Any) -> Any:
    """The user's Keras 3 architecture (from the config `model` carries) with `model`'s
    weights, copied by layer name."""
    keras = keras3()
    rebuilt = keras.saving.deserialize_keras_object(json.loads(origin(model)), safe_mode=True)
    _copy_weights(model, rebuilt)
    return rebuilt


def max_difference(keras3_model: Any, twin: Any, x: Any) -> float:
    """The largest |output difference| of the two models on `x` (all outputs, flattened in
    each model's output order)."""
    a = _named(keras3_model, keras3_model.predict(x, batch_size=32, verbose=0))
    b = _named(twin, twin.predict(x, batch_size=32, verbose=0))
    # by output name where both models name the same outputs (an export's signature sorts them)
    same = set(a) == set(b)
    pairs = [(a[k], b[k]) for k in a] if same else zip(a.values(), b.values(), strict=False)
    return max(float(np.max(np.abs(np.asarray(p) - np.asarray(q)))) for p, q in pairs)


def _named(model: Any, out: Any) -> dict[str, Any]:
    if isinstance(out, dict):
        return dict(out)
    out = list(out) if isinstance(out, list | tuple) else [out]
    names = list(getattr(model, "output_names", None) or [])
    names = names if len(names) == len(out) else [str(i) for i in range(len(out))]
    return dict(zip(names, out, strict=True))


EXPORTS = "compress-keras3-exports"  # under the temp directory: one SavedModel per file content


def export_signature(model: Any, source: Any) -> Path:
    """The post-training path of a Keras 3 model that has no tf_keras translation: Keras 3's own
    SavedModel export of it, whose serving signature takes the model's input names and returns
    its output names (Keras's `model.export` would name list outputs `output_0`, ...). Written
    once per file content (the `.keras` file's sha256) under the temp directory, atomically:
    later runs and the stage cache find the same directory."""
    import os
    import secrets
    import shutil

    from compress.core.fileio import sha256_file, shared_temp

    # <content>/<file stem>: the directory's name is the model's name in every artifact
    root = shared_temp() / EXPORTS / sha256_file(Path(source))[:32]
    target = root / Path(source).stem
    if (target / "saved_model.pb").is_file():
        return target
    archive = _archive(model)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{target.name}-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        archive.write_out(str(tmp), verbose=False)
        os.replace(tmp, target)
    except OSError:  # another run wrote it first
        if not (target / "saved_model.pb").is_file():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _archive(model: Any, batch: int | None = None, twin: Any = None) -> Any:
    """Keras 3's ExportArchive of `model`'s inference with one serving signature that takes the
    model's input names and returns its output names (`twin`'s, a tf_keras model with the same
    inputs and outputs, when given). `batch`: a fixed batch size (the TFLite converter fuses a
    recurrent layer only at a static batch)."""
    from compress.keras import _tf

    tf = _tf.tf()
    inputs = list(model.inputs)
    in_names = list(twin.input_names) if twin is not None else [t.name for t in inputs]
    out_names = list(twin.output_names) if twin is not None else _output_names(model)
    specs = [
        tf.TensorSpec((batch, *t.shape[1:]), t.dtype, name=n)
        for t, n in zip(inputs, in_names, strict=True)
    ]

    def serve(*args: Any) -> dict[str, Any]:
        feed = args[0] if len(args) == 1 else dict(zip(in_names, args, strict=True))
        out = model(feed, training=False)
        if isinstance(out, dict):
            return {n: out[n] for n in out_names}
        out = out if isinstance(out, list | tuple) else [out]
        return dict(zip(out_names, out, strict=True))

    archive = keras3().export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serve, input_signature=specs)
    return archive


def _output_names(model: Any) -> list[str]:
    """A Keras 3 model's output names: a Functional model's `output_names`; a Sequential has
    none, and its one output is named after its last layer (as tf_keras names it)."""
    names = getattr(model, "output_names", None)
    return list(names) if names else [model.layers[-1].name]


QUANTIZE_MODES = ("int8", "int4")  # Keras 3's own quantizers that compress measures as recipes
# What a recipe row that uses them does (the backends' tables add how the file is made)
QUANTIZER = (
    "Keras 3's own model.quantize('{mode}'): Dense, EinsumDense and Embedding weights in {mode}, "
    "activations quantized at run time, other layers float; its SavedModel export"
)


@contextmanager
def quantized(model: Any, mode: str, batch: int | None = None) -> Iterator[Any]:
    """Keras 3's own quantizer (`model.quantize(mode)`: Dense, EinsumDense and Embedding weights
    in int8 or int4, activations quantized at run time) applied to the user's Keras 3
    architecture with `model`'s weights (a tf_keras twin of a Keras 3 model), exported as a
    SavedModel and given as a signature wrapper (a tf_keras model that both converters take).
    The export lives as long as the context."""
    import tempfile
    import warnings

    from compress.keras import signature

    if origin(model) is None:
        raise ValueError("Keras 3's quantizers need a model that came from Keras 3")
    if mode not in QUANTIZE_MODES:
        raise ValueError(f"Keras 3 quantize mode must be one of {QUANTIZE_MODES}. Got {mode!r}")
    rebuilt = to_keras3(model)
    with warnings.catch_warnings():
        # "Layer Conv2D does not have a `quantize` method implemented": those stay float
        warnings.filterwarnings("ignore", message=r".*does not have a `quantize` method")
        rebuilt.quantize(mode)
    with tempfile.TemporaryDirectory(prefix="compress-keras3-quantized-") as tmp:
        target = Path(tmp) / (model.name or "model")
        _archive(rebuilt, batch, twin=model).write_out(str(target), verbose=False)
        yield signature.load(target)
