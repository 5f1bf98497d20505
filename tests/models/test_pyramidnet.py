"""Tests of `sdt.models.pyramidnet`: the paper's sizes, the blocks, the three regularizations."""

import os

import keras
import numpy as np
import pytest

import stochastic_depth_tf as sdt
from tests.helpers import images
from tests.layer_checks import skip_torch_compile

SHAPE = (12, 12, 3)
SMALL = {"depth": 8, "alpha": 12, "block": "basic", "input_shape": SHAPE}


def layers_of(model, kind):
    return [layer for layer in model.layers if isinstance(layer, kind)]


def count(weights):
    return sum(int(np.prod(weight.shape)) for weight in weights)


# The papers' networks.


@pytest.mark.slow  # 26M weights: minutes to initialize outside TensorFlow
def test_parameter_count_of_pyramidnet_272_alpha_200_matches_the_paper():
    # Han et al. (and the ShakeDrop paper) give 26.0M for the bottleneck
    # PyramidNet-272, alpha = 200. The figure matches the convolution weights
    # (25.99M) to the table's rounding (0.05M); BatchNormalization's scale
    # and offset (0.21M) and the classifier (8.6K) add 0.8%, which the table
    # leaves out, so the whole trainable count is checked within 1%.
    model = sdt.models.pyramidnet(272, 200, regularization=None)
    convolutions = count(w for layer in layers_of(model, keras.layers.Conv2D) for w in layer.trainable_weights)
    assert abs(convolutions - 26.0e6) <= 0.05e6
    assert abs(count(model.trainable_weights) - 26.0e6) <= 0.01 * 26.0e6
    assert model.output_shape == (None, 10)
    assert model.get_layer("final_bn").output.shape[-1] == 864


@pytest.mark.parametrize(
    "depth, alpha, block, output_dimension",
    [
        (110, 48, "basic", 64),
        (110, 84, "basic", 100),
        (110, 270, "basic", 286),
        (164, 48, "bottleneck", 256),
        (164, 270, "bottleneck", 1144),
        (200, 240, "bottleneck", 1024),
        (236, 220, "bottleneck", 944),
        (272, 200, "bottleneck", 864),
    ],
)
@pytest.mark.one_backend
def test_output_feature_dimension_matches_the_paper(depth, alpha, block, output_dimension):
    # Han et al.'s tables list each network's output feature dimension.
    widths = sdt.models.pyramidnet_widths(depth, alpha, block)
    assert len(widths) == 3 * ((depth - 2) // (6 if block == "basic" else 9))
    assert widths[-1] * (4 if block == "bottleneck" else 1) == output_dimension


@pytest.mark.one_backend
def test_widths_grow_additively_by_alpha_over_the_blocks():
    widths = sdt.models.pyramidnet_widths(20, 27, "basic")  # 9 blocks, 3 channels per block
    assert widths == [19, 22, 25, 28, 31, 34, 37, 40, 43]


# Structure.


@pytest.mark.one_backend
def test_shake_drop_network_has_the_linear_rule_over_its_blocks():
    model = sdt.models.pyramidnet(20, 27, block="basic", input_shape=(12, 12, 3), seed=0)
    layers = layers_of(model, sdt.ShakeDrop)
    assert len(layers) == 9
    assert [layer.survival_probability for layer in layers] == pytest.approx(sdt.schedules.linear_decay(9, 0.5))
    assert [layer.seed for layer in layers] == list(range(0, 9))  # block l, from 0, gets seed + l
    assert {(layer.mode, layer.shake_mode, layer.alpha_range, layer.beta_range) for layer in layers} == {
        ("batch", "sample", (-1.0, 1.0), (0.0, 1.0))
    }
    assert sdt.callbacks.stochastic_depth_layers(model) == layers


@pytest.mark.one_backend
def test_downsampling_shortcut_is_average_pooling_then_zero_channels():
    model = sdt.models.pyramidnet(**SMALL, regularization=None)
    pool = model.get_layer("stage2_block1_shortcut_pool")
    assert isinstance(pool, keras.layers.AveragePooling2D) and pool.pool_size == (2, 2)
    assert isinstance(model.get_layer("stage2_block1_shortcut_pad"), sdt.layers.ZeroPadShortcut)
    assert not any(
        isinstance(layer, keras.layers.AveragePooling2D) for layer in model.layers if layer.name.startswith("stage1")
    )
    # No weights on any shortcut, no ReLU after any addition.
    assert all(not layer.weights for layer in layers_of(model, sdt.layers.ZeroPadShortcut))
    for add in layers_of(model, keras.layers.Add):
        consumers = [node.operation for node in add._outbound_nodes]
        assert not any(isinstance(layer, keras.layers.ReLU) for layer in consumers)


@pytest.mark.one_backend
def test_bottleneck_block_widens_its_output_four_times():
    model = sdt.models.pyramidnet(11, 12, block="bottleneck", input_shape=(12, 12, 3), regularization=None)
    widths = sdt.models.pyramidnet_widths(11, 12, "bottleneck")
    assert model.get_layer("stage1_block1_conv1").filters == widths[0]
    assert model.get_layer("stage1_block1_conv3").filters == 4 * widths[0]
    assert model.get_layer("stage2_block1_conv2").strides == (2, 2)
    assert model.get_layer("final_bn").output.shape[-1] == 4 * widths[-1]


@pytest.mark.one_backend
def test_the_three_regularizations_have_the_same_weights():
    plain = sdt.models.pyramidnet(**SMALL, regularization=None)
    for kwargs in (
        {"regularization": "shake_drop"},
        {"regularization": "stochastic_depth"},
        {"regularization": "stochastic_depth", "skip_compute": False},
    ):
        model = sdt.models.pyramidnet(**SMALL, **kwargs)
        assert [w.shape for w in model.get_weights()] == [w.shape for w in plain.get_weights()]
    assert (
        len(layers_of(sdt.models.pyramidnet(**SMALL, regularization="stochastic_depth"), sdt.StochasticDepthBlock)) == 3
    )
    assert (
        len(
            layers_of(
                sdt.models.pyramidnet(**SMALL, regularization="stochastic_depth", skip_compute=False),
                sdt.StochasticDepth,
            )
        )
        == 3
    )


def test_full_survival_is_the_plain_network():
    plain = sdt.models.pyramidnet(**SMALL, regularization=None)
    model = sdt.models.pyramidnet(**SMALL, final_survival_probability=1.0)
    assert not layers_of(model, sdt.ShakeDrop) and len(layers_of(model, keras.layers.Add)) == 3
    model.set_weights(plain.get_weights())
    np.testing.assert_array_equal(model.predict(images(SHAPE), verbose=0), plain.predict(images(SHAPE), verbose=0))


# Initial weights.


def kernel(model, name):
    return keras.ops.convert_to_numpy(model.get_layer(name).kernel)


def test_convolutions_of_one_shape_start_with_different_kernels():
    # alpha=0: every stage-1 convolution is 3x3, 16 to 16 channels. One shared
    # unseeded initializer gave them all the same kernel.
    model = sdt.models.pyramidnet(14, 0, block="basic", input_shape=(12, 12, 3), regularization=None)
    kernels = [kernel(model, f"stage1_block{b}_conv{c}") for b in (1, 2) for c in (1, 2)]
    assert all(k.shape == (3, 3, 16, 16) for k in kernels)
    for i in range(len(kernels)):
        for j in range(i):
            assert not np.array_equal(kernels[i], kernels[j])


def test_the_global_seed_decides_the_initial_weights():
    def build(seed):
        keras.utils.set_random_seed(seed)
        return sdt.models.pyramidnet(**SMALL, regularization=None).get_weights()

    first, again, other = build(0), build(0), build(1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    conv_indices = [i for i, w in enumerate(first) if w.ndim == 4]
    assert all(not np.array_equal(first[i], other[i]) for i in conv_indices)


def test_zero_init_residual_zeroes_the_last_batch_normalization_of_every_branch():
    for block, last in (("basic", "bn3"), ("bottleneck", "bn4")):
        depth = 8 if block == "basic" else 11
        model = sdt.models.pyramidnet(
            depth, 12, block=block, input_shape=(12, 12, 3), regularization=None, zero_init_residual=True
        )
        gammas = {
            w.path.split("/")[-2]: keras.ops.convert_to_numpy(w) for w in model.weights if w.path.endswith("/gamma")
        }
        zeroed = sorted(name for name, gamma in gammas.items() if np.all(gamma == 0.0))
        assert zeroed == [f"stage{s}_block1_{last}" for s in (1, 2, 3)]
        assert all(np.all(gamma == 1.0) for name, gamma in gammas.items() if name not in zeroed)


# Training and saving.


# "auto": TensorFlow's graph mode (on a CPU), JAX's jit, PyTorch's eager step.
@pytest.mark.parametrize(
    "kwargs, jit_compile",
    [
        pytest.param({"regularization": "shake_drop"}, True, marks=skip_torch_compile),
        ({"regularization": "shake_drop", "mode": "sample", "shake_mode": "element"}, "auto"),
        ({"regularization": "stochastic_depth"}, "auto"),
    ],
)
def test_trains(kwargs, jit_compile):
    model = sdt.models.pyramidnet(**SMALL, **kwargs, seed=0)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", jit_compile=jit_compile)
    history = model.fit(images(SHAPE, n=8), np.arange(8) % 10, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_keras_file_round_trip_in_safe_mode(tmp_path):
    model = sdt.models.pyramidnet(**SMALL, seed=1)
    layers_of(model, sdt.ShakeDrop)[0].survival_probability_variable.assign(0.9)  # as a schedule would
    path = os.path.join(tmp_path, "pyramidnet.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(
        loaded.predict(images(SHAPE), verbose=0), model.predict(images(SHAPE), verbose=0), rtol=1e-6, atol=1e-6
    )
    assert [layer.get_config() for layer in layers_of(loaded, sdt.ShakeDrop)] == [
        layer.get_config() for layer in layers_of(model, sdt.ShakeDrop)
    ]
    assert float(layers_of(loaded, sdt.ShakeDrop)[0].survival_probability_variable.numpy()) == pytest.approx(0.9)


# Bad arguments.


@pytest.mark.one_backend
def test_depth_of_the_wrong_form_for_the_block_is_refused():
    with pytest.raises(
        ValueError,
        match=r"Invalid value received for argument `depth`. Expected an int of the form 9n \+ 2 with n >= 1 for bottleneck blocks",
    ):
        sdt.models.pyramidnet(32, 48)
    with pytest.raises(
        ValueError,
        match=r"Invalid value received for argument `depth`. Expected an int of the form 6n \+ 2 with n >= 1 for basic blocks",
    ):
        sdt.models.pyramidnet(21, 48, block="basic")


@pytest.mark.one_backend
@pytest.mark.parametrize("num_classes", [0, 2.0, True])
def test_bad_num_classes_is_refused(num_classes):
    with pytest.raises(
        ValueError,
        match=rf"argument `num_classes`. Expected a positive int. Received: num_classes={num_classes!r}",
    ):
        sdt.models.pyramidnet(20, 48, block="basic", num_classes=num_classes)


@pytest.mark.one_backend
def test_bad_arguments_are_refused():
    with pytest.raises(
        ValueError, match=r"Invalid value received for argument `alpha`. Expected a non-negative number"
    ):
        sdt.models.pyramidnet(20, -1, block="basic")
    with pytest.raises(
        ValueError, match=r"Invalid value received for argument `block`. Expected one of \('basic', 'bottleneck'\)"
    ):
        sdt.models.pyramidnet(20, 48, block="wide")
    with pytest.raises(
        ValueError,
        match=r"Invalid value received for argument `regularization`. Expected one of \('shake_drop', 'stochastic_depth', None\)",
    ):
        sdt.models.pyramidnet(20, 48, block="basic", regularization="shake_shake")
    with pytest.raises(
        ValueError, match=r"Invalid value received for argument `mode`. Expected one of \('batch', 'sample'\)"
    ):
        sdt.models.pyramidnet(20, 48, block="basic", mode="subset")
    with pytest.raises(ValueError, match=r"Invalid value received for argument `alpha_range`"):
        sdt.models.pyramidnet(20, 48, block="basic", alpha_range=(1.0, -1.0))


@pytest.mark.one_backend
@pytest.mark.parametrize("skip_compute", [True, False])
def test_inverted_reaches_every_stochastic_depth_layer(skip_compute):
    for inverted in (False, True):
        model = sdt.models.pyramidnet(
            **SMALL, regularization="stochastic_depth", skip_compute=skip_compute, inverted=inverted
        )
        layers = sdt.callbacks.stochastic_depth_layers(model)
        assert len(layers) == 3 and {layer.inverted for layer in layers} == {inverted}


@pytest.mark.one_backend
def test_inverted_shake_drop_is_refused():
    with pytest.raises(
        ValueError,
        match=r"Invalid value received for argument `inverted`. Expected False with regularization='shake_drop'",
    ):
        sdt.models.pyramidnet(**SMALL, inverted=True)


@pytest.mark.one_backend
def test_bad_flags_and_seed_generator_are_refused():
    with pytest.raises(TypeError, match=r"Invalid type received for argument `zero_init_residual`. Expected a bool"):
        sdt.models.pyramidnet(**SMALL, zero_init_residual=1)
    with pytest.raises(TypeError, match=r"Invalid type received for argument `inverted`"):
        sdt.models.pyramidnet(**SMALL, regularization="stochastic_depth", inverted="yes")
    with pytest.raises(TypeError, match=r"Invalid type received for argument `seed`. Expected None or an int"):
        sdt.models.pyramidnet(**SMALL, seed=keras.random.SeedGenerator(0))
