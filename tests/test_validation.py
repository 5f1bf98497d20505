"""Tests of `stochastic_depth_tf._validation`: the argument checks and the one seed policy."""

import re

import keras
import numpy as np
import pytest

import stochastic_depth_tf as sdt
from stochastic_depth_tf import _validation as validation
from stochastic_depth_tf.layers import stochastic_depth_layers
from stochastic_depth_tf.layers._merge import StochasticMerge

# The generic checks.


def test_choice_returns_a_listed_value():
    assert validation.validate_choice("step", ("epoch", "step"), name="unit") == "step"
    assert validation.validate_choice(None, ("avg", None), name="pooling") is None


@pytest.mark.parametrize("value", ["Step", 1, True, ("step",)])
def test_choice_refuses_anything_else_naming_the_argument(value):
    with pytest.raises(
        ValueError,
        match=r"Invalid value received for argument `unit`. Expected one of \('epoch', 'step'\). Received: unit=",
    ):
        validation.validate_choice(value, ("epoch", "step"), name="unit")


def test_choice_matches_none_and_numbers_by_identity_only():
    # `0 == False` and `1 == True`: a bool must not pass for a number, nor 0 for None.
    with pytest.raises(ValueError, match=r"argument `pooling`"):
        validation.validate_choice(0, ("avg", None), name="pooling")


def test_bool_accepts_python_and_numpy_bools():
    assert validation.validate_bool(np.bool_(True), name="flag") is True
    assert validation.validate_bool(False, name="flag") is False


@pytest.mark.parametrize("value", [1, 0, "yes", None])
def test_bool_refuses_non_bools_naming_the_argument(value):
    with pytest.raises(
        TypeError, match=r"Invalid type received for argument `skip_compute`. Expected a bool. Received: skip_compute="
    ):
        validation.validate_bool(value, name="skip_compute")


def test_positive_int_returns_a_python_int():
    assert validation.validate_positive_int(np.int64(3), name="epochs") == 3
    assert type(validation.validate_positive_int(np.int64(3), name="epochs")) is int


@pytest.mark.parametrize("value", [0, -2, 2.0, "3", True, np.bool_(True), None])
def test_positive_int_refuses_anything_else_naming_the_argument(value):
    with pytest.raises(
        ValueError, match=r"Invalid value received for argument `epochs`. Expected a positive int. Received: epochs="
    ):
        validation.validate_positive_int(value, name="epochs")


def test_positive_int_and_choice_say_what_was_expected_when_told():
    with pytest.raises(ValueError, match=r"argument `train_samples`. Expected None or a positive int. Received: "):
        validation.validate_positive_int(0, name="train_samples", expected="None or a positive int")
    with pytest.raises(ValueError, match=r"argument `per`. Expected 'epoch' or 'step'. Received: per='day'"):
        validation.validate_choice("day", ("epoch", "step"), name="per", expected="'epoch' or 'step'")


@pytest.mark.one_backend
def test_non_negative_returns_a_float_and_stays_public_in_schedules():
    assert validation.validate_non_negative(np.int64(3), name="gamma") == 3.0
    assert type(validation.validate_non_negative(0, name="t")) is float
    # Moved here beside the other checks; the API reference names it in `schedules`.
    assert sdt.schedules.validate_non_negative is validation.validate_non_negative


@pytest.mark.one_backend
@pytest.mark.parametrize(
    "value, error, expected",
    [
        (True, TypeError, "Expected a non-negative number. Received: gamma=True of type bool"),
        ("0.1", TypeError, "Expected a non-negative number. Received: gamma='0.1' of type str"),
        (-0.5, ValueError, "Expected a non-negative finite number. Received: gamma=-0.5"),
        (float("inf"), ValueError, "Expected a non-negative finite number. Received: gamma=inf"),
        (float("nan"), ValueError, "Expected a non-negative finite number. Received: gamma=nan"),
    ],
)
def test_non_negative_refuses_anything_else_naming_the_argument(value, error, expected):
    with pytest.raises(error, match=r"argument `gamma`. " + re.escape(expected)):
        validation.validate_non_negative(value, name="gamma")


@pytest.mark.one_backend
@pytest.mark.parametrize(
    "value, error", [(0, ValueError), (-3, ValueError), (2.0, TypeError), ("3", TypeError), (np.bool_(True), TypeError)]
)
def test_num_blocks_refuses_anything_but_a_positive_int(value, error):
    assert validation.validate_num_blocks(np.int64(4)) == 4
    with pytest.raises(error, match=r"argument `num_blocks`. Expected a positive int. Received: num_blocks="):
        validation.validate_num_blocks(value)


@pytest.mark.parametrize("value", [(0.0, 1.0), [-1, 1]])
def test_range_returns_a_tuple_of_floats(value):
    assert validation.validate_range(value, name="alpha_range") == (float(value[0]), float(value[1]))


def test_survival_probability_names_the_argument_in_the_inverted_message():
    with pytest.raises(
        ValueError, match=r"argument `final_survival_probability`. Expected a value greater than 0 with `inverted=True`"
    ):
        validation.validate_survival_probability(0.0, inverted=True, name="final_survival_probability")


def test_static_survival_probability_is_a_float_for_numbers_and_none_for_tensors():
    assert validation.static_survival_probability(np.float32(1.0), inverted=False) == 1.0
    assert validation.static_survival_probability(np.array(0.5), inverted=False) == 0.5
    assert validation.static_survival_probability(keras.ops.convert_to_tensor(0.5), inverted=False) is None


def test_pair_shapes_must_be_two():
    with pytest.raises(
        ValueError,
        match=r"Invalid value received for argument `input_shape`. Expected the shapes of exactly two tensors",
    ):
        validation.check_pair_shapes([(2, 3)])
    assert validation.check_pair_shapes([(None, 3), (2, None)]) == (2, 3)


# The seed policy: functions that draw take what keras.random takes; layers,
# builders and surgery take None or an int.


def test_seed_policy_of_functions_that_draw_accepts_a_generator():
    generator = keras.random.SeedGenerator(0)
    assert validation.validate_seed(generator, generator=True) is generator
    assert validation.validate_seed(np.int64(3), generator=True) == 3
    assert validation.validate_seed(None, generator=True) is None


def test_seed_policy_of_layers_refuses_a_generator():
    with pytest.raises(TypeError, match=r"Invalid type received for argument `seed`. Expected None or an int"):
        validation.validate_seed(keras.random.SeedGenerator(0))


@pytest.mark.parametrize("generator", [False, True])
@pytest.mark.parametrize("seed, error", [(-1, ValueError), (True, TypeError), (1.5, TypeError), ("7", TypeError)])
def test_seed_policy_refuses_bools_floats_strings_and_negatives(generator, seed, error):
    with pytest.raises(error, match=r"received for argument `seed`. Expected"):
        validation.validate_seed(seed, generator=generator)


@pytest.mark.parametrize(
    "make",
    [
        lambda seed: sdt.StochasticDepth(0.5, seed=seed),
        lambda seed: sdt.ShakeDrop(0.5, seed=seed),
        lambda seed: sdt.StochasticDepthBlock(keras.layers.Dense(2), seed=seed),
        lambda seed: sdt.models.cifar_resnet(depth=8, input_shape=(8, 8, 3), seed=seed),
        lambda seed: sdt.models.pyramidnet(depth=8, alpha=4, block="basic", input_shape=(8, 8, 3), seed=seed),
        lambda seed: sdt.models.efficientnet("b0", input_shape=(32, 32, 3), seed=seed),
    ],
    ids=["StochasticDepth", "ShakeDrop", "StochasticDepthBlock", "cifar_resnet", "pyramidnet", "efficientnet"],
)
def test_layers_and_builders_refuse_a_generator_before_building(make):
    with pytest.raises(TypeError, match=r"Invalid type received for argument `seed`. Expected None or an int"):
        make(keras.random.SeedGenerator(0))


@pytest.mark.parametrize("op", [sdt.ops.stochastic_depth, sdt.ops.shake_drop])
def test_functional_ops_take_a_generator(op):
    shortcut = np.zeros((4, 3), "float32")
    residual = np.ones((4, 3), "float32")
    output = op(shortcut, residual, 0.5, training=True, seed=keras.random.SeedGenerator(0))
    assert keras.ops.convert_to_numpy(output).shape == (4, 3)


# The merge layers' shared base, and the collector built on it.


def test_merge_layers_share_one_base_and_are_collected_with_blocks():
    inputs = keras.Input((3,))
    branch = keras.layers.Dense(3)(inputs)
    x = sdt.StochasticDepth(0.9, name="merge")([inputs, branch])
    x = sdt.ShakeDrop(0.8, name="shake")([x, keras.layers.Dense(3)(x)])
    x = sdt.StochasticDepthBlock(keras.layers.Dense(3), survival_probability=0.7, name="block")(x)
    model = keras.Model(inputs, x)
    assert isinstance(model.get_layer("merge"), StochasticMerge)
    assert isinstance(model.get_layer("shake"), StochasticMerge)
    assert [layer.name for layer in stochastic_depth_layers(model)] == ["merge", "shake", "block"]
    assert [layer.inverted for layer in stochastic_depth_layers(model)] == [False, False, False]


# The depth of the CIFAR-style builders, checked once for both.


@pytest.mark.one_backend
@pytest.mark.parametrize("depth, multiple, blocks", [(20, 6, 3), (np.int64(110), 6, 18), (272, 9, 30)])
def test_depth_gives_the_blocks_per_stage(depth, multiple, blocks):
    assert validation.validate_depth(depth, multiple=multiple, examples="(...)") == blocks


@pytest.mark.one_backend
@pytest.mark.parametrize("depth", [2, 21, 20.0, "20", True, None])
def test_depth_refuses_anything_else_naming_the_form(depth):
    with pytest.raises(
        ValueError,
        match=r"argument `depth`. Expected an int of the form 6n \+ 2 with n >= 1 for basic blocks \(20\). Received: depth=",
    ):
        validation.validate_depth(depth, multiple=6, examples="for basic blocks (20)")


# The one settings object: surgery, the KerasHub backbones and the builders validate through it once.


def _settings(**overrides):
    from stochastic_depth_tf._settings import StochasticDepthSettings

    arguments = dict(
        final_survival_probability=0.9,
        distribution="linear",
        mode="sample",
        inverted=True,
        seed=None,
        skip_compute=True,
    )
    return StochasticDepthSettings(**{**arguments, **overrides})


@pytest.mark.one_backend
def test_settings_are_normalized_when_made():
    settings = _settings(final_survival_probability=np.float32(0.5), inverted=np.bool_(False), seed=np.int64(3))
    assert (settings.final_survival_probability, settings.inverted, settings.seed) == (0.5, False, 3)
    assert (type(settings.final_survival_probability), type(settings.inverted), type(settings.seed)) == (
        float,
        bool,
        int,
    )


@pytest.mark.one_backend
def test_settings_are_frozen():
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        _settings().mode = "batch"


@pytest.mark.one_backend
@pytest.mark.parametrize(
    "overrides, error, message",
    [
        ({"final_survival_probability": 1.5}, ValueError, r"argument `final_survival_probability`. Expected a float"),
        ({"final_survival_probability": "0.5"}, TypeError, r"argument `final_survival_probability`. Expected a float"),
        ({"final_survival_probability": 0.0}, ValueError, r"`final_survival_probability`. Expected a value greater"),
        ({"distribution": "cosine"}, ValueError, r"argument `distribution`. Expected one of \('linear', 'uniform'\)"),
        ({"mode": "row"}, ValueError, r"argument `mode`. Expected one of \('batch', 'sample', 'subset'\)"),
        ({"inverted": "yes"}, TypeError, r"argument `inverted`. Expected a bool"),
        ({"seed": -1}, ValueError, r"argument `seed`. Expected a non-negative int"),
        ({"seed": keras.random.SeedGenerator(0)}, TypeError, r"argument `seed`. Expected None or an int"),
        ({"skip_compute": None}, TypeError, r"argument `skip_compute`. Expected a bool"),
    ],
)
def test_settings_refuse_a_bad_setting_naming_it(overrides, error, message):
    with pytest.raises(error, match=message):
        _settings(**overrides)


@pytest.mark.one_backend
def test_settings_take_the_choices_of_their_entry_point():
    # EfficientNet adds Keras' rule; ShakeDrop has two modes. None: the rates come from elsewhere.
    settings = _settings(final_survival_probability=None, distribution="keras", distributions=("keras", "linear"))
    assert (settings.final_survival_probability, settings.distribution) == (None, "keras")
    with pytest.raises(ValueError, match=r"argument `mode`. Expected one of \('batch', 'sample'\). Received: mode="):
        _settings(mode="subset", modes=("batch", "sample"))


@pytest.mark.one_backend
def test_settings_read_as_the_mapping_a_backbone_config_stores():
    settings = _settings(seed=0)
    expected = {
        "final_survival_probability": 0.9,
        "distribution": "linear",
        "mode": "sample",
        "inverted": True,
        "seed": 0,
        "skip_compute": True,
    }
    assert dict(settings) == expected
    assert settings == expected
    assert settings == _settings(seed=0)
    assert settings != _settings(seed=1)
    assert settings["mode"] == "sample" and settings.get("gates_per_layer") is None
    with pytest.raises(KeyError):
        settings["distributions"]


@pytest.mark.one_backend
def test_settings_lay_out_the_survival_probabilities():
    assert _settings(final_survival_probability=0.5).survival_probabilities(4) == sdt.schedules.linear_decay(4, 0.5)
    assert _settings(distribution="uniform").survival_probabilities(2) == [0.9, 0.9]
