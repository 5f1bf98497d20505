"""Tests of the `ShakeDrop` merge layer and its functional op `sdt.ops.shake_drop`."""

import math

import keras
import numpy as np
import pytest

import stochastic_depth_tf as sdt
from tests.helpers import images, residual_model
from tests.layer_checks import (
    assert_training_step,
    outputs_and_gradients,
    run_standard_layer_checks,
    skip_torch_compile,
)

SIGMAS = 5.0  # 5-sigma bounds with fixed seeds, as in tests/test_ops.py
SHAPE = (4, 4, 3)  # of the inputs, and of `residual_model`'s by default


def forward_and_gradient(layer, shortcut, residual, jit_compile=False, calls=1):
    """The layer's training outputs and d(sum of outputs)/d(residual), `calls` times in one function."""
    layer([shortcut, residual])  # build outside the differentiated function
    outputs, (gradients,) = outputs_and_gradients(
        lambda r: layer([shortcut, r], training=True),
        [residual],
        state=layer.non_trainable_variables,
        jit_compile=jit_compile,
        calls=calls,
    )
    return outputs, gradients


# The standard checks shared by every layer.


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"survival_probability": 0.7, "mode": "sample", "shake_mode": "element", "seed": 3},
        {"survival_probability": 0.0, "alpha_range": (0.0, 0.0), "beta_range": (0.5, 1.5)},
        {"survival_probability": 1.0},
    ],
)
def test_standard_layer_checks(kwargs):
    run_standard_layer_checks(lambda **extra: sdt.ShakeDrop(**kwargs, **extra), [(5, 5, 3), (5, 5, 3)])


@skip_torch_compile
def test_training_step_under_xla():
    assert_training_step(lambda **extra: sdt.ShakeDrop(0.5, **extra), [(5, 5, 3), (5, 5, 3)], jit_compile=True)


def test_registered_for_serialization():
    assert keras.saving.get_registered_name(sdt.ShakeDrop) == "stochastic_depth_tf>ShakeDrop"
    assert sdt.layers.ShakeDrop is sdt.ShakeDrop


# Forward values with forced draws.


def test_forward_with_forced_draws_is_b_plus_alpha_minus_b_alpha():
    shortcut, residual = images(SHAPE, n=3, seed=1), images(SHAPE, n=3, seed=2)
    gate = np.array([1.0, 0.0, 0.0], "float32").reshape(3, 1, 1, 1)
    alpha = np.array([0.7, -0.4, 0.9], "float32").reshape(3, 1, 1, 1)
    beta = np.array([0.2, 0.6, 0.1], "float32").reshape(3, 1, 1, 1)
    forward, backward = (keras.ops.convert_to_numpy(s) for s in sdt.ops.shake_drop_scales(gate, alpha, beta))
    np.testing.assert_array_equal(forward, gate + alpha - gate * alpha)
    np.testing.assert_array_equal(np.ravel(forward), np.array([1.0, -0.4, 0.9], "float32"))
    np.testing.assert_array_equal(np.ravel(backward), np.array([1.0, 0.6, 0.1], "float32"))
    output = shortcut + keras.ops.convert_to_numpy(sdt.ops.scale_with_gradient(residual, forward, backward))
    np.testing.assert_array_equal(output, shortcut + forward * residual)


def test_dropped_branch_is_scaled_by_alpha():
    # p = 0 forces b = 0; a one-point range forces alpha.
    shortcut, residual = images(SHAPE, seed=1), images(SHAPE, seed=2)
    for alpha in (-0.5, 0.0, 0.75):
        output = sdt.ShakeDrop(0.0, alpha_range=(alpha, alpha))([shortcut, residual], training=True)
        np.testing.assert_array_equal(output, shortcut + np.float32(alpha) * residual)


def test_kept_branch_is_a_plain_add():
    layer = sdt.ShakeDrop(1.0, alpha_range=(-1.0, -1.0))
    shortcut, residual = images(SHAPE, seed=1), images(SHAPE, seed=2)
    np.testing.assert_array_equal(layer([shortcut, residual], training=True), shortcut + residual)


@pytest.mark.parametrize("shake_mode, per_example", [("sample", True), ("element", False)])
def test_shake_mode_draws_alpha_per_example_or_per_element(shake_mode, per_example):
    layer = sdt.ShakeDrop(0.0, shake_mode=shake_mode, seed=0)
    output = keras.ops.convert_to_numpy(
        layer([np.zeros((8, 4, 4, 3), "float32"), np.ones((8, 4, 4, 3), "float32")], training=True)
    )
    assert np.all((output >= -1.0) & (output < 1.0))
    constant_within_example = np.all(output == output[:, :1, :1, :1])
    assert constant_within_example == per_example
    assert len(np.unique(output[:, 0, 0, 0])) == 8  # examples differ either way


def test_draws_are_in_their_ranges():
    layer = sdt.ShakeDrop(0.5, alpha_range=(-0.5, 2.0), beta_range=(0.5, 1.5), mode="sample", seed=2)
    shortcut, residual = np.zeros((16, 3), "float32"), np.ones((16, 3), "float32")
    forward, backward = forward_and_gradient(layer, shortcut, residual, calls=20)
    shaken = forward != 1.0
    assert shaken.any() and (~shaken).any()
    assert np.all((forward[shaken] >= -0.5) & (forward[shaken] < 2.0))
    assert np.all((backward[shaken] >= 0.5) & (backward[shaken] < 1.5))


# The gradient: beta-scaled, not alpha.


@pytest.mark.parametrize("jit_compile", [False, True])
def test_gradient_of_dropped_branch_is_beta_not_alpha(jit_compile):
    layer = sdt.ShakeDrop(0.0, alpha_range=(-0.5, -0.5), beta_range=(0.25, 0.25))
    shortcut, residual = images(SHAPE, seed=1), images(SHAPE, seed=2)
    output, gradient = forward_and_gradient(layer, shortcut, residual, jit_compile=jit_compile)
    np.testing.assert_allclose(output[0], shortcut - 0.5 * residual, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(gradient[0], np.full_like(residual, 0.25))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_gradient_of_kept_branch_is_one(jit_compile):
    layer = sdt.ShakeDrop(1.0, alpha_range=(-0.5, -0.5), beta_range=(0.25, 0.25))
    _, gradient = forward_and_gradient(layer, images(SHAPE, seed=1), images(SHAPE, seed=2), jit_compile=jit_compile)
    np.testing.assert_array_equal(gradient[0], np.ones((4, 4, 4, 3), "float32"))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_random_gradient_is_the_backward_scale_of_each_draw(jit_compile):
    # With a zero shortcut and a residual of ones, the output is the forward
    # scale and the gradient the backward scale of the same draw: 1 and 1
    # where b = 1, alpha and an independent beta in [0, 1) where b = 0.
    shortcut, residual = np.zeros((8, 2, 2, 3), "float32"), np.ones((8, 2, 2, 3), "float32")
    for mode, shake_mode in (("batch", "sample"), ("sample", "sample"), ("sample", "element")):
        layer = sdt.ShakeDrop(0.5, mode=mode, shake_mode=shake_mode, seed=7)
        forward, backward = forward_and_gradient(layer, shortcut, residual, jit_compile=jit_compile, calls=12)
        kept = forward == 1.0
        assert kept.any() and (~kept).any()
        np.testing.assert_array_equal(backward[kept], 1.0)
        assert np.all((backward[~kept] >= 0.0) & (backward[~kept] < 1.0))
        assert not np.any(backward[~kept] == forward[~kept])
        if mode == "batch":  # one b per call
            assert all(np.all(k) or not np.any(k) for k in kept)
        if shake_mode == "sample":  # one beta per example
            np.testing.assert_array_equal(backward, np.broadcast_to(backward[:, :, :1, :1, :1], backward.shape))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_gradient_under_mixed_precision(jit_compile):
    for policy in ("mixed_float16", "mixed_bfloat16"):
        layer = sdt.ShakeDrop(0.0, alpha_range=(-0.5, -0.5), beta_range=(0.25, 0.25), dtype=policy)
        shortcut = images(SHAPE, seed=1).astype(layer.compute_dtype)
        residual = images(SHAPE, seed=2).astype(layer.compute_dtype)
        output, gradient = forward_and_gradient(layer, shortcut, residual, jit_compile=jit_compile)
        np.testing.assert_array_equal(gradient[0], np.full(residual.shape, 0.25, "float32"))
        expected = shortcut.astype("float32") - 0.5 * residual.astype("float32")
        np.testing.assert_allclose(output[0], expected, rtol=1e-2, atol=1e-2)


def test_functional_op_gradient_under_xla():
    generator = keras.random.SeedGenerator(4)
    zeros = np.zeros((6, 3), "float32")
    output, (gradient,) = outputs_and_gradients(
        lambda r: sdt.ops.shake_drop(zeros, r, 0.0, training=True, seed=generator),
        [np.ones((6, 3), "float32")],
        state=[generator.state],
        jit_compile=True,
    )
    assert np.all(gradient >= 0.0) and np.all(gradient < 1.0)
    assert not np.any(gradient == output)


# Inference.


def test_inference_is_the_expected_scale():
    # E[b + alpha - b * alpha] = p + (1 - p) * (low + high) / 2, with p = 0.3.
    shortcut, residual = images(SHAPE, seed=1), images(SHAPE, seed=2)
    for alpha_range, expected_scale in (
        ((-1.0, 1.0), 0.3),
        ((0.0, 2.0), 1.0),
        ((-1.0, 0.5), 0.3 + 0.7 * -0.25),
        ((0.0, 0.0), 0.3),
    ):
        layer = sdt.ShakeDrop(0.3, alpha_range=alpha_range)
        np.testing.assert_allclose(
            layer([shortcut, residual]), shortcut + np.float32(expected_scale) * residual, rtol=1e-6, atol=1e-6
        )
        assert sdt.ops.shake_drop_expected_scale(0.3, alpha_range) == pytest.approx(expected_scale)


def test_training_mean_matches_inference():
    # f = b + alpha - b * alpha; p = 0.3, alpha ~ U(-1, 1): E f = 0.3, var f =
    # p + (1 - p) / 3 - p^2 = 0.4433. 20000 independent rows: 5 sigma is 0.024.
    rows, p = 20000, 0.3
    layer = sdt.ShakeDrop(p, mode="sample", seed=11)
    forward = keras.ops.convert_to_numpy(
        layer([np.zeros((rows, 1), "float32"), np.ones((rows, 1), "float32")], training=True)
    )
    variance = p + (1 - p) / 3 - p**2
    assert abs(forward.mean() - p) <= SIGMAS * math.sqrt(variance / rows)


def test_predict_and_evaluate_are_deterministic():
    model = residual_model(sdt.ShakeDrop(0.5, mode="sample", seed=0))
    x = images(SHAPE, n=16)
    first = model.predict(x, verbose=0)
    np.testing.assert_array_equal(model.predict(x, verbose=0), first)


@pytest.mark.tensorflow_only  # counts tf.function traces
def test_changing_survival_probability_does_not_retrace():
    import tensorflow as tf

    layer = sdt.ShakeDrop(0.5, alpha_range=(0.0, 1.0))
    shortcut, residual = images(SHAPE, seed=1), images(SHAPE, seed=2)
    traces = []

    @tf.function(jit_compile=True)
    def infer(s, r):
        traces.append(1)
        return layer([s, r], training=False)

    for p in (0.5, 0.9, 0.1):
        layer.survival_probability_variable.assign(p)
        expected = shortcut + np.float32(p + (1 - p) * 0.5) * residual
        np.testing.assert_allclose(infer(shortcut, residual), expected, rtol=1e-5, atol=1e-6)
    assert len(traces) == 1


# Statistics of b.


def test_batch_gate_rate_within_binomial_bound():
    calls, p = 400, 0.3
    layer = sdt.ShakeDrop(p, seed=21)
    forward, _ = forward_and_gradient(
        layer, np.zeros((2, 1), "float32"), np.ones((2, 1), "float32"), jit_compile=True, calls=calls
    )
    kept = forward[:, 0, 0] == 1.0
    assert np.all((forward == 1.0) == kept[:, None, None])  # one b for the whole batch
    assert abs(kept.mean() - p) <= SIGMAS * math.sqrt(p * (1 - p) / calls)


def test_sample_gate_rate_within_binomial_bound():
    rows, p = 5000, 0.7
    layer = sdt.ShakeDrop(p, mode="sample", seed=22)
    forward = keras.ops.convert_to_numpy(
        layer([np.zeros((rows, 1), "float32"), np.ones((rows, 1), "float32")], training=True)
    )
    kept = forward[:, 0] == 1.0
    assert abs(kept.mean() - p) <= SIGMAS * math.sqrt(p * (1 - p) / rows)


def test_compiled_step_draws_fresh_values_every_call_under_xla():
    layer = sdt.ShakeDrop(0.5, mode="sample", seed=4)
    forward, _ = forward_and_gradient(
        layer, np.zeros((8, 1), "float32"), np.ones((8, 1), "float32"), jit_compile=True, calls=10
    )
    assert len({tuple(f[:, 0]) for f in forward}) == 10


def test_same_seed_same_draws_and_unseeded_layers_independent():
    shortcut, residual = np.zeros((64, 1), "float32"), np.ones((64, 1), "float32")

    def draws(layer, calls=5):
        return np.concatenate(
            [keras.ops.convert_to_numpy(layer([shortcut, residual], training=True))[:, 0] for _ in range(calls)]
        )

    np.testing.assert_array_equal(
        draws(sdt.ShakeDrop(0.5, mode="sample", seed=8)), draws(sdt.ShakeDrop(0.5, mode="sample", seed=8))
    )
    assert not np.array_equal(draws(sdt.ShakeDrop(0.5, mode="sample")), draws(sdt.ShakeDrop(0.5, mode="sample")))


def test_int_seed_of_the_op_draws_gate_and_alpha_independently():
    # A stateless int seed must not reuse the gate's uniform for alpha: with
    # p = 0.5 and alpha ~ U(0, 1), correlated draws would put every shaken
    # example's alpha at or above 0.5.
    rows = 2000
    forward = keras.ops.convert_to_numpy(
        sdt.ops.shake_drop(
            np.zeros((rows, 1), "float32"),
            np.ones((rows, 1), "float32"),
            0.5,
            training=True,
            mode="sample",
            alpha_range=(0.0, 1.0),
            seed=5,
        )
    )[:, 0]
    shaken = forward[forward != 1.0]
    assert abs(np.mean(shaken < 0.5) - 0.5) <= SIGMAS * math.sqrt(0.25 / len(shaken))


# State: variable and seed, kept but not weights; the scheduler finds the layer.


def test_survival_probability_is_not_a_weight():
    layer = sdt.ShakeDrop(0.5)
    model = residual_model(layer)
    assert layer.weights == [] and layer.count_params() == 0
    assert len(model.get_weights()) == len(residual_model(keras.layers.Add()).get_weights())


def test_survival_probability_setter_updates_variable_and_config():
    layer = sdt.ShakeDrop(0.5)
    layer.survival_probability = 0.25
    assert float(layer.survival_probability_variable.numpy()) == 0.25
    assert layer.get_config()["survival_probability"] == 0.25
    with pytest.raises(ValueError, match="Invalid value received for argument `survival_probability`"):
        layer.survival_probability = 1.5


def test_get_config_and_from_config_of_a_json_config():
    layer = sdt.ShakeDrop(
        0.6, alpha_range=(-0.5, 1.0), beta_range=(0.0, 2.0), mode="sample", seed=3, shake_mode="element"
    )
    config = layer.get_config()
    assert {
        k: config[k] for k in ("survival_probability", "alpha_range", "beta_range", "mode", "seed", "shake_mode")
    } == {
        "survival_probability": 0.6,
        "alpha_range": (-0.5, 1.0),
        "beta_range": (0.0, 2.0),
        "mode": "sample",
        "seed": 3,
        "shake_mode": "element",
    }
    json_config = {**config, "alpha_range": [-0.5, 1.0], "beta_range": [0.0, 2.0]}  # as a .keras file stores it
    assert sdt.ShakeDrop.from_config(json_config).get_config() == config


def test_keras_file_keeps_survival_probability_and_seed_state(tmp_path):
    model = residual_model(sdt.ShakeDrop(0.5, mode="sample", seed=5))
    layer = model.layers[-1]
    layer.survival_probability_variable.assign(0.8)
    ones = np.ones((32, 4, 4, 3), "float32")
    layer([np.zeros_like(ones), ones], training=True)  # advance the generator
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True).layers[-1]
    assert float(loaded.survival_probability_variable.numpy()) == pytest.approx(0.8)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(layer([np.zeros_like(ones), ones], training=True)),
        keras.ops.convert_to_numpy(loaded([np.zeros_like(ones), ones], training=True)),
    )


@pytest.mark.tensorflow_only
def test_tf_train_checkpoint_keeps_the_seed_generator_state(tmp_path):
    import tensorflow as tf

    layer = sdt.ShakeDrop(0.5, seed=5)
    model = residual_model(layer)
    layer.seed_generator.state.assign([5, 77])
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "checkpoint"))
    layer.seed_generator.state.assign([0, 0])
    tf.train.Checkpoint(model=model).restore(path).assert_existing_objects_matched()
    np.testing.assert_array_equal(layer.seed_generator.state.numpy(), [5, 77])


def test_scheduler_and_linear_decay_drive_shake_drop_layers():
    probabilities = sdt.schedules.linear_decay(2, final_survival_probability=0.5)
    inputs = keras.Input((4,))
    x = inputs
    for p in probabilities:
        x = sdt.ShakeDrop(p)([x, keras.layers.Dense(4)(x)])
    model = keras.Model(inputs, keras.layers.Dense(1)(x))
    model.compile("sgd", "mse")
    scheduler = sdt.callbacks.SurvivalProbabilityScheduler(duration=2)
    history = model.fit(np.ones((8, 4)), np.ones((8, 1)), epochs=3, verbose=0, callbacks=[scheduler])
    assert [layer.name for layer in sdt.callbacks.stochastic_depth_layers(model)] == [
        layer.name for layer in model.layers if isinstance(layer, sdt.ShakeDrop)
    ]
    assert scheduler.current_values() == pytest.approx(dict(zip(scheduler.current_values(), probabilities)))
    assert history.history["mean_survival_probability"] == pytest.approx([1.0, (1.0 + 0.625) / 2, 0.625])


# Bad input.


def assert_refused(error, message, **kwargs):
    with pytest.raises(error, match=message):
        sdt.ShakeDrop(**kwargs)


def test_survival_probability_outside_zero_one_is_refused():
    assert_refused(
        ValueError,
        r"Invalid value received for argument `survival_probability`. Expected a float between 0 and 1. Received: survival_probability=1.5",
        survival_probability=1.5,
    )
    assert_refused(ValueError, r"Invalid value received for argument `survival_probability`", survival_probability=-0.1)
    assert_refused(TypeError, r"Invalid type received for argument `survival_probability`", survival_probability=True)


def test_ranges_with_low_above_high_or_not_finite_are_refused():
    assert_refused(
        ValueError,
        r"Invalid value received for argument `alpha_range`. Expected a pair \(low, high\) of finite floats with low <= high. Received: alpha_range=\(1.0, -1.0\)",
        alpha_range=(1.0, -1.0),
    )
    assert_refused(
        ValueError, r"Invalid value received for argument `beta_range`. Expected a pair", beta_range=(1.0, 0.0)
    )
    assert_refused(ValueError, r"Invalid value received for argument `alpha_range`", alpha_range=(0.0, float("inf")))
    assert_refused(ValueError, r"Invalid value received for argument `alpha_range`", alpha_range=(0.0, float("nan")))


def test_ranges_that_are_not_pairs_of_numbers_are_refused():
    assert_refused(
        TypeError,
        r"Invalid type received for argument `alpha_range`. Expected a pair \(low, high\) of floats. Received: alpha_range=1.0",
        alpha_range=1.0,
    )
    assert_refused(TypeError, r"Invalid type received for argument `beta_range`", beta_range=(0.0, 0.5, 1.0))
    assert_refused(TypeError, r"Invalid type received for argument `beta_range`", beta_range=("0", "1"))


def test_unknown_modes_and_bad_seeds_are_refused():
    # "subset" is a stochastic depth mode for blocks that skip rows; ShakeDrop computes every row.
    assert_refused(
        ValueError,
        r"Invalid value received for argument `mode`. Expected one of \('batch', 'sample'\). Received: mode='subset'",
        mode="subset",
    )
    assert_refused(
        ValueError,
        r"Invalid value received for argument `shake_mode`. Expected one of \('sample', 'element'\). Received: shake_mode='channel'",
        shake_mode="channel",
    )
    assert_refused(ValueError, r"Invalid value received for argument `seed`", seed=-1)
    assert_refused(
        TypeError,
        r"Invalid type received for argument `seed`. Expected None or an int",
        seed=keras.random.SeedGenerator(1),
    )


def test_bad_op_arguments_are_refused():
    x = images(SHAPE)
    with pytest.raises(ValueError, match=r"Invalid value received for argument `alpha_range`"):
        sdt.ops.shake_drop(x, x, 0.5, alpha_range=(2.0, 1.0))
    with pytest.raises(ValueError, match=r"Invalid value received for argument `survival_probability`"):
        sdt.ops.shake_drop(x, x, 2.0)
    with pytest.raises(TypeError, match=r"Invalid type received for argument `training`"):
        sdt.ops.shake_drop(x, x, 0.5, training="yes")


def test_inputs_not_a_pair_are_refused():
    x = images(SHAPE)
    for inputs, received in ((x, "an object of type"), ([x], "a list of length 1"), ((x, x, x), "a tuple of length 3")):
        with pytest.raises(
            ValueError,
            match=rf"argument `inputs`. Expected a list or tuple of exactly two tensors \[shortcut, residual\]. Received: {received}",
        ):
            sdt.ShakeDrop(0.5)(inputs)


def test_shapes_that_differ_and_integer_inputs_are_refused():
    with pytest.raises(ValueError, match=r"Invalid shapes received for `inputs`"):
        sdt.ShakeDrop(0.5)([keras.Input((8, 8, 16)), keras.Input((4, 4, 32))])
    x = np.ones((2, 3), "int32")
    with pytest.raises(TypeError, match=r"Expected a floating point tensor.*dtype=int32"):
        sdt.ops.shake_drop(x, x, 0.5)
