"""Tests of `stochastic_depth_tf.models.cifar_resnet`."""

import keras
import numpy as np
import pytest

import stochastic_depth_tf as sdt


def images(n=4, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 32, 32, 3)).astype("float32")


def stochastic_layers(model):
    return [l for l in model.layers if isinstance(l, (sdt.StochasticDepth, sdt.StochasticDepthBlock))]


@pytest.mark.parametrize("depth, params", [(20, 0.27e6), (56, 0.85e6), (110, 1.7e6)])
def test_parameter_counts_match_he_et_al(depth, params):
    # He et al. (2016), table 6: 0.27M, 0.85M and 1.7M parameters.
    model = sdt.models.cifar_resnet(depth=depth)
    assert model.count_params() == pytest.approx(params, rel=0.03)


@pytest.mark.parametrize("skip_compute", [True, False])
def test_blocks_follow_linear_decay(skip_compute):
    model = sdt.models.cifar_resnet(depth=20, skip_compute=skip_compute)
    layers = stochastic_layers(model)
    assert len(layers) == 9
    expected_type = sdt.StochasticDepthBlock if skip_compute else sdt.StochasticDepth
    assert all(type(l) is expected_type for l in layers)
    assert [l.survival_probability for l in layers] == pytest.approx(sdt.schedules.linear_decay(9, 0.5))


def test_uniform_distribution_and_seeds():
    model = sdt.models.cifar_resnet(depth=20, distribution="uniform", final_survival_probability=0.8, seed=10)
    layers = stochastic_layers(model)
    assert [l.survival_probability for l in layers] == [0.8] * 9
    assert [l.seed for l in layers] == list(range(11, 20))


def test_final_survival_probability_one_is_the_plain_resnet():
    model = sdt.models.cifar_resnet(depth=20, final_survival_probability=1.0)
    assert stochastic_layers(model) == []
    assert sum(isinstance(l, keras.layers.Add) for l in model.layers) == 9


@pytest.mark.parametrize("shortcut", ["zero_pad", "projection"])
def test_block_and_merge_builds_agree_at_inference(shortcut):
    blocks = sdt.models.cifar_resnet(depth=20, shortcut=shortcut, skip_compute=True)
    merges = sdt.models.cifar_resnet(depth=20, shortcut=shortcut, skip_compute=False)
    def key(weight):  # "stage1_block1_conv1/kernel", whatever the nesting
        return "/".join(weight.path.split("/")[-2:])

    by_key = {key(w): w for w in merges.weights}
    assert len(by_key) == len(blocks.weights)
    for weight in blocks.weights:
        weight.assign(keras.ops.convert_to_numpy(by_key[key(weight)]))  # a copy: JAX's predict may donate buffers
    x = images()
    np.testing.assert_allclose(blocks.predict(x, verbose=0), merges.predict(x, verbose=0), rtol=1e-4, atol=1e-5)


def test_zero_pad_transitions_have_no_weights_and_projection_has_some():
    zero_pad = sdt.models.cifar_resnet(depth=20, shortcut="zero_pad")
    projection = sdt.models.cifar_resnet(depth=20, shortcut="projection")
    # Two transitions, each a 1x1 conv (16*32 and 32*64 weights) and a BN (4 x channels).
    assert projection.count_params() - zero_pad.count_params() == 16 * 32 + 32 * 64 + 4 * (32 + 64)


@pytest.mark.parametrize("skip_compute", [True, False])
def test_trains_and_round_trips_through_keras_file(tmp_path, skip_compute):
    model = sdt.models.cifar_resnet(depth=8, num_classes=3, skip_compute=skip_compute, seed=0)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x, y = images(n=8), np.arange(8) % 3
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    path = str(tmp_path / "resnet.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("depth", [7, 21, 2, 20.0, "110", True])
def test_bad_depth_is_refused(depth):
    with pytest.raises(ValueError, match=r"argument `depth`. Expected an int of the form 6n \+ 2"):
        sdt.models.cifar_resnet(depth=depth)


def test_bad_shortcut_is_refused():
    with pytest.raises(ValueError, match=r"argument `shortcut`. Expected one of \('zero_pad', 'projection'\). Received: shortcut='conv'"):
        sdt.models.cifar_resnet(depth=20, shortcut="conv")


def test_bad_distribution_and_probability_are_refused():
    with pytest.raises(ValueError, match=r"argument `distribution`"):
        sdt.models.cifar_resnet(depth=20, distribution="cosine")
    with pytest.raises(ValueError, match=r"argument `final_survival_probability`"):
        sdt.models.cifar_resnet(depth=20, final_survival_probability=1.2)
