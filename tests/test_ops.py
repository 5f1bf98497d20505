"""Tests of `stochastic_depth_tf.ops`: the maths, the gate statistics, validation."""

import math

import keras
import numpy as np
import pytest

from stochastic_depth_tf import ops
from tests.layer_checks import outputs_and_gradients

# Statistical tests use a fixed seed and a 5-sigma bound: for a binomial
# proportion over n draws, |observed - p| <= 5 * sqrt(p (1 - p) / n). A
# correct implementation fails such a bound with probability below 1e-6.
SIGMAS = 5.0


def binomial_bound(p, n):
    return SIGMAS * math.sqrt(p * (1.0 - p) / n)


def pair(shape=(6, 3, 3, 2), seed=0):
    rng = np.random.default_rng(seed)
    shortcut = rng.normal(size=shape).astype("float32")
    residual = rng.normal(size=shape).astype("float32")
    return shortcut, residual


@pytest.mark.parametrize("mode", ["batch", "sample"])
def test_inference_scales_residual_by_survival_probability(mode):
    shortcut, residual = pair()
    output = ops.stochastic_depth(shortcut, residual, 0.7, training=False, mode=mode)
    np.testing.assert_allclose(output, shortcut + np.float32(0.7) * residual, rtol=1e-6)


@pytest.mark.parametrize("mode", ["batch", "sample"])
def test_inverted_inference_is_plain_add(mode):
    shortcut, residual = pair()
    output = ops.stochastic_depth(shortcut, residual, 0.7, training=False, mode=mode, inverted=True)
    np.testing.assert_array_equal(output, shortcut + residual)


def test_training_none_is_inference():
    shortcut, residual = pair()
    output = ops.stochastic_depth(shortcut, residual, 0.3, training=None)
    np.testing.assert_allclose(output, shortcut + np.float32(0.3) * residual, rtol=1e-6)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("inverted", [True, False])
@pytest.mark.parametrize("mode", ["batch", "sample"])
def test_survival_probability_one_is_exact_add(training, inverted, mode):
    shortcut, residual = pair()
    output = ops.stochastic_depth(shortcut, residual, 1.0, training=training, mode=mode, inverted=inverted)
    np.testing.assert_array_equal(output, shortcut + residual)


@pytest.mark.parametrize("mode", ["batch", "sample"])
def test_survival_probability_one_variable_is_exact_add_in_training(mode):
    shortcut, residual = pair()
    variable = keras.Variable(1.0, trainable=False)
    for _ in range(20):
        output = ops.stochastic_depth(shortcut, residual, variable, training=True, mode=mode)
        np.testing.assert_array_equal(output, shortcut + residual)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("mode", ["batch", "sample"])
def test_survival_probability_zero_always_drops(training, mode):
    shortcut, residual = pair()
    for _ in range(10):
        output = ops.stochastic_depth(shortcut, residual, 0.0, training=training, mode=mode)
        np.testing.assert_array_equal(output, shortcut)


@pytest.mark.parametrize("inverted", [False, True])
def test_sample_mode_gives_each_example_exactly_kept_or_dropped(inverted):
    p = 0.6
    shortcut, residual = pair(shape=(256, 2, 2, 3))
    generator = keras.random.SeedGenerator(11)
    output = keras.ops.convert_to_numpy(
        ops.stochastic_depth(shortcut, residual, p, training=True, mode="sample", inverted=inverted, seed=generator)
    )
    kept_value = shortcut + (residual / np.float32(p) if inverted else residual)
    dropped = np.all(np.isclose(output, shortcut, rtol=1e-6, atol=1e-6), axis=(1, 2, 3))
    kept = np.all(np.isclose(output, kept_value, rtol=1e-5, atol=1e-6), axis=(1, 2, 3))
    assert np.all(dropped ^ kept), "every example is exactly kept or exactly dropped"
    assert 0 < kept.sum() < len(kept)


@pytest.mark.parametrize("inverted", [False, True])
def test_batch_mode_keeps_or_drops_the_whole_batch(inverted):
    p = 0.5
    shortcut, residual = pair(shape=(8, 4))
    generator = keras.random.SeedGenerator(5)
    kept_value = shortcut + (residual / np.float32(p) if inverted else residual)
    outcomes = set()
    for _ in range(40):
        output = keras.ops.convert_to_numpy(
            ops.stochastic_depth(shortcut, residual, p, training=True, inverted=inverted, seed=generator)
        )
        if np.allclose(output, shortcut, rtol=1e-6):
            outcomes.add("dropped")
        else:
            np.testing.assert_allclose(output, kept_value, rtol=1e-5)
            outcomes.add("kept")
    assert outcomes == {"dropped", "kept"}


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_batch_mode_keep_rate_matches_survival_probability(p):
    draws = 2000
    generator = keras.random.SeedGenerator(1234)
    residual = np.zeros((2, 3), "float32")
    gates = np.array(
        [
            keras.ops.convert_to_numpy(ops.bernoulli_gate(residual, p, mode="batch", seed=generator))
            for _ in range(draws)
        ]
    )
    assert set(np.unique(gates)) <= {0.0, 1.0}
    assert abs(gates.mean() - p) <= binomial_bound(p, draws)


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_sample_mode_keep_rate_matches_survival_probability(p):
    examples = 20000
    shortcut = np.zeros((examples, 2, 2, 1), "float32")
    residual = np.ones((examples, 2, 2, 1), "float32")
    output = keras.ops.convert_to_numpy(
        ops.stochastic_depth(shortcut, residual, p, training=True, mode="sample", seed=keras.random.SeedGenerator(99))
    )
    per_example = output.reshape(examples, -1)
    assert np.all(per_example == per_example[:, :1]), "one gate per example"
    assert abs(per_example[:, 0].mean() - p) <= binomial_bound(p, examples)


@pytest.mark.parametrize("inverted", [False, True])
@pytest.mark.parametrize("p", [0.25, 0.7])
def test_training_output_is_unbiased_estimate_of_inference_output(p, inverted):
    examples = 20000
    rng = np.random.default_rng(3)
    shortcut_row = rng.normal(size=(1, 5)).astype("float32")
    residual_row = rng.normal(size=(1, 5)).astype("float32")
    shortcut = np.repeat(shortcut_row, examples, axis=0)
    residual = np.repeat(residual_row, examples, axis=0)
    training = keras.ops.convert_to_numpy(
        ops.stochastic_depth(
            shortcut,
            residual,
            p,
            training=True,
            mode="sample",
            inverted=inverted,
            seed=keras.random.SeedGenerator(7),
        )
    )
    inference = keras.ops.convert_to_numpy(
        ops.stochastic_depth(shortcut_row, residual_row, p, training=False, inverted=inverted)
    )
    # The training output is shortcut + c * b * residual with c = 1 or 1/p;
    # its mean over n examples deviates from inference by c * |residual| *
    # (keep rate - p), bounded as a binomial proportion.
    scale = 1.0 / p if inverted else 1.0
    bound = scale * np.abs(residual_row[0]) * binomial_bound(p, examples) + 1e-5
    assert np.all(np.abs(training.mean(axis=0) - inference[0]) <= bound)


def test_int_seed_is_stateless_and_seed_generator_is_not():
    residual = np.zeros((3, 2), "float32")
    fixed = [float(ops.bernoulli_gate(residual, 0.5, seed=42)) for _ in range(20)]
    assert len(set(fixed)) == 1
    generator = keras.random.SeedGenerator(42)
    moving = [float(ops.bernoulli_gate(residual, 0.5, seed=generator)) for _ in range(40)]
    assert set(moving) == {0.0, 1.0}


def test_same_seed_gives_same_gate_sequence():
    residual = np.zeros((16, 2), "float32")

    def sequence(seed):
        generator = keras.random.SeedGenerator(seed)
        return np.stack(
            [
                keras.ops.convert_to_numpy(ops.bernoulli_gate(residual, 0.5, mode="sample", seed=generator))
                for _ in range(10)
            ]
        )

    np.testing.assert_array_equal(sequence(3), sequence(3))
    assert not np.array_equal(sequence(3), sequence(4))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_compiled_function_draws_a_fresh_gate_every_call(jit_compile):
    generator = keras.random.SeedGenerator(0)
    shortcut = np.zeros((2, 3), "float32")
    outputs, _ = outputs_and_gradients(
        lambda r: ops.stochastic_depth(shortcut, r, 0.5, training=True, seed=generator),
        [np.ones((2, 3), "float32")],
        state=[generator.state],
        jit_compile=jit_compile,
        calls=60,
    )
    assert set(outputs[:, 0, 0]) == {0.0, 1.0}


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("inverted", [False, True])
def test_output_keeps_input_dtype(dtype, training, inverted):
    shortcut, residual = (keras.ops.cast(t, dtype) for t in pair())
    output = ops.stochastic_depth(
        shortcut,
        residual,
        0.6,
        training=training,
        inverted=inverted,
        mode="sample",
        seed=keras.random.SeedGenerator(0),
    )
    # JAX without `jax_enable_x64` makes float64 float32: the input's dtype, whichever it is.
    assert keras.backend.standardize_dtype(output.dtype) == keras.backend.standardize_dtype(shortcut.dtype)


def test_tensor_survival_probability_is_used_in_graph():
    shortcut, residual = pair()
    variable = keras.Variable(0.25, trainable=False)
    first = ops.stochastic_depth(shortcut, residual, variable, training=False)
    variable.assign(0.75)
    second = ops.stochastic_depth(shortcut, residual, variable, training=False)
    np.testing.assert_allclose(first, shortcut + 0.25 * residual, rtol=1e-6)
    np.testing.assert_allclose(second, shortcut + 0.75 * residual, rtol=1e-6)


def test_inverted_tensor_zero_gives_shortcut_not_nan():
    shortcut, residual = pair()
    variable = keras.Variable(0.0, trainable=False)
    output = ops.stochastic_depth(
        shortcut, residual, variable, training=True, inverted=True, seed=keras.random.SeedGenerator(0)
    )
    np.testing.assert_array_equal(output, shortcut)


# Bad input: each error names the argument, the expectation and the value.


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan"), float("inf")])
def test_survival_probability_out_of_range_is_refused(value):
    shortcut, residual = pair()
    with pytest.raises(
        ValueError,
        match=r"Invalid value received for argument `survival_probability`. Expected a float between 0 and 1. Received: survival_probability=",
    ):
        ops.stochastic_depth(shortcut, residual, value)


@pytest.mark.parametrize("value", [True, "0.5", None, [0.5]])
def test_survival_probability_not_a_number_is_refused(value):
    shortcut, residual = pair()
    with pytest.raises(TypeError, match=r"argument `survival_probability`. Expected a float"):
        ops.stochastic_depth(shortcut, residual, value)


def test_survival_probability_non_scalar_tensor_is_refused():
    shortcut, residual = pair()
    with pytest.raises(TypeError, match=r"Received: survival_probability with shape=\(2,\)"):
        ops.stochastic_depth(shortcut, residual, keras.ops.convert_to_tensor([0.5, 0.5]))


def test_inverted_with_zero_is_refused():
    shortcut, residual = pair()
    with pytest.raises(
        ValueError, match=r"Expected a value greater than 0 with `inverted=True`.*survival_probability=0.0"
    ):
        ops.stochastic_depth(shortcut, residual, 0.0, inverted=True)


@pytest.mark.parametrize("mode", ["row", "Batch", None, 1])
def test_unknown_mode_is_refused(mode):
    shortcut, residual = pair()
    with pytest.raises(
        ValueError, match=r"argument `mode`. Expected one of \('batch', 'sample', 'subset'\). Received: mode="
    ):
        ops.stochastic_depth(shortcut, residual, 0.5, mode=mode)


def test_non_bool_inverted_is_refused():
    shortcut, residual = pair()
    with pytest.raises(TypeError, match=r"argument `inverted`. Expected a bool. Received: inverted='yes'"):
        ops.stochastic_depth(shortcut, residual, 0.5, inverted="yes")


def test_tensor_training_flag_is_refused():
    shortcut, residual = pair()
    with pytest.raises(TypeError, match=r"argument `training`. Expected a Python bool or None"):
        ops.stochastic_depth(shortcut, residual, 0.5, training=keras.ops.convert_to_tensor(True))


@pytest.mark.parametrize("seed", [-1, 1.5, "7"])
def test_bad_seed_is_refused(seed):
    shortcut, residual = pair()
    with pytest.raises((TypeError, ValueError), match=r"argument `seed`. Expected"):
        ops.stochastic_depth(shortcut, residual, 0.5, seed=seed)


def test_shapes_that_differ_are_refused_naming_both():
    shortcut = np.zeros((2, 4, 4, 8), "float32")
    residual = np.zeros((2, 4, 4, 16), "float32")
    with pytest.raises(ValueError, match=r"same shape.*shortcut.shape=\(2, 4, 4, 8\), residual.shape=\(2, 4, 4, 16\)"):
        ops.stochastic_depth(shortcut, residual, 0.5)


def test_broadcastable_shapes_are_refused():
    shortcut = np.zeros((2, 4, 4, 8), "float32")
    residual = np.zeros((2, 1, 1, 8), "float32")
    with pytest.raises(ValueError, match=r"Expected shortcut and residual of the same shape"):
        ops.stochastic_depth(shortcut, residual, 0.5)


def test_integer_inputs_are_refused():
    shortcut = np.zeros((2, 3), "int32")
    residual = np.zeros((2, 3), "int32")
    with pytest.raises(TypeError, match=r"Expected a floating point tensor.*Received: shortcut with dtype=int32"):
        ops.stochastic_depth(shortcut, residual, 0.5)


# mode="subset": a fixed number of kept examples per call.


@pytest.mark.parametrize(
    "batch, p, expected",
    [(10, 0.6, 6), (10, 0.04, 1), (10, 0.0, 0), (10, 1.0, 10), (8, 0.55, 4), (3, 0.5, 2)],
)
def test_kept_count_rounds_and_keeps_at_least_one(batch, p, expected):
    assert int(ops.kept_count(batch, p)) == expected


def test_subset_gate_keeps_exactly_k_uniformly_random_examples():
    generator = keras.random.SeedGenerator(0)
    residual = np.zeros((10, 3, 3, 2), "float32")
    calls = 500
    gates = np.stack([keras.ops.convert_to_numpy(ops.subset_gate(residual, 0.6, seed=generator)) for _ in range(calls)])
    assert gates.shape == (calls, 10, 1, 1, 1)
    assert np.all(gates.reshape(calls, 10).sum(axis=1) == 6)
    # Every example is kept with probability k / batch = 0.6.
    assert np.all(np.abs(gates.reshape(calls, 10).mean(axis=0) - 0.6) <= binomial_bound(0.6, calls))


@pytest.mark.parametrize("inverted", [False, True])
def test_subset_training_scales_kept_rows_by_batch_over_k(inverted):
    shortcut, residual = pair(shape=(8, 2))
    output = ops.stochastic_depth(shortcut, residual, 0.55, training=True, mode="subset", inverted=inverted, seed=3)
    scale = (output - shortcut) / residual
    kept = np.abs(scale) > 1e-6
    assert kept.all(axis=1).sum() == 4 and (kept.any(axis=1) == kept.all(axis=1)).all()
    np.testing.assert_allclose(scale[kept], 8 / 4 if inverted else 1.0, rtol=1e-5)


def test_subset_inference_is_the_sample_inference():
    shortcut, residual = pair()
    for inverted in (False, True):
        np.testing.assert_array_equal(
            ops.stochastic_depth(shortcut, residual, 0.7, mode="subset", inverted=inverted),
            ops.stochastic_depth(shortcut, residual, 0.7, mode="sample", inverted=inverted),
        )


def test_kept_rows_are_the_rows_the_gate_keeps():
    inputs = np.zeros((12, 4), "float32")
    for mode in ("sample", "subset"):
        gate = ops.draw_gate(inputs, 0.5, mode=mode, seed=9)
        indices, _ = ops.kept_rows(inputs, 0.5, mode=mode, seed=9)
        assert (
            sorted(keras.ops.convert_to_numpy(indices).tolist())
            == np.flatnonzero(keras.ops.convert_to_numpy(gate)).tolist()
        )


def test_kept_rows_refuses_batch_mode():
    with pytest.raises(ValueError, match="Invalid value received for argument `mode`. Expected a per-example mode"):
        ops.kept_rows(np.zeros((2, 3), "float32"), 0.5, mode="batch")


def test_bernoulli_gate_refuses_subset_mode():
    with pytest.raises(ValueError, match="Invalid value received for argument `mode`. Expected 'batch' or 'sample'"):
        ops.bernoulli_gate(np.zeros((2, 3), "float32"), 0.5, mode="subset")
