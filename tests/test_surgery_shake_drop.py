"""`strip_stochastic_depth` and `apply_stochastic_depth` on models with `ShakeDrop` layers."""

import keras
import numpy as np
import pytest

import stochastic_depth_tf as sdt
from tests.helpers import numpy, vectors


def shake_drop_chain(alpha_range=(-1.0, 1.0), survival_probabilities=(0.8, 0.6)):
    inputs = keras.Input((4,))
    x = inputs
    for index, p in enumerate(survival_probabilities):
        branch = keras.layers.Dense(4, name=f"branch{index}")(x)
        x = sdt.ShakeDrop(p, alpha_range=alpha_range, name=f"shake{index}")([x, branch])
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(x))


def test_strip_folds_the_expected_scale_of_the_current_survival_probability():
    model = shake_drop_chain(alpha_range=(-1.0, 0.5))
    model.get_layer("shake0").survival_probability_variable.assign(0.9)  # as a schedule would
    stripped = sdt.strip_stochastic_depth(model)
    scales = {layer.name: layer.scale for layer in stripped.layers if isinstance(layer, keras.layers.Rescaling)}
    # E[b + alpha - b * alpha] = p + (1 - p) * (low + high) / 2
    assert scales == pytest.approx(
        {"shake0_expected_scale": 0.9 + 0.1 * -0.25, "shake1_expected_scale": 0.6 + 0.4 * -0.25}
    )
    np.testing.assert_allclose(
        numpy(stripped(vectors())), numpy(model(vectors(), training=False)), rtol=1e-6, atol=1e-6
    )


def test_strip_leaves_only_stock_layers_named_after_shake_drop():
    stripped = sdt.strip_stochastic_depth(shake_drop_chain())
    assert not any(isinstance(layer, sdt.ShakeDrop) for layer in stripped.layers)
    assert [layer.name for layer in stripped.layers if isinstance(layer, keras.layers.Add)] == ["shake0", "shake1"]
    assert all(type(layer).__module__.startswith("keras") for layer in stripped.layers)


def test_strip_with_an_expected_scale_of_one_is_a_plain_add():
    # p = 1, or alpha ~ U(1, 1): the inference form is already shortcut + residual.
    for alpha_range, probabilities in (((-1.0, 1.0), (1.0, 1.0)), ((1.0, 1.0), (0.5, 0.2))):
        model = shake_drop_chain(alpha_range=alpha_range, survival_probabilities=probabilities)
        stripped = sdt.strip_stochastic_depth(model)
        assert not any(isinstance(layer, keras.layers.Rescaling) for layer in stripped.layers)
        np.testing.assert_allclose(
            numpy(stripped(vectors())), numpy(model(vectors(), training=False)), rtol=1e-6, atol=1e-6
        )


def test_strip_pyramidnet_with_shake_drop_keeps_inference_and_weights():
    model = sdt.models.pyramidnet(8, 12, block="basic", input_shape=(12, 12, 3))
    images = np.random.default_rng(0).normal(size=(2, 12, 12, 3)).astype("float32")
    stripped = sdt.strip_stochastic_depth(model)
    assert not any(isinstance(layer, sdt.ShakeDrop) for layer in stripped.layers)
    assert stripped.count_params() == model.count_params()
    np.testing.assert_allclose(numpy(stripped(images)), numpy(model(images, training=False)), rtol=1e-5, atol=1e-6)


def test_apply_copies_keep_the_current_survival_probability_of_shake_drop():
    inputs = keras.Input((4,))
    x = sdt.ShakeDrop(0.5, name="shake")([inputs, keras.layers.Dense(4)(inputs)])
    x = keras.layers.Add(name="add")([x, keras.layers.Dense(4)(x)])
    model = keras.Model(inputs, x)
    model.get_layer("shake").survival_probability_variable.assign(0.7)
    applied = sdt.apply_stochastic_depth(model)
    assert isinstance(applied.get_layer("add"), sdt.StochasticDepth)
    assert float(applied.get_layer("shake").survival_probability_variable.numpy()) == pytest.approx(0.7)
