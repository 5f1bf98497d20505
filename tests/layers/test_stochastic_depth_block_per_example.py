"""Per-example compute skipping in `StochasticDepthBlock` (`mode="sample"` and `"subset"`).

The branch runs on the kept examples only; dropped rows are the shortcut as
is. The gate is the merge layer's gate of the same mode and seed, so block
and merge layer compute the same training output.
"""

import math

import keras
import numpy as np
import pytest

import stochastic_depth_tf as sdt
from tests.layer_checks import JIT_COMPILE, outputs_and_gradients, run_standard_layer_checks, skip_torch_compile

SIGMAS = 5.0  # binomial bounds with fixed seeds, as in tests/test_ops.py

# JAX traces every step with static shapes, so there a Bernoulli count is
# computed and multiplied and a subset's size comes from the configured
# probability, as under XLA: the tests of varying counts run on the others.
skip_jax_static_shapes = pytest.mark.skipif(
    keras.backend.backend() == "jax", reason="JAX traces with static shapes: no varying kept count"
)


class RowCountingBranch(keras.layers.Layer):
    """`x * scale + 1`; counts in a variable how many rows it was run on in training."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="scale")
        self.rows = self.add_weight(shape=(), initializer="zeros", trainable=False, name="rows")

    def call(self, x, training=None):
        if training:
            self.rows.assign_add(keras.ops.cast(keras.ops.shape(x)[0], "float32"))
        return x * self.scale + 1.0


class RowLog(keras.layers.Layer):
    """Identity that records, at training step `t`, which rows differ from zero in `kept[t]`.

    Behind a block on a zero batch with a `RowCountingBranch` (which adds 1),
    those are the rows that got the branch. A variable, so it records inside
    compiled steps too.
    """

    def __init__(self, steps, batch, **kwargs):
        super().__init__(**kwargs)
        self.steps = steps
        self.kept = self.add_weight(shape=(steps, batch), initializer="zeros", trainable=False, name="kept")
        self.step = self.add_weight(shape=(), initializer="zeros", trainable=False, name="step")

    def call(self, x, training=None):
        if training:
            rows = keras.ops.cast(keras.ops.any(keras.ops.not_equal(x, 0.0), axis=-1), "float32")
            at_step = keras.ops.one_hot(keras.ops.cast(self.step, "int32"), self.steps)
            self.kept.assign(self.kept + keras.ops.expand_dims(at_step, -1) * rows)
            self.step.assign_add(1.0)
        return x


def training_steps(block, x, steps, jit_compile="auto"):
    """Runs `steps` training steps of `fit` on the batch `x` (zeros); returns, per step, which rows got the branch (0/1).

    A dense head keeps a weight in every step's loss, as PyTorch needs.
    """
    inputs = keras.Input(x.shape[1:])
    log = RowLog(steps, len(x))
    model = keras.Model(inputs, keras.layers.Dense(1)(log(block(inputs))))
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse", jit_compile=jit_compile)
    data = np.tile(x, (steps, 1))
    model.fit(data, np.zeros((len(data), 1), "float32"), batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    return keras.ops.convert_to_numpy(log.kept)


def count(variable):
    return float(keras.ops.convert_to_numpy(variable))


@pytest.mark.parametrize("mode", ["sample", "subset"])
def test_standard_layer_checks(mode):
    run_standard_layer_checks(
        lambda **extra: sdt.StochasticDepthBlock(
            keras.layers.Dense(3), mode=mode, seed=2, survival_probability=0.6, **extra
        ),
        [(5, 3)],
    )


@pytest.mark.parametrize("mode", ["sample", "subset"])
@pytest.mark.parametrize("inverted", [False, True])
def test_training_output_equals_merge_layer_with_same_seed(mode, inverted):
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    branch = keras.layers.Dense(4)
    block = sdt.StochasticDepthBlock(branch, survival_probability=0.6, mode=mode, inverted=inverted, seed=7)
    merge = sdt.StochasticDepth(0.6, mode=mode, inverted=inverted, seed=7)
    for _ in range(3):
        expected = merge([x, branch(x)], training=True)
        actual = block(x, training=True)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(actual), keras.ops.convert_to_numpy(expected), rtol=1e-6, atol=1e-6
        )


@pytest.mark.parametrize("mode", ["sample", "subset"])
def test_gradients_equal_the_merge_layer_gradients(mode):
    x = np.random.default_rng(1).normal(size=(12, 4)).astype("float32")
    branch = keras.layers.Dense(4)
    branch.build((None, 4))
    block = sdt.StochasticDepthBlock(branch, survival_probability=0.5, mode=mode, inverted=True, seed=4)
    merge = sdt.StochasticDepth(0.5, mode=mode, inverted=True, seed=4)
    block.build(x.shape)

    def gradients(function, layer):
        _, grads = outputs_and_gradients(
            lambda inputs: keras.ops.sin(function(inputs)),
            [x],
            variables=branch.trainable_variables,
            state=layer.non_trainable_variables,
        )
        return grads

    block_gradients = gradients(lambda inputs: block(inputs, training=True), block)
    merge_gradients = gradients(lambda inputs: merge([inputs, branch(inputs)], training=True), merge)
    for got, expected in zip(block_gradients, merge_gradients):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@skip_jax_static_shapes
def test_sample_mode_runs_the_branch_on_the_kept_examples_only():
    steps, batch, p = 100, 8, 0.5
    branch = RowCountingBranch()
    block = sdt.StochasticDepthBlock(branch, survival_probability=p, mode="sample", seed=3)
    kept = training_steps(block, np.zeros((batch, 2), "float32"), steps, jit_compile=False)
    assert count(branch.rows) == kept.sum()  # forward on kept rows only
    draws = steps * batch
    assert abs(kept.mean() - p) <= SIGMAS * math.sqrt(p * (1 - p) / draws)
    counts = kept.sum(axis=1)
    assert len(set(counts)) > 1, "a Bernoulli count varies from step to step"


@pytest.mark.parametrize("jit_compile", JIT_COMPILE)
def test_subset_mode_keeps_exactly_k_random_examples(jit_compile):
    steps, batch, p = 200, 10, 0.6
    branch = RowCountingBranch()
    block = sdt.StochasticDepthBlock(branch, survival_probability=p, mode="subset", seed=3)
    kept = training_steps(block, np.zeros((batch, 2), "float32"), steps, jit_compile=jit_compile)
    assert np.all(kept.sum(axis=1) == 6)  # k = round(0.6 * 10)
    assert count(branch.rows) == 6 * steps  # the branch saw 6 rows per step
    # Each row is kept with probability k / batch = 0.6: within 5 binomial sd.
    bound = SIGMAS * math.sqrt(0.6 * 0.4 / steps)
    assert np.all(np.abs(kept.mean(axis=0) - 0.6) <= bound), kept.mean(axis=0)


@skip_torch_compile
def test_sample_mode_under_xla_computes_every_example():
    """A Bernoulli count has no static shape: under XLA (and JAX) the branch is multiplied."""
    branch = RowCountingBranch()
    block = sdt.StochasticDepthBlock(branch, survival_probability=0.5, mode="sample", seed=3)
    kept = training_steps(block, np.zeros((8, 2), "float32"), 20, jit_compile=True)
    assert count(branch.rows) == 8 * 20
    assert 0 < kept.mean() < 1


@skip_torch_compile
def test_subset_mode_under_xla_counts_from_the_configured_probability():
    """Under XLA (and JAX) k is fixed when compiling: a schedule's value does not change it."""
    branch = RowCountingBranch()
    block = sdt.StochasticDepthBlock(branch, survival_probability=0.5, mode="subset", seed=3)
    block.survival_probability_variable.assign(1.0)  # e.g. the start of a warm-up
    kept = training_steps(block, np.zeros((8, 2), "float32"), 5, jit_compile=True)
    assert np.all(kept.sum(axis=1) == 4)


@skip_jax_static_shapes
def test_subset_mode_follows_the_variable_where_shapes_may_vary():
    block = sdt.StochasticDepthBlock(RowCountingBranch(), survival_probability=0.5, mode="subset", seed=3)
    x = np.zeros((8, 2), "float32")
    counts = []
    for value in (1.0, 0.75, 0.5):
        block.survival_probability_variable.assign(value)
        output = keras.ops.convert_to_numpy(block(x, training=True))
        counts.append(int(np.any(output != x, axis=-1).sum()))
    assert counts == [8, 6, 4]


@pytest.mark.tensorflow_only  # counts tf.function traces
def test_subset_mode_in_graph_mode_follows_the_variable_without_retracing():
    import tensorflow as tf

    branch = RowCountingBranch()
    block = sdt.StochasticDepthBlock(branch, survival_probability=0.5, mode="subset", seed=3)
    x = np.zeros((8, 2), "float32")
    block(x)  # build first: creating variables in a trace makes tf.function trace again
    traces = []

    @tf.function
    def step():
        traces.append(1)
        return block(x, training=True)

    counts = []
    for value in (1.0, 0.75, 0.5):
        block.survival_probability_variable.assign(value)
        counts.append(int(np.any(step().numpy() != x, axis=-1).sum()))
    assert counts == [8, 6, 4]
    assert len(traces) == 1


def test_batch_normalization_statistics_see_the_kept_examples_only():
    x = np.random.default_rng(2).normal(loc=3.0, size=(10, 3)).astype("float32")
    normalization = keras.layers.BatchNormalization(momentum=0.0)  # moving mean = last batch mean
    block = sdt.StochasticDepthBlock(normalization, survival_probability=0.5, mode="subset", seed=5)
    output = keras.ops.convert_to_numpy(block(x, training=True))
    kept = np.any(output != x, axis=-1)
    assert kept.sum() == 5
    np.testing.assert_allclose(keras.ops.convert_to_numpy(normalization.moving_mean), x[kept].mean(axis=0), rtol=1e-5)


@skip_jax_static_shapes
def test_no_example_kept_leaves_the_branch_alone():
    """A Bernoulli draw may keep no example: the branch must not see an empty batch."""
    normalization = keras.layers.BatchNormalization(momentum=0.0)
    block = sdt.StochasticDepthBlock(normalization, survival_probability=0.0, mode="sample", seed=5)
    x = np.ones((4, 3), "float32")
    kept = training_steps(block, x * 0.0, 1, jit_compile=False)  # TensorFlow's graph mode, PyTorch's eager step
    np.testing.assert_array_equal(kept, 0.0)
    moving_mean = keras.ops.convert_to_numpy(normalization.moving_mean)
    assert np.all(np.isfinite(moving_mean))
    np.testing.assert_array_equal(moving_mean, np.zeros(3))


def test_scheduler_ramps_a_per_example_block():
    inputs = keras.Input((3,))
    block = sdt.StochasticDepthBlock(keras.layers.Dense(3), survival_probability=0.5, mode="subset", seed=0)
    model = keras.Model(inputs, keras.layers.Dense(1)(block(inputs)))
    model.compile("sgd", "mse")
    scheduler = sdt.callbacks.SurvivalProbabilityScheduler(duration=2)
    history = model.fit(np.ones((16, 3)), np.ones((16, 1)), epochs=3, verbose=0, callbacks=[scheduler])
    np.testing.assert_allclose(history.history["mean_survival_probability"], [1.0, 0.75, 0.5])


def test_strip_unrolls_a_per_example_block():
    inputs = keras.Input((3,))
    block = sdt.StochasticDepthBlock(keras.layers.Dense(3), survival_probability=0.6, mode="subset", seed=0)
    model = keras.Model(inputs, block(inputs))
    stripped = sdt.strip_stochastic_depth(model)
    x = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    # The stripped graph computes `x + p * f(x)` where the block computed it
    # in its own order: float32 rounding (seen: 1e-8 apart on an entry of
    # 6e-4 under JAX), so an absolute floor beside the relative bound.
    np.testing.assert_allclose(stripped.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)


def test_branch_changing_the_batch_size_is_refused():
    branch = keras.layers.Lambda(lambda x: x[:1])
    block = sdt.StochasticDepthBlock(branch, survival_probability=0.5, mode="sample")
    with pytest.raises(ValueError, match="Invalid `branch` received by StochasticDepthBlock"):
        block(keras.Input((3,)))


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="Invalid value received for argument `mode`"):
        sdt.StochasticDepthBlock(keras.layers.Dense(3), mode="rows")
