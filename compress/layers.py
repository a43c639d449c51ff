"""Custom Keras layers that compress ships, registered so `.keras` files holding them reload
(with safe_mode on) in any process that imports this module; `compress.load_model` does that.

Importing this module imports TensorFlow.
"""

from __future__ import annotations

from compress import _tf

keras = _tf.keras()
tf = _tf.tf()


@keras.utils.register_keras_serializable(package="compress")
class AttentionLayer(keras.layers.Layer):
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
        self.W = keras.layers.Dense(units, name="W")
        self.V = keras.layers.Dense(1, name="V")

    def build(self, input_shape) -> None:
        input_shape = tf.TensorShape(input_shape)
        if input_shape.rank != 3:
            raise ValueError(
                f"AttentionLayer expects input of rank 3 (batch, time, features). "
                f"Got shape {input_shape} instead."
            )
        self.W.build(input_shape)
        self.V.build(input_shape[:-1].concatenate([self.units]))
        super().build(input_shape)

    def call(self, x):
        score = self.V(tf.tanh(self.W(x)))  # (batch, time, 1)
        weights = tf.nn.softmax(score, axis=1)
        return tf.reduce_sum(weights * x, axis=1)

    def compute_output_shape(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        return tf.TensorShape([input_shape[0], input_shape[-1]])

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units}


CUSTOM_OBJECTS = {"compress>AttentionLayer": AttentionLayer}
