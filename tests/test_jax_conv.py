"""Tests of JAX's forward-only convolution gradients behind `StochasticDepthBlock`'s `lax.cond` on the CPU.

Run under JAX only (`KERAS_BACKEND=jax python -m pytest tests/test_jax_conv.py`);
TensorFlow's counterpart is tests/test_xla.py.
"""

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="JAX's convolution gradients (KERAS_BACKEND=jax)"
)

if keras.backend.backend() == "jax":
    import jax
    from jax import lax

    from stochastic_depth_tf.backend import jax as jax_backend

import stochastic_depth_tf as sdt  # noqa: E402

# (spatial dims, stride, padding, dilation, groups, channel multiplier)
CONVOLUTIONS = [
    (2, 1, "SAME", 1, 1, 1),
    (2, 1, "VALID", 1, 1, 1),
    (2, 2, "SAME", 1, 1, 1),
    (2, 2, "VALID", 1, 1, 1),
    (2, 1, "SAME", 2, 1, 1),
    (1, 1, "SAME", 1, 1, 1),
    (1, 2, "VALID", 1, 1, 1),
    (2, 1, "SAME", 1, 5, 1),  # depthwise
    (2, 2, "SAME", 1, 5, 2),  # depthwise, multiplier 2
    (1, 2, "SAME", 1, 5, 1),
]


def convolution_problem(spatial, stride, padding, dilation, groups, multiplier, kernel=3):
    rng = np.random.default_rng(stride + 10 * groups + 100 * spatial)
    size = (9, 8)[:spatial]
    x = rng.normal(size=(2,) + size + (5,)).astype("float32")
    out_channels = 5 * multiplier if groups > 1 else 7
    w = rng.normal(size=(kernel,) * spatial + (5 // groups, out_channels)).astype("float32")
    extent = ((kernel - 1) * dilation + 1,) * spatial
    pads = tuple(tuple(pad) for pad in lax.padtype_to_pads(size, extent, (stride,) * spatial, padding))
    convolution = jax_backend.Convolution((stride,) * spatial, pads, (dilation,) * spatial, groups)

    def reference(x, w):
        return lax.conv_general_dilated(
            x,
            w,
            (stride,) * spatial,
            pads,
            rhs_dilation=(dilation,) * spatial,
            dimension_numbers=jax_backend._canonical_dimension_numbers(spatial),
            feature_group_count=groups,
        )

    return x, w, convolution, reference


@pytest.mark.parametrize("spatial, stride, padding, dilation, groups, multiplier", CONVOLUTIONS)
def test_forward_convolution_gradients_equal_autodiff(spatial, stride, padding, dilation, groups, multiplier):
    x, w, convolution, reference = convolution_problem(spatial, stride, padding, dilation, groups, multiplier)
    expected, reference_vjp = jax.vjp(reference, x, w)
    got, rewritten_vjp = jax.vjp(lambda x, w: jax_backend.convolution_with_forward_gradients(convolution, x, w), x, w)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    upstream = np.random.default_rng(1).normal(size=expected.shape).astype("float32")
    for got_gradient, expected_gradient in zip(rewritten_vjp(upstream), reference_vjp(upstream)):
        assert got_gradient.shape == expected_gradient.shape
        np.testing.assert_allclose(got_gradient, expected_gradient, rtol=1e-4, atol=1e-4)


def convolutions_in(closed_jaxpr):
    return [equation for equation, _ in jax_backend._convolutions(closed_jaxpr.jaxpr)]


@pytest.mark.parametrize("spatial, stride, padding, dilation, groups, multiplier", CONVOLUTIONS)
def test_gradient_of_the_rewritten_conditional_holds_canonical_forward_convolutions_only(
    spatial, stride, padding, dilation, groups, multiplier
):
    x, w, _, reference = convolution_problem(spatial, stride, padding, dilation, groups, multiplier)

    def loss(x, w, rewrite):
        def squared():
            return (reference(x, w) ** 2).sum()

        arm = jax_backend.with_forward_convolution_gradients(squared) if rewrite else squared
        return lax.cond(True, arm, lambda: 0.0)

    canonical = jax_backend._canonical_dimension_numbers(spatial)
    gradients = {}
    for rewrite in (False, True):
        gradient = jax.grad(loss, argnums=(0, 1))
        closed = jax.make_jaxpr(gradient, static_argnums=2)(x, w, rewrite)
        convolutions = convolutions_in(closed)
        assert len(convolutions) == 3, "the forward convolution and the two gradients"
        forward_only = all(
            c.params["dimension_numbers"] == canonical and c.params["batch_group_count"] == 1 for c in convolutions
        )
        assert forward_only is rewrite, "JAX's own gradients are not canonical; the rewritten ones are"
        gradients[rewrite] = gradient(x, w, rewrite)
    for got, expected in zip(gradients[True], gradients[False]):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "layer, fast",
    [
        (lambda: keras.layers.Conv2D(4, 3, padding="same"), True),
        (lambda: keras.layers.Conv2D(4, 3, strides=2, padding="valid"), True),
        (lambda: keras.layers.Conv2D(4, 3, dilation_rate=2, padding="same"), True),
        (lambda: keras.layers.DepthwiseConv2D(3, padding="same"), True),
        (lambda: keras.layers.SeparableConv2D(4, 3, padding="same"), True),
        (lambda: keras.layers.Dense(4), True),
        (lambda: keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same"), False),
        (lambda: keras.layers.Conv2D(4, 3, padding="same", data_format="channels_first"), False),
    ],
)
def test_conditional_is_fast_only_for_covered_convolutions(layer, fast):
    layer = layer()
    x = np.zeros((2, 8, 8, 4), "float32")
    layer.build(x.shape)
    assert jax_backend.conditional_is_fast(lambda inputs: layer(inputs), x, [layer]) is fast


def test_conv1d_is_covered():
    layer = keras.layers.Conv1D(4, 3, strides=2, padding="same")
    x = np.zeros((2, 9, 4), "float32")
    layer.build(x.shape)
    assert jax_backend.conditional_is_fast(lambda inputs: layer(inputs), x, [layer])


@pytest.mark.parametrize("platform, applies", [("cpu", True), ("gpu", False), ("tpu", False)])
def test_forward_only_gradients_apply_on_the_cpu_only(platform, applies):
    assert jax_backend.rewrite_applies(platform) is applies


@pytest.mark.parametrize("padding, strides", [("same", 1), ("valid", 1), ("same", 2), ("valid", 2)])
def test_skipping_block_equals_the_multiply_path_in_values_and_gradients(padding, strides):
    """A kept branch inside `lax.cond` (rewritten gradients) against the same block computed and multiplied."""
    x = np.random.default_rng(0).normal(size=(4, 9, 9, 4)).astype("float32")

    def block(skip_compute):
        branch = keras.Sequential(
            [
                keras.layers.Conv2D(6, 3, strides=strides, padding=padding, use_bias=False),
                keras.layers.BatchNormalization(),
                keras.layers.ReLU(),
                keras.layers.DepthwiseConv2D(3, padding="same"),
                keras.layers.Conv2D(6, 1),
            ]
        )
        shortcut = keras.layers.Conv2D(6, 3, strides=strides, padding=padding)
        layer = sdt.StochasticDepthBlock(branch, shortcut, survival_probability=1.0, seed=0, skip_compute=skip_compute)
        layer.build(x.shape)
        return layer

    skipping, multiplying = block(True), block(False)
    multiplying.set_weights(skipping.get_weights())
    assert jax_backend.conditional_is_fast(
        lambda inputs: skipping.branch(inputs, training=True), x, [skipping.branch]
    ), "the block skips with lax.cond here, not by multiplying"

    def loss_and_gradients(layer):
        def loss(trainable, x):
            output, _ = layer.stateless_call(
                trainable, [v.value for v in layer.non_trainable_variables], x, training=True
            )
            return (output**2).sum(), output

        gradient = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))
        return gradient([v.value for v in layer.trainable_variables], x)

    (got_weights, got_x), got_output = loss_and_gradients(skipping)
    (expected_weights, expected_x), expected_output = loss_and_gradients(multiplying)
    np.testing.assert_allclose(got_output, expected_output, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_x, expected_x, rtol=1e-4, atol=1e-4)
    for got, expected in zip(got_weights, expected_weights):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)
