"""Tests of model surgery: `apply_stochastic_depth` and `strip_stochastic_depth`."""

import functools

import keras
import numpy as np
import pytest

from stochastic_depth_tf import models, schedules
from stochastic_depth_tf.layers.stochastic_depth import StochasticDepth
from stochastic_depth_tf.layers.stochastic_depth_block import StochasticDepthBlock
from stochastic_depth_tf.surgery import apply_stochastic_depth, strip_stochastic_depth
from tests.helpers import images, numpy, stochastic_depth_layers, vectors

# keras.applications models built without downloads, and their residual adds
# (counted from the graphs: see the README's model surgery section).
APPLICATIONS = {
    "ResNet50": 16,
    "ResNet101": 33,
    "ResNet152": 50,
    "ResNet50V2": 16,
    "EfficientNetB0": 9,
    "ConvNeXtTiny": 18,
    "MobileNetV2": 10,
}
APPLICATION_SHAPE = (32, 32, 3)  # the smallest input they all accept: quick to build and run
# Deep ones, and two whose surgery (backend-neutral graph reading) is not
# worth their build time under JAX: TensorFlow runs them all.
SLOW = {"ResNet101", "ResNet152", "MobileNetV2", "ConvNeXtTiny"}
APPLICATION_PARAMS = [pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name for name in APPLICATIONS]


@functools.cache
def application(name):
    """The application (built once per session) and its surgery at full survival."""
    original = getattr(keras.applications, name)(weights=None, input_shape=APPLICATION_SHAPE, include_top=False)
    return original, apply_stochastic_depth(original, final_survival_probability=1.0)


def residual_adds(model):
    """The `Add` layers and `x + y` op nodes of a model (what surgery looks for)."""
    add_op = type(keras.ops.add(keras.KerasTensor((1,)), keras.KerasTensor((1,)))._keras_history[0])
    return [op for op in model.operations if type(op) in (keras.layers.Add, add_op)]


def residual_chain(num_blocks=3, width=4, name="chain"):
    """Dense blocks `x = x + Dense(x)`, adding `[shortcut, residual]`."""
    inputs = keras.Input((width,))
    x = inputs
    for index in range(num_blocks):
        branch = keras.layers.Dense(width, name=f"{name}_branch_{index}")(x)
        x = keras.layers.Add(name=f"{name}_add_{index}")([x, branch])
    return keras.Model(inputs, x, name=name)


def single_block(order="residual_first"):
    """One block `inputs + Dense(inputs)`, its Add called in the given order."""
    inputs = keras.Input((4,))
    branch = keras.layers.Dense(4, name="branch")(inputs)
    pair = [branch, inputs] if order == "residual_first" else [inputs, branch]
    outputs = keras.layers.Add(name="add")(pair)
    return keras.Model(inputs, outputs)


# keras.applications, out of the box.


@pytest.mark.one_backend
@pytest.mark.parametrize("name", APPLICATION_PARAMS)
def test_application_residual_adds_counted_from_graph(name):
    original, _ = application(name)
    assert len(residual_adds(original)) == APPLICATIONS[name]


@pytest.mark.one_backend
@pytest.mark.parametrize("name", APPLICATION_PARAMS)
def test_application_every_residual_add_replaced(name):
    _, model = application(name)
    assert len(stochastic_depth_layers(model)) == APPLICATIONS[name]
    assert residual_adds(model) == []


@pytest.mark.one_backend
@pytest.mark.parametrize("name", APPLICATION_PARAMS)
def test_application_output_unchanged_at_full_survival(name):
    original, model = application(name)
    x = images(APPLICATION_SHAPE, n=2)
    expected = numpy(original(x, training=False))
    actual = numpy(model(x, training=False))
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


@pytest.mark.one_backend
@pytest.mark.parametrize("name", APPLICATION_PARAMS)
def test_application_weights_kept(name):
    original, model = application(name)
    original_weights, new_weights = original.get_weights(), model.get_weights()
    assert len(new_weights) == len(original_weights)
    for old, new in zip(original_weights, new_weights):
        np.testing.assert_array_equal(new, old)


@pytest.mark.one_backend
@pytest.mark.parametrize(
    "name, add, shortcut_layer, residual_layer",
    [
        # a projection block: the shortcut is the path of one convolution
        ("ResNet50", "conv2_block1_add", "conv2_block1_0_bn", "conv2_block1_3_bn"),
        # an identity block: the shortcut is the block's input
        ("ResNet50", "conv2_block2_add", "conv2_block1_out", "conv2_block2_3_bn"),
        # EfficientNet adds the shortcut second
        ("EfficientNetB0", "block2b_add", "block2a_project_bn", "block2b_project_bn"),
    ],
    ids=["resnet_projection_block", "resnet_identity_block", "efficientnet_shortcut_added_second"],
)
def test_application_shortcut_and_residual_found(name, add, shortcut_layer, residual_layer):
    _, model = application(name)
    shortcut, residual = model.get_layer(add).input
    assert shortcut is model.get_layer(shortcut_layer).output
    assert residual is model.get_layer(residual_layer).output


@pytest.mark.one_backend
def test_efficientnet_drop_connect_removed_by_default():
    original, model = application("EfficientNetB0")
    drop_connect = [layer for layer in original.layers if isinstance(layer, keras.layers.Dropout)]
    assert len(drop_connect) == 9
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in model.layers)


@pytest.mark.one_backend
def test_efficientnet_drop_connect_kept_on_request():
    original, _ = application("EfficientNetB0")
    model = apply_stochastic_depth(original, replace_drop_connect=False)
    assert sum(isinstance(layer, keras.layers.Dropout) for layer in model.layers) == 9
    _, residual = model.get_layer("block2b_add").input
    assert residual is model.get_layer("block2b_drop").output


@pytest.mark.slow  # builds ConvNeXtTiny: see SLOW
def test_convnext_op_adds_replaced_and_its_branch_left_alone():
    original, model = application("ConvNeXtTiny")
    shortcut, residual = stochastic_depth_layers(model)[0].input
    assert residual is model.get_layer("convnext_tiny_stage_0_block_0_identity").output
    assert shortcut is model.get_layer("convnext_tiny_stem").output
    assert len(model.layers) == len(original.layers) + APPLICATIONS["ConvNeXtTiny"]


@pytest.mark.one_backend
def test_linear_decay_follows_block_order():
    original, _ = application("ResNet50")
    model = apply_stochastic_depth(original, final_survival_probability=0.5)
    layers = stochastic_depth_layers(model)
    assert [layer.name for layer in layers] == [add.name for add in residual_adds(original)]
    assert [layer.survival_probability for layer in layers] == schedules.linear_decay(16, 0.5)
    assert layers[0].name == "conv2_block1_add" and layers[-1].name == "conv5_block3_add"


# Semantics on small models.


def test_inference_is_shortcut_plus_survival_probability_times_residual():
    model = apply_stochastic_depth(single_block(), final_survival_probability=0.3, inverted=False)
    x = vectors()
    residual = numpy(model.get_layer("branch")(x))
    np.testing.assert_allclose(numpy(model(x, training=False)), x + 0.3 * residual, rtol=1e-6)


@pytest.mark.parametrize("order", ["residual_first", "shortcut_first"])
def test_shortcut_found_whatever_the_argument_order(order):
    model = apply_stochastic_depth(single_block(order))
    shortcut, residual = model.get_layer("add").input
    assert shortcut is model.input
    assert residual is model.get_layer("branch").output


@pytest.mark.one_backend
def test_projection_block_shortcut_is_the_shorter_path():
    inputs = keras.Input((4,))
    long_path = keras.layers.Dense(4, name="long_b")(keras.layers.Dense(4, name="long_a")(inputs))
    short_path = keras.layers.Dense(4, name="projection")(inputs)
    outputs = keras.layers.Add(name="add")([long_path, short_path])
    model = apply_stochastic_depth(keras.Model(inputs, outputs))
    shortcut, residual = model.get_layer("add").input
    assert shortcut is model.get_layer("projection").output
    assert residual is model.get_layer("long_b").output


def test_op_add_replaced():
    inputs = keras.Input((4,))
    outputs = inputs + keras.layers.Dense(4, name="branch")(inputs)
    model = apply_stochastic_depth(keras.Model(inputs, outputs), final_survival_probability=0.5, inverted=False)
    (layer,) = stochastic_depth_layers(model)
    assert layer.input[0] is model.input
    x = vectors()
    residual = numpy(model.get_layer("branch")(x))
    np.testing.assert_allclose(numpy(model(x, training=False)), x + 0.5 * residual, rtol=1e-6)


@pytest.mark.one_backend
def test_uniform_distribution():
    model = apply_stochastic_depth(residual_chain(), final_survival_probability=0.7, distribution="uniform")
    assert [layer.survival_probability for layer in stochastic_depth_layers(model)] == [0.7] * 3


@pytest.mark.one_backend
def test_mode_and_inverted_passed_to_every_layer():
    model = apply_stochastic_depth(residual_chain(), mode="batch", inverted=False)
    assert all(layer.mode == "batch" and not layer.inverted for layer in stochastic_depth_layers(model))


# One set of defaults for every kind of model: per-example, inverted, p_L = 0.9.


@pytest.mark.one_backend
def test_defaults_are_per_example_inverted_gates_decaying_to_nine_tenths():
    model = apply_stochastic_depth(residual_chain(num_blocks=2))
    layers = stochastic_depth_layers(model)
    assert [(layer.mode, layer.inverted) for layer in layers] == [("sample", True)] * 2
    assert [layer.survival_probability for layer in layers] == pytest.approx([0.95, 0.9])


def test_inference_with_the_defaults_is_the_original_exactly():
    original = residual_chain()
    model = apply_stochastic_depth(original, seed=0)
    x = vectors()
    np.testing.assert_array_equal(numpy(model(x, training=False)), numpy(original(x, training=False)))
    np.testing.assert_array_equal(model.predict(x, verbose=0), original.predict(x, verbose=0))


@pytest.mark.one_backend
def test_inference_of_an_application_with_the_defaults_is_the_original_exactly():
    original, _ = application("ResNet50")
    model = apply_stochastic_depth(original, seed=0)
    x = images(APPLICATION_SHAPE, n=2)
    np.testing.assert_array_equal(numpy(model(x, training=False)), numpy(original(x, training=False)))


def test_defaults_drop_examples_in_training():
    model = apply_stochastic_depth(single_block(), final_survival_probability=0.5, seed=0)
    x = np.repeat(vectors(1), 400, axis=0)
    residual = numpy(model.get_layer("branch")(x))
    trained = numpy(model(x, training=True))
    # Each example keeps its branch scaled by 1 / p, or drops it: Binomial(400, 0.5), 5 standard deviations.
    kept = np.all(np.isclose(trained, x + 2.0 * residual, rtol=1e-5, atol=1e-6), axis=1)
    dropped = np.all(trained == x, axis=1)
    assert np.all(kept | dropped)
    assert abs(kept.mean() - 0.5) <= 5.0 * np.sqrt(0.25 / 400)


def test_inverted_inference_is_a_plain_add():
    original = residual_chain()
    model = apply_stochastic_depth(original, final_survival_probability=0.2, inverted=True)
    x = vectors()
    np.testing.assert_allclose(numpy(model(x, training=False)), numpy(original(x, training=False)), rtol=1e-6)


def test_training_with_zero_survival_drops_every_block():
    model = apply_stochastic_depth(
        residual_chain(), final_survival_probability=0.0, distribution="uniform", inverted=False
    )
    x = vectors()
    np.testing.assert_array_equal(numpy(model(x, training=True)), x)


@pytest.mark.one_backend
def test_seeds_derived_from_seed():
    model = apply_stochastic_depth(residual_chain(), seed=7)
    assert [layer.seed for layer in stochastic_depth_layers(model)] == [7, 8, 9]


@pytest.mark.one_backend
def test_no_seed_leaves_layers_unseeded():
    model = apply_stochastic_depth(residual_chain())
    assert [layer.seed for layer in stochastic_depth_layers(model)] == [None] * 3


@pytest.mark.one_backend
def test_new_layers_named_after_the_adds():
    model = apply_stochastic_depth(residual_chain())
    assert [layer.name for layer in stochastic_depth_layers(model)] == [
        "chain_add_0",
        "chain_add_1",
        "chain_add_2",
    ]


def test_weights_are_copies_not_shared():
    original = residual_chain()
    model = apply_stochastic_depth(original)
    before = original.get_layer("chain_branch_0").get_weights()
    model.get_layer("chain_branch_0").kernel.assign(np.full((4, 4), 5.0, "float32"))
    for old, kept in zip(before, original.get_layer("chain_branch_0").get_weights()):
        np.testing.assert_array_equal(kept, old)


def test_original_model_left_intact():
    original = residual_chain()
    x = vectors()
    expected = numpy(original(x))
    layers = list(original.layers)
    apply_stochastic_depth(original, final_survival_probability=0.5)
    assert original.layers == layers
    assert not stochastic_depth_layers(original)
    np.testing.assert_array_equal(numpy(original(x)), expected)


@pytest.mark.one_backend
def test_non_residual_adds_left_as_they_are():
    first, second = keras.Input((4,)), keras.Input((4,))
    two_inputs = keras.layers.Add(name="two_inputs")([first, second])
    parallel = keras.layers.Add(name="parallel")([keras.layers.Dense(4)(two_inputs), keras.layers.Dense(4)(two_inputs)])
    three = keras.layers.Add(name="three")([parallel, two_inputs, first])
    residual = keras.layers.Add(name="residual")([three, keras.layers.Dense(4)(three)])
    model = apply_stochastic_depth(keras.Model([first, second], residual))
    assert [layer.name for layer in stochastic_depth_layers(model)] == ["residual"]
    for name in ("two_inputs", "parallel", "three"):
        assert type(model.get_layer(name)) is keras.layers.Add


@pytest.mark.one_backend
def test_nested_model_adds_replaced_in_call_order():
    inputs = keras.Input((4,))
    x = keras.layers.Add(name="outer_add_0")([inputs, keras.layers.Dense(4)(inputs)])
    x = residual_chain(2, name="inner")(x)
    x = keras.layers.Add(name="outer_add_1")([x, keras.layers.Dense(4)(x)])
    original = keras.Model(inputs, x)
    model = apply_stochastic_depth(original, final_survival_probability=0.6, seed=0)
    inner = model.get_layer("inner")
    layers = [model.get_layer("outer_add_0")] + stochastic_depth_layers(inner) + [model.get_layer("outer_add_1")]
    assert all(isinstance(layer, StochasticDepth) for layer in layers)
    assert [layer.seed for layer in layers] == [0, 1, 2, 3]
    assert [layer.survival_probability for layer in layers] == schedules.linear_decay(4, 0.6)


def test_nested_model_output_unchanged_at_full_survival():
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(2)(residual_chain(name="inner")(inputs))
    original = keras.Model(inputs, outputs)
    model = apply_stochastic_depth(original, final_survival_probability=1.0)
    x = vectors()
    np.testing.assert_allclose(numpy(model(x)), numpy(original(x)), rtol=1e-6)


@pytest.mark.one_backend
def test_shared_layer_stays_shared():
    inputs = keras.Input((4,))
    shared = keras.layers.Dense(4, name="shared")
    x = keras.layers.Add()([inputs, shared(inputs)])
    x = keras.layers.Add()([x, shared(x)])
    original = keras.Model(inputs, x)
    model = apply_stochastic_depth(original)
    assert len(model.get_weights()) == len(original.get_weights()) == 2
    assert [layer.name for layer in model.layers].count("shared") == 1


@pytest.mark.one_backend
def test_add_layer_called_twice_becomes_two_layers():
    inputs = keras.Input((4,))
    add = keras.layers.Add(name="add")
    x = add([inputs, keras.layers.Dense(4)(inputs)])
    x = add([x, keras.layers.Dense(4)(x)])
    model = apply_stochastic_depth(keras.Model(inputs, x), final_survival_probability=0.5)
    layers = stochastic_depth_layers(model)
    assert [layer.name for layer in layers] == ["add", "add_1"]
    assert [layer.survival_probability for layer in layers] == [0.75, 0.5]


@pytest.mark.one_backend
def test_frozen_layer_stays_frozen():
    original = residual_chain()
    original.get_layer("chain_branch_1").trainable = False
    model = apply_stochastic_depth(original)
    assert [layer.trainable for layer in model.layers if isinstance(layer, keras.layers.Dense)] == [
        True,
        False,
        True,
    ]
    assert len(model.trainable_weights) == len(original.trainable_weights) == 4


@pytest.mark.one_backend
def test_frozen_model_stays_frozen():
    original = residual_chain()
    original.trainable = False
    model = apply_stochastic_depth(original)
    assert not model.trainable
    assert model.trainable_weights == []


@pytest.mark.one_backend
def test_current_survival_probability_of_existing_layers_kept():
    model = apply_stochastic_depth(residual_chain(), final_survival_probability=0.5)
    model.get_layer("chain_add_0").survival_probability_variable.assign(0.9)
    inputs = keras.Input((4,))
    outputs = keras.layers.Add(name="outer_add")([model(inputs), keras.layers.Dense(4)(model(inputs))])
    copy = apply_stochastic_depth(keras.Model(inputs, outputs))
    layer = copy.get_layer("chain").get_layer("chain_add_0")
    assert float(layer.survival_probability_variable.numpy()) == pytest.approx(0.9)


@pytest.mark.one_backend
def test_stateless_layer_that_cannot_be_rebuilt_is_shared():
    # A layer without weights whose config cannot rebuild it (it holds a
    # Python function, as a Python lambda's Lambda does in the Keras releases
    # that refuse one): surgery shares it instead of copying it.
    class Apply(keras.layers.Layer):
        def __init__(self, function, **kwargs):
            super().__init__(**kwargs)
            self.function = function

        def call(self, x):
            return self.function(x)

    inputs = keras.Input((4,))
    doubled = Apply(lambda x: 2.0 * x, name="double")(inputs)
    outputs = keras.layers.Add()([doubled, keras.layers.Dense(4)(doubled)])
    original = keras.Model(inputs, outputs)
    model = apply_stochastic_depth(original, final_survival_probability=1.0)
    assert model.get_layer("double") is original.get_layer("double")
    np.testing.assert_allclose(numpy(model(vectors())), numpy(original(vectors())), rtol=1e-6)


@pytest.mark.one_backend
def test_refuses_a_layer_with_weights_that_cannot_be_rebuilt():
    class Scale(keras.layers.Layer):
        def __init__(self, units):
            super().__init__()
            self.units = units

        def build(self, input_shape):
            self.scale = self.add_weight(shape=(self.units,), initializer="ones")

        def call(self, x):
            return x * self.scale

    inputs = keras.Input((4,))
    outputs = keras.layers.Add()([inputs, Scale(4)(inputs)])
    with pytest.raises(TypeError, match="Invalid layer received in argument `model`"):
        apply_stochastic_depth(keras.Model(inputs, outputs))


@pytest.mark.one_backend
def test_mixed_precision_policy_of_the_add_kept():
    keras.config.set_dtype_policy("mixed_float16")
    original = residual_chain()
    keras.config.set_dtype_policy("float32")
    model = apply_stochastic_depth(original)
    assert all(layer.compute_dtype == "float16" for layer in stochastic_depth_layers(model))
    assert model(vectors()).dtype == original(vectors()).dtype


@pytest.mark.one_backend
def test_compiled_model_stays_compiled():
    original = residual_chain()
    original.compile("sgd", "mse")
    model = apply_stochastic_depth(original)
    assert model.compiled
    history = model.fit(vectors(8), vectors(8, seed=1), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_keras_file_round_trip(tmp_path):
    model = apply_stochastic_depth(residual_chain(), final_survival_probability=0.5)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = vectors()
    np.testing.assert_allclose(numpy(loaded(x)), numpy(model(x)), rtol=1e-6)
    assert len(stochastic_depth_layers(loaded)) == 3


# strip_stochastic_depth.


def test_strip_folds_current_survival_probability():
    model = apply_stochastic_depth(single_block(), final_survival_probability=0.5, inverted=False)
    model.get_layer("add").survival_probability_variable.assign(0.3)
    stripped = strip_stochastic_depth(model)
    assert stripped.get_layer("add_survival_scale").scale == pytest.approx(0.3)
    x = vectors()
    np.testing.assert_allclose(numpy(stripped(x)), numpy(model(x, training=False)), rtol=1e-6)


@pytest.mark.one_backend
def test_strip_leaves_only_stock_layers():
    stripped = strip_stochastic_depth(apply_stochastic_depth(residual_chain()))
    assert not stochastic_depth_layers(stripped)
    assert [type(stripped.get_layer(f"chain_add_{index}")) for index in range(3)] == [keras.layers.Add] * 3


def test_strip_full_survival_is_a_plain_add():
    stripped = strip_stochastic_depth(apply_stochastic_depth(single_block(), final_survival_probability=1.0))
    assert not any(isinstance(layer, keras.layers.Rescaling) for layer in stripped.layers)


def test_strip_inverted_is_a_plain_add():
    model = apply_stochastic_depth(single_block(), final_survival_probability=0.5, inverted=True)
    stripped = strip_stochastic_depth(model)
    assert not any(isinstance(layer, keras.layers.Rescaling) for layer in stripped.layers)
    x = vectors()
    np.testing.assert_allclose(numpy(stripped(x)), numpy(model(x, training=False)), rtol=1e-6)


@pytest.mark.one_backend
def test_strip_application_output_unchanged():
    original, _ = application("ResNet50")
    model = apply_stochastic_depth(original, final_survival_probability=0.5, inverted=False)
    stripped = strip_stochastic_depth(model)
    x = images(APPLICATION_SHAPE, n=2)
    expected = numpy(model(x, training=False))
    actual = numpy(stripped(x, training=False))
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
    assert len(stripped.get_weights()) == len(original.get_weights())


def trained_cifar_resnet(shortcut):
    """A ResNet-8 of StochasticDepthBlocks whose BatchNormalization statistics have moved."""
    model = models.cifar_resnet(depth=8, shortcut=shortcut, skip_compute=True, seed=0, input_shape=(8, 8, 3))
    model.compile("sgd", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    model.fit(rng.normal(size=(32, 8, 8, 3)), rng.integers(0, 10, size=(32,)), epochs=2, verbose=0)
    return model


@pytest.mark.parametrize("shortcut", ["zero_pad", "projection"])
def test_strip_unrolls_blocks_with_the_same_inference(shortcut):
    model = trained_cifar_resnet(shortcut)
    blocks = [layer for layer in model.layers if isinstance(layer, StochasticDepthBlock)]
    blocks[-1].survival_probability_variable.assign(0.25)  # as a schedule would
    stripped = strip_stochastic_depth(model)
    assert not any(isinstance(layer, (StochasticDepth, StochasticDepthBlock)) for layer in stripped.layers)
    assert [type(stripped.get_layer(block.name)) for block in blocks] == [keras.layers.Add] * len(blocks)
    assert stripped.get_layer(f"{blocks[-1].name}_survival_scale").scale == pytest.approx(0.25)
    assert len(stripped.get_weights()) == len(model.get_weights())
    x = np.random.default_rng(1).normal(size=(16, 8, 8, 3)).astype("float32")
    expected = numpy(model(x, training=False))
    np.testing.assert_allclose(numpy(stripped(x, training=False)), expected, rtol=1e-5, atol=1e-6)


def test_strip_inverted_blocks_is_a_plain_add():
    model = models.cifar_resnet(depth=8, inverted=True, input_shape=(8, 8, 3))
    stripped = strip_stochastic_depth(model)
    assert not any(isinstance(layer, keras.layers.Rescaling) for layer in stripped.layers)
    x = np.random.default_rng(1).normal(size=(4, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(numpy(stripped(x)), numpy(model(x, training=False)), rtol=1e-5, atol=1e-6)


def test_strip_nested_model():
    inputs = keras.Input((4,))
    original = keras.Model(inputs, residual_chain(name="inner")(inputs))
    stripped = strip_stochastic_depth(apply_stochastic_depth(original))
    assert not stochastic_depth_layers(stripped.get_layer("inner"))


# Refusals.


@pytest.mark.one_backend
def test_refuses_a_non_model():
    with pytest.raises(TypeError, match="Invalid type received for argument `model`"):
        apply_stochastic_depth(keras.layers.Dense(4))


@pytest.mark.one_backend
@pytest.mark.parametrize("surgery", [apply_stochastic_depth, strip_stochastic_depth], ids=["apply", "strip"])
def test_refuses_a_sequential_model(surgery):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4)])
    with pytest.raises(ValueError, match="Invalid value received for argument `model`.*Sequential"):
        surgery(model)


@pytest.mark.one_backend
def test_refuses_a_subclassed_model():
    class Residual(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(4)

        def call(self, x):
            return x + self.dense(x)

    model = Residual()
    model(vectors())
    with pytest.raises(ValueError, match="Invalid value received for argument `model`.*subclassed"):
        apply_stochastic_depth(model)


@pytest.mark.one_backend
def test_refuses_a_model_without_residual_add():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(4)(inputs))
    with pytest.raises(ValueError, match="Invalid value received for argument `model`.*residual add"):
        apply_stochastic_depth(model)


@pytest.mark.one_backend
@pytest.mark.parametrize(
    "settings, error, message",
    [
        ({"distribution": "exponential"}, ValueError, "Invalid value received for argument `distribution`"),
        (
            {"final_survival_probability": 1.5},
            ValueError,
            "Invalid value received for argument `final_survival_probability`",
        ),
        (
            {"final_survival_probability": "0.5"},
            TypeError,
            "Invalid type received for argument `final_survival_probability`",
        ),
        (
            {"final_survival_probability": 0.0, "inverted": True},
            ValueError,
            "Invalid value received for argument `final_survival_probability`",
        ),
        ({"mode": "row"}, ValueError, "Invalid value received for argument `mode`"),
        ({"inverted": "yes"}, TypeError, "Invalid type received for argument `inverted`"),
        ({"seed": -1}, ValueError, "Invalid value received for argument `seed`"),
        ({"replace_drop_connect": 1}, TypeError, "Invalid type received for argument `replace_drop_connect`"),
    ],
    ids=[
        "bad_distribution",
        "survival_probability_out_of_range",
        "survival_probability_of_the_wrong_type",
        "zero_survival_probability_when_inverted",
        "bad_mode",
        "bad_inverted",
        "negative_seed",
        "bad_replace_drop_connect",
    ],
)
def test_refuses_a_bad_setting(settings, error, message):
    with pytest.raises(error, match=message):
        apply_stochastic_depth(residual_chain(), **settings)


@pytest.mark.one_backend
def test_refuses_a_seed_generator():
    with pytest.raises(TypeError, match="Invalid type received for argument `seed`"):
        apply_stochastic_depth(residual_chain(), seed=keras.random.SeedGenerator(0))


@pytest.mark.one_backend
def test_strip_refuses_a_model_without_stochastic_depth():
    with pytest.raises(ValueError, match="Invalid value received for argument `model`.*StochasticDepth"):
        strip_stochastic_depth(residual_chain())


@pytest.mark.one_backend
def test_current_survival_probability_of_existing_blocks_kept():
    inputs = keras.Input((4,))
    x = StochasticDepthBlock(keras.layers.Dense(4), survival_probability=0.5, name="block")(inputs)
    x = keras.layers.Add(name="add")([x, keras.layers.Dense(4)(x)])
    model = keras.Model(inputs, x)
    model.get_layer("block").survival_probability_variable.assign(0.7)  # as a schedule would
    applied = apply_stochastic_depth(model)
    assert float(numpy(applied.get_layer("block").survival_probability_variable)) == pytest.approx(0.7)


@pytest.mark.one_backend
def test_functional_subclass_kept():
    class Residual(keras.Model):  # built as keras.Model(inputs, outputs): a functional subclass
        pass

    inputs = keras.Input((4,))
    original = Residual(inputs, keras.layers.Add()([inputs, keras.layers.Dense(4)(inputs)]))
    model = apply_stochastic_depth(original)
    assert type(model) is Residual
    assert type(strip_stochastic_depth(model)) is Residual


@pytest.mark.one_backend
@pytest.mark.parametrize(
    "survival_probabilities, error, message",
    [
        (
            [0.9, 0.8],
            ValueError,
            r"Expected one survival probability per residual add of model 'chain' \(3, in block order\). Received: 2",
        ),
        (
            [0.9, 1.5, 0.8],
            ValueError,
            r"`survival_probabilities\[1\]`. Expected a float between 0 and 1. Received: survival_probabilities\[1\]=1.5",
        ),
        (
            [0.9, "a", 0.8],
            TypeError,
            r"`survival_probabilities\[1\]`. Expected a float between 0 and 1. Received: survival_probabilities\[1\]='a' of type str",
        ),
    ],
    ids=["wrong_length", "out_of_range", "not_a_number"],
)
def test_per_block_entry_refuses_bad_probabilities(survival_probabilities, error, message):
    from stochastic_depth_tf.surgery import apply_survival_probabilities

    with pytest.raises(error, match=message):
        apply_survival_probabilities(residual_chain(), survival_probabilities)


@pytest.mark.one_backend
def test_per_block_entry_sets_each_probability_in_block_order():
    from stochastic_depth_tf.surgery import apply_survival_probabilities

    model = apply_survival_probabilities(residual_chain(), [0.9, 0.7, 0.5])
    probabilities = [float(model.get_layer(f"chain_add_{i}").survival_probability_variable.numpy()) for i in range(3)]
    assert probabilities == pytest.approx([0.9, 0.7, 0.5])
