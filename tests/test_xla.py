"""Tests of the XLA helpers behind `StochasticDepthBlock`'s fast conditional."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from stochastic_depth_tf import _xla


@pytest.mark.parametrize(
    "padding, kernel",
    [("SAME", 1), ("SAME", 3), ("SAME", 4), ("VALID", 3), ([[0, 0], [2, 0], [1, 1], [0, 0]], 3)],
)
def test_canonical_gradients_equal_autodiff(padding, kernel):
    rng = np.random.default_rng(kernel)
    x = tf.constant(rng.normal(size=(2, 9, 8, 5)).astype("float32"))
    w = tf.constant(rng.normal(size=(kernel, kernel, 5, 7)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch([x, w])
        y = tf.nn.conv2d(x, w, 1, padding)
    upstream = tf.constant(rng.normal(size=y.shape).astype("float32"))
    x_expected, w_expected = tape.gradient(y, [x, w], upstream)

    @tf.function
    def rewritten():
        with _xla.canonical_conv2d_gradient_scope():
            with tf.GradientTape() as inner:
                inner.watch([x, w])
                out = tf.nn.conv2d(x, w, 1, padding)
        return inner.gradient(out, [x, w], upstream)

    x_got, w_got = rewritten()
    np.testing.assert_allclose(x_got, x_expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(w_got, w_expected, rtol=1e-4, atol=1e-4)


def test_under_xla_detects_jit_compile_only():
    seen = {}

    @tf.function(jit_compile=True)
    def compiled():
        seen["xla"] = _xla.under_xla()
        return tf.constant(0)

    @tf.function
    def graph():
        seen["graph"] = _xla.under_xla()
        return tf.constant(0)

    compiled(), graph()
    assert seen == {"xla": True, "graph": False}
    assert _xla.under_xla() is False


@pytest.mark.parametrize(
    "layer, fast",
    [
        (keras.layers.Conv2D(4, 3, padding="same"), True),
        (keras.layers.Dense(4), True),
        (keras.layers.Conv2D(4, 3, strides=2, padding="same"), False),
        # TensorFlow runs a dilated Keras Conv2D as space-to-batch around a
        # plain stride-1 Conv2D, which the rewrite covers.
        (keras.layers.Conv2D(4, 3, dilation_rate=2, padding="same"), True),
        (keras.layers.DepthwiseConv2D(3, padding="same"), False),
    ],
)
def test_conditional_is_fast_only_for_rewritable_convolutions(layer, fast):
    spec = tf.TensorSpec((None, 8, 8, 4), tf.float32)
    layer.build(spec.shape)
    assert _xla.conditional_is_fast_under_xla(lambda x: layer(x), spec) is fast
