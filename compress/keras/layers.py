"""Custom Keras layers that compress ships, registered so `.keras` files holding them reload
(with safe_mode on) in any process that imports this module; `compress.load_model` does that.

The layers implement tfmot's hooks (PrunableLayer, ClusterableLayer, and a registered
QuantizeConfig) so that pruning, clustering and quantization-aware training reach their weights
instead of skipping them. Importing this module imports TensorFlow, not tfmot (1.4 s more of
every process that loads a model): `with_tfmot()` imports it, registers the layers with its
hook classes and defines their QuantizeConfig; every use of tfmot goes through it.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from compress.core import compat
from compress.keras import _tf

keras = _tf.keras()
tf = _tf.tf()


@keras.utils.register_keras_serializable(package="compress")
class AttentionLayer(keras.layers.Layer):  # tfmot hooks: with_tfmot
    """Additive attention pooling over time.

    W = Dense(units), V = Dense(1); score = V(tanh(W(x))) for each timestep;
    weights = softmax(score) over the time axis; output = sum over time of weights * x.
    Input (batch, time, features) -> output (batch, features).
    """

    def __init__(self, units: int, **kwargs) -> None:
        super().__init__(**kwargs)
        if not isinstance(units, int) or units < 1:
            raise ValueError(f"AttentionLayer units must be an integer >= 1. Got {units!r}.")
        self.units = units

    def build(self, input_shape) -> None:
        input_shape = tf.TensorShape(input_shape)
        if input_shape.rank != 3:
            raise ValueError(
                f"AttentionLayer expects input of rank 3 (batch, time, features). "
                f"Got shape {input_shape} instead."
            )
        features = int(input_shape[-1])
        # W = Dense(units) and V = Dense(1), held as the layer's own kernels and biases so that
        # tfmot's wrappers can reach them by attribute name (they replace `layer.<name>`).
        glorot = keras.initializers.GlorotUniform()
        self.W_kernel = self.add_weight("W_kernel", (features, self.units), initializer=glorot)
        self.W_bias = self.add_weight("W_bias", (self.units,), initializer="zeros")
        self.V_kernel = self.add_weight("V_kernel", (self.units, 1), initializer=glorot)
        self.V_bias = self.add_weight("V_bias", (1,), initializer="zeros")
        super().build(input_shape)

    def call(self, x):
        hidden = tf.tanh(tf.tensordot(x, self.W_kernel, axes=1) + self.W_bias)  # W(x)
        score = tf.tensordot(hidden, self.V_kernel, axes=1) + self.V_bias  # (batch, time, 1)
        weights = tf.nn.softmax(score, axis=1)  # over time
        return tf.reduce_sum(weights * x, axis=1)

    def compute_output_shape(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        return tf.TensorShape([input_shape[0], input_shape[-1]])

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units}

    # tfmot hooks: the two projection kernels are what pruning and clustering act on.
    def get_prunable_weights(self) -> list:
        return [self.W_kernel, self.V_kernel]

    def get_clusterable_weights(self) -> list:
        return [("W_kernel", self.W_kernel), ("V_kernel", self.V_kernel)]

    def get_clusterable_algorithm(self, weight_name):  # ClusterableLayer's default
        return None


@keras.utils.register_keras_serializable(package="compress")
class PositionEmbedding(keras.layers.Layer):  # tfmot hooks: with_tfmot
    """A learned embedding per position added to a sequence: (batch, time, d) -> same shape.
    Its table is one value per position and feature: nothing to prune or cluster."""

    def build(self, input_shape) -> None:
        input_shape = tf.TensorShape(input_shape)
        if input_shape.rank != 3 or input_shape[1] is None:
            raise ValueError(
                "PositionEmbedding expects input of rank 3 with a fixed length (batch, time, "
                f"features). Got shape {input_shape} instead."
            )
        self.table = self.add_weight(
            "table", (int(input_shape[1]), int(input_shape[2])),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
        )  # fmt: skip
        super().build(input_shape)

    def call(self, x):
        return x + self.table

    def get_prunable_weights(self) -> list:
        return []

    def get_clusterable_weights(self) -> list:
        return []

    def get_clusterable_algorithm(self, weight_name):  # ClusterableLayer's default
        return None


@keras.utils.register_keras_serializable(package="compress")
class SelfAttention(keras.layers.MultiHeadAttention):  # tfmot hooks: with_tfmot
    """MultiHeadAttention of a sequence over itself (causal: over its past only), called with one
    input (query = value = key), so tfmot's wrappers (one input each) can take it. Its four
    projection kernels (query, key, value, output) are what pruning and clustering act on: tfmot
    does not reach a MultiHeadAttention's inner EinsumDense layers on its own (its registry
    names the exact class). Clustering goes through tfmot's MHA wrapper, whose strip leaves the
    projections holding tensors instead of their variables: `after_strip_clustering` puts them
    back."""

    _PROJECTIONS = ("_query_dense", "_key_dense", "_value_dense", "_output_dense")

    def __init__(self, *args, causal: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.causal = causal  # each position attends to itself and earlier ones only (an LM)

    def build(self, input_shape) -> None:
        if not self._built_from_signature:
            self._build_from_signature(query=input_shape, value=input_shape)
        self.built = True

    def call(self, inputs, training=None):
        return super().call(inputs, inputs, training=training, use_causal_mask=self.causal)

    def get_config(self) -> dict:
        return {**super().get_config(), "causal": self.causal}

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_prunable_weights(self) -> list:
        return [d.kernel for d in self.projections()]

    def get_clusterable_weights(self) -> list:
        # dotted names: tfmot's MHA wrapper reads and sets them on the inner EinsumDense layers
        return [(f"{name}.kernel", getattr(self, name).kernel) for name in self._PROJECTIONS]

    def get_clusterable_algorithm(self, weight_name):  # ClusterableLayer's default
        return None

    def after_strip_clustering(self) -> None:
        """tfmot's MHA strip assigns the clustered values to the original kernel variables but
        leaves each projection's `kernel` a tensor, and tracks the variables on this layer under
        the dotted names: give each projection its variable back (first, as EinsumDense creates
        it, so the weight order is a fresh layer's), drop the dotted attributes."""
        for name in self._PROJECTIONS:
            variable = self.__dict__.get(f"{name}.kernel")
            if variable is None:
                continue
            dense = getattr(self, name)
            dense.kernel = variable
            tracked = compat.keras_trainable_weights(dense)
            tracked.insert(0, tracked.pop(next(i for i, w in enumerate(tracked) if w is variable)))
            delattr(self, f"{name}.kernel")

    def projections(self) -> list:
        return [getattr(self, name) for name in self._PROJECTIONS]


# Keras 3's activations whose tf_keras namesake computes something else or is missing: a Keras 3
# model's `activation="hard_silu"` translates to these (keras/keras3.py).
@keras.utils.register_keras_serializable(package="compress")
def hard_sigmoid(x: Any) -> Any:
    """Keras 3's hard sigmoid, relu6(x + 3) / 6 (tf_keras's is clip(0.2 x + 0.5, 0, 1))."""
    return tf.nn.relu6(x + 3.0) / 6.0


@keras.utils.register_keras_serializable(package="compress")
def hard_silu(x: Any) -> Any:
    """Keras 3's hard SiLU (hard swish, MobileNetV3's activation): x * hard_sigmoid(x)."""
    return x * hard_sigmoid(x)


@keras.utils.register_keras_serializable(package="compress")
def gelu_tanh(x: Any) -> Any:
    """GELU by its tanh approximation, as GPT-2 computes it (the reference LM's MLP): the exact
    GELU's Erfc has no ONNX operator, so tf2onnx cannot export it."""
    return tf.nn.gelu(x, approximate=True)


# The layers and activations, for loading a model file that holds them (registered above under
# these names).
CUSTOM_OBJECTS = {
    "compress>AttentionLayer": AttentionLayer,
    "compress>PositionEmbedding": PositionEmbedding,
    "compress>SelfAttention": SelfAttention,
    "compress>hard_sigmoid": hard_sigmoid,
    "compress>hard_silu": hard_silu,
    "compress>gelu_tanh": gelu_tanh,
}
_TFMOT: dict[str, Any] = {}  # with_tfmot's work, done once per process


def with_tfmot() -> ModuleType:
    """tfmot, with compress's layers registered as its PrunableLayer and ClusterableLayer (its
    wrappers check isinstance) and their QuantizeConfig defined: the one way compress imports
    tfmot (see quantize_configs)."""
    if "tfmot" in _TFMOT:
        return _TFMOT["tfmot"]
    tfmot = _tf.tfmot()
    for cls in CUSTOM_OBJECTS.values():
        if not isinstance(cls, type):  # an activation function
            continue
        tfmot.sparsity.keras.PrunableLayer.register(cls)
        tfmot.clustering.keras.ClusterableLayer.register(cls)
    quantizers = tfmot.quantization.keras.quantizers

    @keras.utils.register_keras_serializable(package="compress")
    class AttentionQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
        """Quantization-aware training of AttentionLayer: int8 per-tensor symmetric fake-quant of
        both kernels (as tfmot does for Dense) and of the pooled output."""

        def get_weights_and_quantizers(self, layer):
            def weight_quantizer():
                return quantizers.LastValueQuantizer(
                    num_bits=8, per_axis=False, symmetric=True, narrow_range=True
                )

            return [(layer.W_kernel, weight_quantizer()), (layer.V_kernel, weight_quantizer())]

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            layer.W_kernel, layer.V_kernel = quantize_weights

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return [
                quantizers.MovingAverageQuantizer(
                    num_bits=8, per_axis=False, symmetric=False, narrow_range=False
                )
            ]

        def get_config(self) -> dict:
            return {}

    _TFMOT["configs"] = {AttentionLayer: AttentionQuantizeConfig}
    _TFMOT["tfmot"] = tfmot
    return tfmot


def quantize_configs() -> dict[type, type]:
    """Layer class -> the QuantizeConfig class QAT annotates it with."""
    with_tfmot()
    return dict(_TFMOT["configs"])


def quantize_objects() -> dict[str, type]:
    """CUSTOM_OBJECTS and the QuantizeConfigs, for reading a QAT model."""
    configs = quantize_configs()
    return {**CUSTOM_OBJECTS, **{f"compress>{c.__name__}": c for c in configs.values()}}
