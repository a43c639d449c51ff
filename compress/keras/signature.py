"""A TensorFlow SavedModel's serving signature as a tf_keras model (the post-training path).

Keras 3's `model.export(dir)` (and any TensorFlow SavedModel) keeps no Keras config: only
traced graphs and their variables. The signature is wrapped in a tf_keras model of one layer,
`SignatureCall`, whose weights are the signature's variables, so export, every post-training
recipe and verify (against the signature's own outputs) run as for a Keras file. Stages that
change layers (train, prune, cluster, QAT, fine-tuning) refuse such a model in one line.

Safety: before TensorFlow loads anything, every op the signature can reach (its graph and the
functions it calls, transitively) is read from `saved_model.pb` and ops that reach outside the
graph (Python callbacks, file reads and writes, checkpoint I/O, printing) are refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from compress.core.errors import InputError, one_line

SIGNATURE = "serving_default"
DENIED_OPS = {
    "PyFunc", "PyFuncStateless", "EagerPyFunc", "ReadFile", "WriteFile", "MatchingFiles",
    "Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2", "RestoreSlice",
    "MergeV2Checkpoints", "Print", "PrintV2", "ImmutableConst", "LoadAndRemapMatrix",
    "DebugIdentity", "DebugIdentityV2", "DebugIdentityV3", "WriteRawProtoSummary",
}  # fmt: skip


def _meta_graph(path: Path) -> Any:
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString((path / "saved_model.pb").read_bytes())
    except Exception as exc:
        raise InputError(
            f"model '{path.name}': saved_model.pb is not a readable SavedModel: {one_line(exc)}"
        ) from None
    if not proto.meta_graphs:
        raise InputError(f"model '{path.name}': saved_model.pb holds no graph")
    return proto.meta_graphs[0]


def check(path: Path) -> None:
    """Refuse a SavedModel without a serving signature, or whose signature reaches an op that
    acts outside the graph, before TensorFlow loads it."""
    path = Path(path)
    meta = _meta_graph(path)
    where = f"model '{path.name}' (SavedModel)"
    if SIGNATURE not in meta.signature_def:
        found = ", ".join(sorted(k for k in meta.signature_def if not k.startswith("__")))
        raise InputError(
            f"{where} has no '{SIGNATURE}' signature (found: {found or 'none'}); compress runs a "
            "SavedModel through its serving signature"
        )
    for op, node, function in _reachable_ops(meta, meta.signature_def[SIGNATURE]):
        if op in DENIED_OPS:
            inside = f" in function '{function}'" if function else ""
            raise InputError(
                f"{where}: its signature runs op {op} (node '{node}'{inside}), which acts "
                "outside the model's graph (Python code, files, printing): refused"
            )


def _reachable_ops(meta: Any, signature: Any) -> Iterator[tuple[str, str, str | None]]:
    """(op type, node name, function or None) of every node the signature's outputs depend on,
    through the functions those nodes call (StatefulPartitionedCall, While, If ...)."""
    graph = meta.graph_def
    nodes = {n.name: n for n in graph.node}
    library = {f.signature.name: f for f in graph.library.function}
    pending = [t.name.split(":")[0].lstrip("^") for t in signature.outputs.values()]
    seen: set[str] = set()
    functions: list[str] = []
    while pending:
        name = pending.pop()
        if name in seen or name not in nodes:
            continue
        seen.add(name)
        node = nodes[name]
        yield node.op, node.name, None
        functions.extend(_called(node))
        pending.extend(i.split(":")[0].lstrip("^") for i in node.input)
    done: set[str] = set()
    while functions:
        fname = functions.pop()
        if fname in done:
            continue
        done.add(fname)
        if fname not in library:
            continue
        for node in library[fname].node_def:
            yield node.op, node.name, fname
            functions.extend(_called(node))
            if node.op in library:  # a function called by its name as the op
                functions.append(node.op)


def _called(node: Any) -> Iterator[str]:
    for value in node.attr.values():
        if value.HasField("func"):
            yield value.func.name
        for f in value.list.func:
            yield f.name


LOOP_OPS = {"While", "StatelessWhile", "TensorListReserve"}  # an RNN over time, traced


def has_loop(model: Any) -> bool:
    """Whether a wrapper model's signature runs a loop (an RNN layer, traced)."""
    fn = model.get_layer("signature").function
    library = fn.graph.as_graph_def().library.function
    return any(n.op in LOOP_OPS for f in library for n in f.node_def)


def load(path: Path, reason: str | None = None) -> Any:
    """The SavedModel's serving signature as a tf_keras model (checked first, see `check`).
    `reason`: why a Keras model runs as its export (stages that change layers quote it)."""
    from compress.keras import _tf

    path = Path(path).resolve()
    check(path)
    try:
        loaded = _tf.tf().saved_model.load(str(path))
        signature = loaded.signatures[SIGNATURE]
    except Exception as exc:
        raise InputError(
            f"model '{path.name}' (SavedModel) cannot be loaded: {one_line(exc)}"
        ) from None
    return wrap(signature, str(path), loaded, reason)


def wrap(signature: Any, directory: str, keep: Any = None, reason: str | None = None) -> Any:
    """A tf_keras model: one input per signature input (its name), one named output per
    signature output, the signature's call in between."""
    keras = _tf_keras()
    _, specs = signature.structured_input_signature
    names = sorted(specs)
    inputs = [
        keras.Input(batch_size=specs[n].shape[0], shape=specs[n].shape[1:], dtype=specs[n].dtype,
                    name=n)
        for n in names
    ]  # fmt: skip
    call = SignatureCall(directory=directory, input_keys=names, reason=reason, name="signature")
    call.attach(signature, keep)
    out = call(inputs)
    outputs = [keras.layers.Identity(name=k)(out[k]) for k in sorted(out)]
    return keras.Model(inputs, outputs, name=Path(directory).name)


def directory(model: Any) -> str | None:
    """The SavedModel a wrapper model calls (None: a Keras model with its layers)."""
    layers = getattr(model, "layers", ())
    return next((la.directory for la in layers if isinstance(la, SignatureCall)), None)


def why_exported(model: Any) -> str | None:
    """Why a Keras model runs as its own SavedModel export (a layer without a tf_keras
    counterpart), for a wrapper made with a reason; None otherwise."""
    layers = getattr(model, "layers", ())
    return next((la.reason for la in layers if isinstance(la, SignatureCall)), None)


def needs_layers(model: Any, stage: str) -> None:
    """Refuse, in one line, a stage that changes layers when the model is a SavedModel."""
    where = directory(model)
    if where is None:
        return
    reason = why_exported(model)
    if reason:
        raise InputError(
            f"stage '{stage}' needs a Keras model whose every layer has a tf_keras counterpart; "
            f"{reason}. The model runs the post-training path only (export, the post-training "
            "quantization recipes, verify)"
        )
    raise InputError(needs_layers_message(stage, Path(where)))


def needs_layers_message(stage: str, path: Path) -> str:
    return (
        f"stage '{stage}' needs a Keras model with its layers; '{Path(path).name}' is a "
        "SavedModel (graphs and weights only), which runs the post-training path: export, the "
        f"post-training quantization recipes and verify. Give the model's .keras file for {stage}"
    )


def _tf_keras() -> Any:
    from compress.keras import _tf

    return _tf.keras()


def _layer_base() -> type:
    return _tf_keras().layers.Layer


class SignatureCall(_layer_base()):  # type: ignore[misc]
    """Calls a SavedModel's serving signature; its weights are the signature's variables.
    Saved (inside compress only: the worker, the stage cache) as the directory it reads."""

    def __init__(
        self, directory: str, input_keys: list[str], reason: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.directory = directory
        self.input_keys = list(input_keys)
        self.reason = reason  # why a Keras model runs as its export (None: a user's SavedModel)
        self.function = None
        self.trainable = False

    def attach(self, signature: Any, keep: Any = None) -> None:
        self.function = signature
        self.owner = keep  # the loaded object owns the variables the signature captures
        self._non_trainable_weights.extend(signature.variables)

    def build(self, input_shape: Any) -> None:
        if self.function is None:  # from_config: load (and check) the directory again
            model = load(Path(self.directory), self.reason)
            inner = model.get_layer("signature")
            self.attach(inner.function, inner.owner)
        super().build(input_shape)

    def call(self, inputs: Any) -> Any:
        inputs = inputs if isinstance(inputs, list | tuple) else [inputs]
        return self.function(**dict(zip(self.input_keys, inputs, strict=True)))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "directory": self.directory,
                "input_keys": self.input_keys, "reason": self.reason}  # fmt: skip


_tf_keras().utils.register_keras_serializable(package="compress")(SignatureCall)
