"""Tests of the XLA helpers behind `StochasticDepthBlock`'s fast conditional."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import stochastic_depth_tf as sdt
from stochastic_depth_tf.backend import tensorflow_xla

# TensorFlow only: TensorFlow's XLA conditional rewrite.
pytestmark = pytest.mark.tensorflow_only


PADDINGS = [("SAME", 1), ("SAME", 3), ("SAME", 4), ("VALID", 3), ([[0, 0], [2, 0], [1, 1], [0, 0]], 3)]


def conv_problem(padding, kernel):
    rng = np.random.default_rng(kernel)
    x = tf.constant(rng.normal(size=(2, 9, 8, 5)).astype("float32"))
    w = tf.constant(rng.normal(size=(kernel, kernel, 5, 7)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch([x, w])
        y = tf.nn.conv2d(x, w, 1, padding)
    upstream = tf.constant(rng.normal(size=y.shape).astype("float32"))
    return x, w, upstream, tape.gradient(y, [x, w], upstream)


@pytest.mark.parametrize("padding, kernel", PADDINGS)
def test_canonical_gradients_equal_autodiff(padding, kernel):
    x, w, upstream, (x_expected, w_expected) = conv_problem(padding, kernel)
    if padding == "SAME":
        pads = (((kernel - 1) // 2, kernel // 2), ((kernel - 1) // 2, kernel // 2))
    elif padding == "VALID":
        pads = ((0, 0), (0, 0))
    else:
        pads = (tuple(padding[1]), tuple(padding[2]))
    x_got, w_got = tensorflow_xla.canonical_conv2d_gradients(x, w, upstream, pads)
    np.testing.assert_allclose(x_got, x_expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(w_got, w_expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("padding, kernel", PADDINGS)
def test_gradient_scope_replaces_backprop_convolutions(padding, kernel):
    x, w, upstream, (x_expected, w_expected) = conv_problem(padding, kernel)

    # tf.gradients, as a conditional's gradient uses, honours the override.
    @tf.function
    def rewritten():
        with tensorflow_xla.canonical_conv2d_gradient_scope():
            y = tf.nn.conv2d(x, w, 1, padding)
        return tf.gradients(y, [x, w], upstream)

    x_got, w_got = rewritten()
    np.testing.assert_allclose(x_got, x_expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(w_got, w_expected, rtol=1e-4, atol=1e-4)
    op_types = {op.type for op in rewritten.get_concrete_function().graph.get_operations()}
    assert "Conv2DBackpropFilter" not in op_types and "Conv2DBackpropInput" not in op_types
    assert "Conv2D" in op_types


@pytest.mark.parametrize(
    "padding, kernel, multiplier", [("SAME", 3, 1), ("SAME", 4, 1), ("VALID", 3, 2), ("SAME", 5, 2)]
)
def test_depthwise_gradients_from_forward_convolutions_equal_autodiff(padding, kernel, multiplier):
    rng = np.random.default_rng(kernel + multiplier)
    x = tf.constant(rng.normal(size=(2, 9, 8, 5)).astype("float32"))
    w = tf.constant(rng.normal(size=(kernel, kernel, 5, multiplier)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch([x, w])
        y = tf.nn.depthwise_conv2d(x, w, [1, 1, 1, 1], padding)
    upstream = tf.constant(rng.normal(size=y.shape).astype("float32"))
    expected = tape.gradient(y, [x, w], upstream)

    # Grouped convolutions run under XLA only, where the rewrite applies; tf.gradients honours the override.
    @tf.function(jit_compile=True)
    def rewritten():
        with tensorflow_xla.canonical_conv2d_gradient_scope():
            y = tf.nn.depthwise_conv2d(x, w, [1, 1, 1, 1], padding)
        return tf.gradients(y, [x, w], upstream)

    for got, want in zip(rewritten(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    op_types = {op.type for op in rewritten.get_concrete_function().graph.get_operations()}
    assert not op_types & {"DepthwiseConv2dNativeBackpropFilter", "DepthwiseConv2dNativeBackpropInput"}
    assert "DepthwiseConv2dNative" in op_types and "Conv2D" in op_types


def test_under_xla_detects_jit_compile_only():
    seen = {}

    @tf.function(jit_compile=True)
    def compiled():
        seen["xla"] = tensorflow_xla.under_xla()
        return tf.constant(0)

    @tf.function
    def graph():
        seen["graph"] = tensorflow_xla.under_xla()
        return tf.constant(0)

    compiled(), graph()
    assert seen == {"xla": True, "graph": False}
    assert tensorflow_xla.under_xla() is False


@pytest.mark.parametrize(
    "layer, fast",
    [
        (keras.layers.Conv2D(4, 3, padding="same"), True),
        # A Dense on more than two axes transposes by a permutation computed
        # from its input's shape when the batch is unknown: the gradient of
        # such a branch does not compile in an XLA conditional.
        (keras.layers.Dense(4), False),
        # Tiling by constant multiples is fine; repeating (multiples computed
        # in the branch, as Llama's grouped-query attention does) is not.
        (keras.layers.Lambda(lambda x: keras.ops.tile(x, [1, 1, 1, 2])), True),
        (keras.layers.Lambda(lambda x: keras.ops.repeat(x, 2, axis=-1)), False),
        (keras.layers.Conv2D(4, 3, strides=2, padding="same"), False),
        # TensorFlow runs a dilated Keras Conv2D as space-to-batch around a
        # plain stride-1 Conv2D, which the rewrite covers.
        (keras.layers.Conv2D(4, 3, dilation_rate=2, padding="same"), True),
        (keras.layers.DepthwiseConv2D(3, padding="same"), True),
        (keras.layers.DepthwiseConv2D(3, strides=2, padding="same"), False),
    ],
)
def test_conditional_is_fast_only_for_rewritable_convolutions(layer, fast):
    spec = tf.TensorSpec((None, 8, 8, 4), tf.float32)
    layer.build(spec.shape)
    assert tensorflow_xla.conditional_is_fast_under_xla(lambda x: layer(x), spec) is fast


def test_conditional_takes_a_dense_on_a_known_shape():
    layer = keras.layers.Dense(4)
    spec = tf.TensorSpec((2, 8, 4), tf.float32)
    layer.build(spec.shape)
    assert tensorflow_xla.conditional_is_fast_under_xla(lambda x: layer(x), spec) is True


def test_block_with_a_dense_on_sequences_trains_under_xla():
    # fit traces an unknown batch: the block computes and gates the branch
    # instead of putting it in a conditional whose gradient XLA refuses.
    inputs = keras.Input((8, 4))
    block = sdt.StochasticDepthBlock(keras.layers.Dense(4), survival_probability=0.5, mode="batch", seed=0)
    model = keras.Model(inputs, block(inputs))
    model.compile("sgd", "mse", jit_compile=True)
    x = np.random.default_rng(0).normal(size=(4, 8, 4)).astype("float32")
    history = model.fit(x, x, epochs=2, verbose=0)  # a batch of 32 asked, 4 given: its size unknown
    assert np.all(np.isfinite(history.history["loss"]))
    assert list(block._fast_under_xla.values()) == [False]


@pytest.mark.parametrize(
    "requested, visible, expected",
    [
        ("/job:localhost/replica:0/task:0/device:CPU:1", {"CPU", "GPU"}, "CPU"),
        ("/device:GPU:0", {"CPU", "GPU"}, "GPU"),
        ("/job:worker/task:1/device:TPU:3", {"CPU", "TPU"}, "TPU"),
        ("", {"CPU"}, "CPU"),
        ("", {"CPU", "GPU"}, "GPU"),
        ("", {"CPU", "TPU"}, "TPU"),
        ("/job:localhost/task:0", {"CPU", "GPU"}, "GPU"),
    ],
)
def test_device_type_follows_the_requested_device_then_the_placer(requested, visible, expected):
    assert tensorflow_xla.device_type(requested, visible) == expected


@pytest.mark.parametrize(
    "device, applies", [("CPU", True), ("GPU", False), ("TPU", False), ("TPU_REPLICATED_CORE", False)]
)
def test_forward_only_gradients_apply_on_the_cpu_only(device, applies):
    """Measured on the CPU only; GPUs and TPUs keep TensorFlow's own gradients."""
    assert tensorflow_xla.rewrite_applies(device) is applies


def test_block_under_xla_on_a_gpu_keeps_tensorflow_gradients(monkeypatch):
    """On a (pretended) GPU the block skips with stock Conv2D gradients, no rewrite."""
    import keras

    import stochastic_depth_tf as sdt

    monkeypatch.setattr(tensorflow_xla, "device_type", lambda requested, visible=None: "GPU")
    block = sdt.StochasticDepthBlock(keras.layers.Conv2D(4, 3, padding="same"), survival_probability=0.5, seed=0)
    block.build((2, 6, 6, 4))
    spec = tf.TensorSpec((2, 6, 6, 4), tf.float32)

    def loss(x):
        return tf.reduce_sum(block(x, training=True))

    graph = (
        tf.function(lambda x: tf.gradients(loss(x), block.trainable_variables), jit_compile=True)
        .get_concrete_function(spec)
        .graph
    )
    types = {node.op for function in graph.as_graph_def().library.function for node in function.node_def}
    types |= {op.type for op in graph.get_operations()}
    assert {"If", "StatelessIf"} & types, "the block still skips (a conditional)"
    assert "Conv2DBackpropFilter" in types, "TensorFlow's own filter gradient is kept"
