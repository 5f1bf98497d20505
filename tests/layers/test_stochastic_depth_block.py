"""Tests of `StochasticDepthBlock`: semantics, skipped compute, serialization."""

import math

import keras
import numpy as np
import pytest

import stochastic_depth_tf as sdt
from tests.helpers import images, vectors
from tests.layer_checks import (
    JIT_COMPILE,
    GateLog,
    assert_training_step,
    holds_survival_probability,
    outputs_and_gradients,
    run_standard_layer_checks,
    skip_torch_compile,
)

SIGMAS = 5.0  # 5-sigma binomial bounds with fixed seeds, as in tests/test_ops.py
SHAPE = (6, 6, 4)  # of the images the blocks take


class CountingBranch(keras.layers.Layer):
    """Returns ones shaped like its input, times a weight; counts its forward passes in training.

    The output is 1 wherever the branch ran, so `block(x) - x` reads the
    gate. The count is a variable assigned with `keras.ops`, so it counts
    inside compiled steps on every backend (under JAX the block's
    conditional carries it out of `lax.cond` like a moving statistic).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.scale = self.add_weight(shape=(), initializer="ones", name="scale")
        self.forward_passes = self.add_weight(shape=(), initializer="zeros", trainable=False, name="forward_passes")

    def call(self, x, training=None):
        if training:
            self.forward_passes.assign_add(1.0)
        return keras.ops.ones_like(x) * self.scale


class BackwardCountingBranch(CountingBranch):
    """Also counts backward passes, by a host call in a custom gradient (TensorFlow, graph mode).

    The host call runs only when the branch's output is differentiated.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.backward_calls = []

    def _tick(self):
        self.backward_calls.append(1)
        return np.float32(0.0)

    def call(self, x, training=None):
        import tensorflow as tf

        @tf.custom_gradient
        def counted(scale):
            def grad(upstream):
                return tf.reduce_sum(upstream) + tf.numpy_function(self._tick, [], tf.float32)

            return tf.ones_like(x) * scale, grad

        if training:
            self.forward_passes.assign_add(1.0)
        return counted(self.scale.value)

    @property
    def backward(self):
        return len(self.backward_calls)


def conv_branch(filters=4, strides=1):
    return keras.Sequential(
        [
            keras.layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Conv2D(filters, 3, padding="same", use_bias=False),
            keras.layers.BatchNormalization(),
        ]
    )


def gated_training_steps(block, steps, jit_compile="auto"):
    """Runs `steps` training steps of `fit` on a zero batch of 2; returns the gates they saw (0/1).

    A dense head keeps a weight in every step's loss: PyTorch refuses to
    differentiate a loss that no weight reaches, as when the gate is shut.
    """
    inputs = keras.Input((3,))
    log = GateLog(steps)
    model = keras.Model(inputs, keras.layers.Dense(1)(log(block(inputs))))
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse", jit_compile=jit_compile)
    x = np.zeros((2 * steps, 3), "float32")
    model.fit(x, x[:, :1], batch_size=2, epochs=1, shuffle=False, verbose=0)
    return keras.ops.convert_to_numpy(log.gates)


def count(variable):
    return float(keras.ops.convert_to_numpy(variable))


# The standard checks shared by every layer.


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"mode": "sample", "seed": 2}, {"inverted": True, "survival_probability": 0.7}],
)
def test_standard_layer_checks(kwargs):
    run_standard_layer_checks(
        lambda **extra: sdt.StochasticDepthBlock(keras.layers.Dense(3), **kwargs, **extra), [(5, 3)]
    )


@skip_torch_compile
def test_training_step_under_xla():
    assert_training_step(
        lambda **extra: sdt.StochasticDepthBlock(keras.layers.Dense(3), **extra), [(5, 3)], jit_compile=True
    )


# Skipping: no forward, no backward, no BatchNormalization update.


@pytest.mark.parametrize("jit_compile", JIT_COMPILE)
def test_dropped_branch_is_not_computed(jit_compile):
    steps, p = 200, 0.5
    branch = CountingBranch()
    block = sdt.StochasticDepthBlock(branch, survival_probability=p, seed=3)
    gates = gated_training_steps(block, steps, jit_compile=jit_compile)
    kept = int(gates.sum())
    assert set(np.unique(gates)) == {0.0, 1.0}
    assert count(branch.forward_passes) == kept
    assert abs(kept / steps - p) <= SIGMAS * math.sqrt(p * (1 - p) / steps)


@pytest.mark.tensorflow_only  # counts backward passes with a host call in a custom gradient
@pytest.mark.parametrize("survival_probability, mode", [(0.5, "batch"), (0.95, "sample")])
def test_backward_passes_are_those_of_the_forward_passes(survival_probability, mode):
    """A dropped branch has no backward pass; one computed and multiplied (p > 0.9, sample) has one every step."""
    steps = 100
    branch = BackwardCountingBranch()
    block = sdt.StochasticDepthBlock(branch, survival_probability=survival_probability, mode=mode, seed=3)
    gates = gated_training_steps(block, steps, jit_compile=False)
    assert 0 < count(branch.forward_passes) == branch.backward
    if mode == "batch":
        assert branch.backward == gates.sum() < steps
    else:
        assert branch.backward == steps


def test_a_dropped_branch_gets_zero_gradients_on_every_backend():
    # TensorFlow's and JAX's conditionals give the untaken arm zero gradients;
    # PyTorch's eager skip is made to as well, so no backend warns of missing ones.
    import warnings

    branch = CountingBranch()
    block = sdt.StochasticDepthBlock(branch, survival_probability=0.0, seed=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gates = gated_training_steps(block, 5)
    assert gates.sum() == 0 and count(branch.forward_passes) == 0
    assert not [w for w in caught if "Gradients do not exist" in str(w.message)]
    assert count(branch.scale) == 1.0


def test_merge_layer_by_contrast_computes_every_branch():
    branch = CountingBranch()
    x = keras.Input((3,))
    model = keras.Model(x, sdt.StochasticDepth(0.5, seed=3)([x, branch(x)]))
    gates = gated_training_steps(model, 50)
    assert 0 < gates.sum() < 50
    assert count(branch.forward_passes) == 50


def test_sample_mode_with_little_to_drop_computes_the_branch_every_step():
    """Above p = 0.9 per-example skipping would cost more than it saves: multiplied."""
    branch = CountingBranch()
    block = sdt.StochasticDepthBlock(branch, survival_probability=0.95, mode="sample", seed=3)
    gated_training_steps(block, 30)
    assert count(branch.forward_passes) == 30


def test_skip_compute_false_computes_the_branch_every_step():
    branch = CountingBranch()
    block = sdt.StochasticDepthBlock(branch, survival_probability=0.5, seed=3, skip_compute=False)
    gates = gated_training_steps(block, 30)
    assert 0 < gates.sum() < 30
    assert count(branch.forward_passes) == 30


def bn_updates_per_step(branch, jit_compile="auto", steps=30, survival_probability=0.5):
    """Trains a block on `branch` for `steps` steps; counts the steps that moved BN statistics."""
    inputs = keras.Input((6, 6, 4))
    block = sdt.StochasticDepthBlock(branch, survival_probability=survival_probability, seed=11)
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.GlobalAveragePooling2D()(block(inputs))))
    model.compile(optimizer="sgd", loss="mse", jit_compile=jit_compile)
    moving_mean = [layer for layer in branch.layers if isinstance(layer, keras.layers.BatchNormalization)][
        0
    ].moving_mean
    x, y = images(SHAPE), np.zeros((4, 1), "float32")
    changes = 0
    for _ in range(steps):
        before = keras.ops.convert_to_numpy(moving_mean).copy()
        model.train_on_batch(x, y)
        changes += not np.array_equal(before, keras.ops.convert_to_numpy(moving_mean))
    return changes


def dense_branch(units=4):
    return keras.Sequential([keras.layers.Dense(units), keras.layers.BatchNormalization(), keras.layers.ReLU()])


@pytest.mark.parametrize("jit_compile", JIT_COMPILE)
@pytest.mark.parametrize("make_branch", [conv_branch, dense_branch])
def test_batch_normalization_updates_only_on_kept_steps(jit_compile, make_branch):
    changes = bn_updates_per_step(make_branch(), jit_compile)
    assert 0 < changes < 30, "some steps updated the statistics and some did not"


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX's fallback on the CPU")
def test_under_jax_on_the_cpu_a_transposed_convolution_branch_is_computed_every_step():
    # XLA on CPU runs the gradient convolutions inside lax.cond as slow loops;
    # the block gives channels-last convolutions forward-only gradients
    # (tests/test_jax_conv.py) and multiplies a branch with any other kind.
    import jax

    assert jax.default_backend() == "cpu"
    transposed = keras.Sequential(
        [
            keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same"),  # input dilation: not covered
            keras.layers.AveragePooling2D(2),
            keras.layers.BatchNormalization(),
        ]
    )
    assert bn_updates_per_step(transposed, jit_compile=True) == 30
    from stochastic_depth_tf.backend import jax as jax_backend

    x = images(SHAPE, n=2)
    for make_branch, convolves in ((conv_branch, True), (dense_branch, False)):
        branch = make_branch()
        branch.build(x.shape)
        assert (
            jax_backend.computes_convolutions(lambda inputs, branch=branch: branch(inputs, training=True), x, [branch])
            is convolves
        )


@pytest.mark.tensorflow_only  # XLA on CPU and TensorFlow's convolution gradients
def test_under_xla_a_branch_with_strided_depthwise_convolution_is_computed_every_step():
    # XLA on CPU cannot run a strided depthwise convolution's gradient fast inside a
    # conditional (stride 1 is rewritten), so the block computes such a branch and multiplies.
    branch = keras.Sequential(
        [
            keras.layers.DepthwiseConv2D(3, strides=2, padding="same"),
            keras.layers.UpSampling2D(2),
            keras.layers.BatchNormalization(),
        ]
    )
    assert bn_updates_per_step(branch, jit_compile=True) == 30


@pytest.mark.tensorflow_only  # the XLA-on-CPU gradient rewrite covers depthwise convolutions
def test_under_xla_a_branch_with_depthwise_convolution_skips():
    branch = keras.Sequential([keras.layers.DepthwiseConv2D(3, padding="same"), keras.layers.BatchNormalization()])
    assert 0 < bn_updates_per_step(branch, jit_compile=True) < 30


@pytest.mark.tensorflow_only  # the XLA-on-CPU gradient rewrite (stochastic_depth_tf/backend/tensorflow_xla.py)
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_under_xla_gradients_of_a_kept_conv_branch_are_exact(padding):
    import tensorflow as tf

    branch = keras.Sequential(
        [
            keras.layers.Conv2D(4, 3, padding=padding),
            keras.layers.ReLU(),
            keras.layers.Conv2D(4, 1 if padding == "valid" else 4, padding="same"),
        ]
    )
    shortcut = keras.layers.Cropping2D(1) if padding == "valid" else None
    block = sdt.StochasticDepthBlock(branch, shortcut=shortcut, survival_probability=1.0)
    x = tf.constant(images(SHAPE, n=2))
    block.build(x.shape)

    @tf.function(jit_compile=True)
    def block_gradients():
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(block(x, training=True) ** 2)
        return tape.gradient(loss, [x] + branch.trainable_variables)

    def reference_gradients():
        with tf.GradientTape() as tape:
            tape.watch(x)
            identity = x if shortcut is None else shortcut(x)
            loss = tf.reduce_sum((identity + branch(x, training=True)) ** 2)
        return tape.gradient(loss, [x] + branch.trainable_variables)

    for got, expected in zip(block_gradients(), reference_gradients()):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)
    # The conditional's gradient holds forward convolutions only, which XLA runs fast.
    graph_def = block_gradients.get_concrete_function().graph.as_graph_def()
    op_types = {node.op for function in graph_def.library.function for node in function.node_def}
    assert "Conv2D" in op_types
    assert not op_types & {"Conv2DBackpropFilter", "Conv2DBackpropInput"}


def test_batch_normalization_statistics_stay_put_when_dropped():
    x = images(SHAPE, n=8) + 3.0  # a mean far from the initial moving mean of 0
    dropped = sdt.StochasticDepthBlock(keras.layers.BatchNormalization(), survival_probability=0.0)
    dropped(x, training=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(dropped.branch.moving_mean), 0.0)
    kept = sdt.StochasticDepthBlock(keras.layers.BatchNormalization(), survival_probability=1.0)
    kept(x, training=True)
    assert np.all(keras.ops.convert_to_numpy(kept.branch.moving_mean) > 0.0)


# Semantics: the same as the merge layer.


@pytest.mark.parametrize("inverted", [False, True])
def test_training_output_equals_merge_layer_with_same_seed(inverted):
    branch = keras.layers.Dense(3, kernel_initializer="glorot_uniform")
    block = sdt.StochasticDepthBlock(branch, survival_probability=0.6, inverted=inverted, seed=5)
    merge = sdt.StochasticDepth(0.6, inverted=inverted, seed=5)
    x = vectors(n=4, width=3)
    outcomes = set()
    for _ in range(20):
        expected = keras.ops.convert_to_numpy(merge([x, branch(x)], training=True))
        output = keras.ops.convert_to_numpy(block(x, training=True))
        np.testing.assert_allclose(output, expected, rtol=1e-6, atol=1e-6)
        outcomes.add(bool(np.allclose(output, x)))
    assert outcomes == {True, False}


@pytest.mark.parametrize("inverted", [False, True])
def test_inference_output(inverted):
    branch = keras.layers.Dense(3)
    block = sdt.StochasticDepthBlock(branch, survival_probability=0.3, inverted=inverted)
    x = vectors(n=4, width=3)
    scale = 1.0 if inverted else 0.3
    expected = x + np.float32(scale) * keras.ops.convert_to_numpy(branch(x))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(block(x)), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_gradients_of_a_kept_branch_equal_the_merge_layer_gradients(jit_compile):
    branch = keras.layers.Dense(3)
    x = vectors(n=4, width=3)
    block = sdt.StochasticDepthBlock(branch, survival_probability=1.0)
    block.build(x.shape)

    def gradients(function):
        _, grads = outputs_and_gradients(
            lambda: keras.ops.square(function()),
            [],
            variables=branch.trainable_variables,
            state=block.non_trainable_variables,
            jit_compile=jit_compile,
        )
        return grads

    for got, expected in zip(
        gradients(lambda: block(x, training=True)), gradients(lambda: keras.ops.add(x, branch(x)))
    ):
        np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_projection_shortcut_for_a_strided_wider_block():
    shortcut = keras.layers.Conv2D(8, 1, strides=2)
    block = sdt.StochasticDepthBlock(
        conv_branch(filters=8, strides=2), shortcut=shortcut, survival_probability=0.5, seed=0
    )
    x = images((8, 8, 4), n=2)
    assert block(x, training=True).shape == (2, 4, 4, 8)
    assert tuple(block.compute_output_shape((None, 8, 8, 4))) == (None, 4, 4, 8)


def test_survival_probability_one_matches_plain_residual_network_in_training():
    branch = conv_branch()
    block = sdt.StochasticDepthBlock(branch, survival_probability=1.0)
    x = images(SHAPE)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(block(x, training=True)),
        x + keras.ops.convert_to_numpy(branch(x, training=True)),
        rtol=1e-5,
        atol=1e-5,
    )


def test_weights_are_those_of_branch_and_shortcut():
    shortcut = keras.layers.Conv2D(8, 1, strides=2)
    block = sdt.StochasticDepthBlock(conv_branch(filters=8, strides=2), shortcut=shortcut)
    block.build((None, 8, 8, 4))
    assert len(block.weights) == len(block.branch.weights) + len(shortcut.weights)
    assert holds_survival_probability(block)


def test_scheduler_finds_and_ramps_the_block():
    block = sdt.StochasticDepthBlock(keras.layers.Dense(3), survival_probability=0.5)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(3)(block(inputs)))  # a weight outside the block, for PyTorch
    assert sdt.callbacks.stochastic_depth_layers(model) == [block]
    model.compile(optimizer="sgd", loss="mse")
    history = model.fit(
        vectors(n=8, width=3),
        np.zeros((8, 3)),
        epochs=2,
        verbose=0,
        callbacks=[sdt.callbacks.SurvivalProbabilityScheduler(duration=1)],
    )
    assert history.history["mean_survival_probability"] == [1.0, 0.5]


# Serialization.


def test_keras_file_round_trip_with_projection(tmp_path):
    inputs = keras.Input((8, 8, 4))
    block = sdt.StochasticDepthBlock(
        conv_branch(filters=8, strides=2),
        shortcut=keras.layers.Conv2D(8, 1, strides=2),
        survival_probability=0.7,
        mode="batch",
        seed=4,
        name="block",
    )
    model = keras.Model(inputs, block(inputs))
    block.survival_probability_variable.assign(0.9)
    path = str(tmp_path / "block.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = images((8, 8, 4), n=2)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    restored = loaded.get_layer("block")
    assert restored.get_config()["survival_probability"] == 0.7
    assert float(restored.survival_probability_variable.numpy()) == pytest.approx(0.9)


@pytest.mark.tensorflow_only
def test_saved_model_export(tmp_path):
    import tensorflow as tf

    inputs = keras.Input((6, 6, 4))
    model = keras.Model(inputs, sdt.StochasticDepthBlock(conv_branch(), survival_probability=0.6)(inputs))
    path = str(tmp_path / "exported")
    model.export(path, verbose=False)
    served = tf.saved_model.load(path)
    x = images(SHAPE)
    np.testing.assert_allclose(served.serve(x).numpy(), model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


def compiled_block_model(x):
    inputs = keras.Input((6, 6, 4))
    model = keras.Model(inputs, sdt.StochasticDepthBlock(conv_branch(), survival_probability=0.6, seed=0)(inputs))
    model.compile(optimizer="sgd", loss="mse", jit_compile=True)
    model.fit(x, x, batch_size=4, epochs=2, verbose=0)
    return model


@skip_torch_compile
def test_keras_file_after_compiled_training(tmp_path):
    x = images(SHAPE)
    model = compiled_block_model(x)
    model.save(str(tmp_path / "model.keras"))
    loaded = keras.saving.load_model(str(tmp_path / "model.keras"))
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


@pytest.mark.tensorflow_only
def test_saved_model_export_after_xla_training(tmp_path):
    import tensorflow as tf

    x = images(SHAPE)
    model = compiled_block_model(x)
    model.export(str(tmp_path / "exported"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "exported"))
    np.testing.assert_allclose(served.serve(x).numpy(), model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


# Bad input.


def test_branch_not_a_layer_is_refused():
    with pytest.raises(
        TypeError, match=r"argument `branch`. Expected a keras.layers.Layer. Received: branch=<function"
    ):
        sdt.StochasticDepthBlock(lambda x: x)


def test_shortcut_not_a_layer_is_refused():
    with pytest.raises(
        TypeError, match=r"argument `shortcut`. Expected a keras.layers.Layer or None. Received: shortcut='identity'"
    ):
        sdt.StochasticDepthBlock(keras.layers.Dense(3), shortcut="identity")


def test_bad_skip_compute_is_refused():
    with pytest.raises(TypeError, match=r"argument `skip_compute`. Expected a bool. Received: skip_compute='yes'"):
        sdt.StochasticDepthBlock(keras.layers.Dense(3), skip_compute="yes")


def test_bad_survival_probability_and_mode_are_refused():
    with pytest.raises(
        ValueError,
        match=r"argument `survival_probability`. Expected a float between 0 and 1. Received: survival_probability=-1",
    ):
        sdt.StochasticDepthBlock(keras.layers.Dense(3), survival_probability=-1)
    with pytest.raises(ValueError, match=r"argument `mode`. Expected one of"):
        sdt.StochasticDepthBlock(keras.layers.Dense(3), mode="row")


def test_branch_changing_shape_without_projection_is_refused():
    block = sdt.StochasticDepthBlock(keras.layers.Conv2D(8, 3, strides=2, padding="same"))
    with pytest.raises(ValueError, match=r"shortcut.shape=\(None, 8, 8, 4\), residual.shape=\(None, 4, 4, 8\)"):
        block(keras.Input((8, 8, 4)))


def _predicate_producers(graph) -> list:
    """The ops that compute the predicate of every conditional in `graph`."""
    conditionals = [op for op in graph.get_operations() if op.type in ("If", "StatelessIf")]
    assert conditionals, "the block traced no conditional"
    producers, frontier = [], [op.inputs[0].op for op in conditionals]
    while frontier:
        op = frontier.pop()
        if op in producers:
            continue
        producers.append(op)
        frontier.extend(tensor.op for tensor in op.inputs if tensor.op.type != "Placeholder")
    return producers


@pytest.mark.tensorflow_only
def test_gate_is_drawn_on_the_host_in_graph_mode():
    """The `If` predicate is computed on the CPU: no device-to-host copy per block on a GPU.

    TensorFlow's GPU kernel of `If` reads its predicate from host memory; a
    gate drawn on the GPU would be copied back, waiting for the device, at
    every block of every step. Every op feeding the predicate (draw,
    comparison, casts) must carry an explicit CPU placement in the graph;
    variable reads run where their variable lives, and the block's seed
    state and survival probability are created on the host.
    """
    import tensorflow as tf

    block = sdt.StochasticDepthBlock(keras.layers.Dense(4), survival_probability=0.5, seed=0)
    block.build((2, 4))
    step = tf.function(lambda x: block(x, training=True))
    graph = step.get_concrete_function(tf.TensorSpec((2, 4), tf.float32)).graph
    producers = _predicate_producers(graph)
    assert any(op.type.startswith("StatelessRandomUniform") for op in producers)
    for op in producers:
        if op.type != "ReadVariableOp":
            assert "CPU" in op.device, (op.type, op.name, op.device)
    for variable in (block.merge.seed_generator.state, block.survival_probability_variable):
        assert "CPU" in variable.value.device


@pytest.mark.tensorflow_only
def test_gate_has_no_host_placement_under_xla():
    """Under XLA the step is one compiled program on its device: no placement is forced."""
    import tensorflow as tf

    block = sdt.StochasticDepthBlock(keras.layers.Dense(4), survival_probability=0.5, seed=0)
    block.build((2, 4))
    step = tf.function(lambda x: block(x, training=True), jit_compile=True)
    graph = step.get_concrete_function(tf.TensorSpec((2, 4), tf.float32)).graph
    for op in _predicate_producers(graph):
        assert "CPU" not in op.device, (op.type, op.name, op.device)
