"""Tests of `stochastic_depth_tf.models.efficientnet` against keras.applications."""

import functools

import keras
import numpy as np
import pytest

import stochastic_depth_tf as sdt
from tests.helpers import numpy, stochastic_layers

SHAPE = (32, 32, 3)
CLASSES = 10

# SLOW_ELSEWHERE: the tests marked slow with this note take seconds each
# under JAX (which compiles the initializers and ops of every new shape) for
# what the unmarked ones check already: under JAX and PyTorch the weight
# copy, inference, `.keras` round trip and strip of B0 run; TensorFlow runs
# them all.


def pixels(n=2, seed=1, shape=SHAPE):
    """Uniform pixel values in [0, 255]: EfficientNet rescales its input itself."""
    return np.random.default_rng(seed).uniform(0.0, 255.0, size=(n,) + shape).astype("float32")


def randomize(model, seed=0):
    """Random BatchNormalization and input statistics, so that copying them is tested.

    Then every BatchNormalization's moving statistics are set to the batch
    statistics of a training-mode pass (momentum 0, no dropout), as training
    would: a fresh EfficientNet at inference loses its input after a few
    blocks (its logits barely depend on the image), which would make equal
    outputs a weak test. The last BatchNormalization of every branch gets a
    small gamma and the pass sees 64 images, or the calibrated network
    amplifies float32 rounding (Keras' own eager and graph outputs then
    differ by 0.1%).
    """
    rng = np.random.default_rng(seed)
    draws = {
        "gamma": lambda shape: rng.uniform(0.5, 1.5, shape),
        "beta": lambda shape: rng.normal(0.0, 0.2, shape),
        "mean": lambda shape: rng.uniform(0.4, 0.5, shape),
        "variance": lambda shape: rng.uniform(0.04, 0.06, shape),
    }
    for weight in model.weights:
        kind = weight.path.split("/")[-1]
        if kind in draws:
            weight.assign(draws[kind](weight.shape).astype("float32"))
        if weight.path.endswith("project_bn/gamma"):
            # small residual branches, as in trained networks: the sum of the
            # branches stays of order 1 instead of growing block after block
            weight.assign(rng.uniform(0.1, 0.3, weight.shape).astype("float32"))
    refresh_normalization(model)
    norms = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    drops = [l for l in model.layers if isinstance(l, keras.layers.Dropout)]
    momenta, rates = [l.momentum for l in norms], [l.rate for l in drops]
    for layer in norms:
        layer.momentum = 0.0
    for layer in drops:
        layer.rate = 0.0
    training_pass(model, pixels(n=64, seed=seed + 100))
    for layer, momentum in zip(norms, momenta):
        layer.momentum = momentum
    for layer, rate in zip(drops, rates):
        layer.rate = rate
    return model


def training_pass(model, x):
    """`model(x, training=True)`, its statistics updates kept; under JAX in one jitted call.

    JAX runs an eager call op by op, compiling each op of B0 for its shape
    on first use: about 100 s on 2 shared cores, against seconds jitted.
    """
    if keras.backend.backend() != "jax":
        model(x, training=True)
        return
    import jax

    call = jax.jit(functools.partial(model.stateless_call, training=True))
    _, statistics = call(
        [v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables], x
    )
    for variable, value in zip(model.non_trainable_variables, statistics):
        variable.assign(value)


def refresh_normalization(model):
    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization):
            layer.finalize_state()  # Keras' Normalization reads tensors made from its variables


def keras_b0(**kwargs):
    kwargs = {"weights": None, "input_shape": SHAPE, "classes": CLASSES, "classifier_activation": None, **kwargs}
    return keras.applications.EfficientNetB0(**kwargs)


def our_b0(**kwargs):
    kwargs = {"input_shape": SHAPE, "classes": CLASSES, "classifier_activation": None, **kwargs}
    return sdt.models.EfficientNetB0(**kwargs)


@pytest.fixture(scope="module")
def source():
    return randomize(keras_b0())


def assert_close(actual, expected):
    # float32 tolerance, relative to the size of the outputs: Keras' own eager
    # and graph outputs of this network differ by about 2e-5 of it
    scale = np.abs(numpy(expected)).max()
    assert scale > 0.1
    np.testing.assert_allclose(numpy(actual), numpy(expected), rtol=0, atol=1e-4 * scale)


def test_randomized_source_depends_on_its_input(source):
    # What makes equal outputs below mean something.
    first, second = numpy(source(pixels(seed=1))), numpy(source(pixels(seed=2)))
    assert np.abs(first - second).max() > 0.1 * np.abs(first).max()


def flat_layers(model):
    """Every layer, looking inside the branches of the blocks."""
    for layer in model.layers:
        if isinstance(layer, sdt.StochasticDepthBlock):
            yield from flat_layers(layer.branch)
        else:
            yield layer


def assert_refused_and_nothing_copied(model, application, message):
    """`load_keras_applications_weights(model, application)` raises a ValueError matching `message`; `model` is as it was."""
    before = [numpy(w) for w in model.weights]
    with pytest.raises(ValueError, match=message):
        sdt.models.load_keras_applications_weights(model, application)
    assert all(np.array_equal(b, numpy(w)) for b, w in zip(before, model.weights))


@pytest.mark.parametrize("skip_compute, mode", [(False, "sample"), (True, "batch")])
def test_b0_with_keras_weights_predicts_what_keras_does(source, skip_compute, mode):
    model = our_b0(skip_compute=skip_compute, mode=mode)
    sdt.models.load_keras_applications_weights(model, source)
    x = pixels()
    assert_close(model(x, training=False), source(x, training=False))
    assert_close(model.predict(x, verbose=0), source(x, training=False))


@pytest.mark.slow  # see SLOW_ELSEWHERE
@pytest.mark.parametrize("skip_compute", [False, True])
def test_weights_are_those_of_keras_layer_for_layer(skip_compute):
    model, source = our_b0(skip_compute=skip_compute, mode="batch"), keras_b0()
    assert model.count_params() == source.count_params()
    ours = {l.name: [tuple(w.shape) for w in l.weights] for l in flat_layers(model) if l.weights}
    theirs = {l.name: [tuple(w.shape) for w in l.weights] for l in source.layers if l.weights}
    # the one layer Keras names automatically (normalization_3, ...)
    assert ours.pop("normalization") == theirs.pop(next(n for n in theirs if n.startswith("normalization")))
    assert ours == theirs


@pytest.mark.slow  # see SLOW_ELSEWHERE
def test_layer_names_are_keras_names_without_the_drop_layers():
    model = our_b0()
    theirs = {l.name for l in keras_b0().layers if not isinstance(l, keras.layers.InputLayer)}
    ours = {l.name for l in model.layers if not isinstance(l, keras.layers.InputLayer)}
    drops = {name for name in theirs if name.endswith("_drop")}
    # Keras names its preprocessing layers automatically (rescaling_3, ...).
    generated = {name for name in theirs if name.startswith(("rescaling", "normalization"))}
    assert ours - {"rescaling", "normalization"} == theirs - drops - generated
    assert len(drops) == 9


@pytest.mark.slow  # a minute to build B3 outside TensorFlow; B0 checks the copy on every backend
def test_b3_at_a_small_size_predicts_what_keras_does():
    source = randomize(
        keras.applications.EfficientNetB3(weights=None, include_top=False, pooling="avg", input_shape=SHAPE)
    )
    model = sdt.models.EfficientNetB3(
        include_top=False, pooling="avg", input_shape=SHAPE, mode="batch", skip_compute=True
    )
    sdt.models.load_keras_applications_weights(model, source)
    assert len(stochastic_layers(model)) == 19
    x = pixels()
    assert_close(model(x, training=False), source(x, training=False))


@pytest.mark.slow  # see SLOW_ELSEWHERE
def test_paper_convention_differs_exactly_by_the_survival_scaling(source):
    model = our_b0(inverted=False)
    sdt.models.load_keras_applications_weights(model, source, allow_convention_change=True)
    x = pixels()
    assert np.abs(numpy(model(x)) - numpy(source(x))).max() > 0.01 * np.abs(numpy(source(x))).max()

    # Keras with each residual branch's last BatchNormalization scaled by p
    # (gamma and beta times p) computes x + p * f(x): the paper's inference.
    scaled = keras.models.clone_model(source)
    scaled.set_weights(source.get_weights())
    refresh_normalization(scaled)
    for layer in stochastic_layers(model):
        p = layer.survival_probability
        bn = scaled.get_layer(layer.name.replace("_add", "_project_bn"))
        gamma, beta, mean, variance = bn.get_weights()
        bn.set_weights([gamma * p, beta * p, mean, variance])
    assert_close(model(x), scaled(x))


@pytest.mark.slow  # see SLOW_ELSEWHERE
def test_paper_convention_is_refused_unless_asked_for(source):
    assert_refused_and_nothing_copied(
        our_b0(inverted=False), source, r"Invalid value received for argument `model`. Expected the inverted convention"
    )


@pytest.mark.slow  # see SLOW_ELSEWHERE
def test_paper_convention_without_drop_connect_is_a_plain_copy(source):
    model = our_b0(inverted=False, drop_connect_rate=0.0)
    assert not stochastic_layers(model)
    sdt.models.load_keras_applications_weights(model, source)
    assert_close(model(pixels()), source(pixels()))


@pytest.mark.slow  # see SLOW_ELSEWHERE
def test_default_rule_is_keras_drop_connect_rate(source):
    model = our_b0()
    rates = {l.name[: -len("drop")]: l.rate for l in source.layers if l.name.endswith("_drop")}
    layers = {l.name[: -len("add")]: l for l in stochastic_layers(model)}
    assert layers.keys() == rates.keys()
    for prefix, layer in layers.items():
        assert layer.survival_probability == 1.0 - rates[prefix]  # exactly: Keras' arithmetic
        assert (layer.mode, layer.inverted) == ("sample", True)


@pytest.mark.slow  # see SLOW_ELSEWHERE
def test_survival_probabilities_per_rule():
    keras_rule = sdt.models.efficientnet_survival_probabilities("b0", 0.2, "keras")
    blocks = [2, 4, 6, 7, 9, 10, 12, 13, 14]  # of 16 blocks 0..15; block1a, 2a, ..., 7a have no shortcut
    assert keras_rule == pytest.approx([1 - 0.2 * b / 16 for b in blocks])
    assert keras_rule[-1] == pytest.approx(0.825)  # never reaches 1 - rate
    linear = sdt.models.efficientnet_survival_probabilities("b0", 0.2, "linear")
    assert linear == pytest.approx([1 - 0.2 * l / 9 for l in range(1, 10)]) and linear[-1] == pytest.approx(0.8)
    assert sdt.models.efficientnet_survival_probabilities("b0", 0.3, "uniform") == pytest.approx([0.7] * 9)
    assert len(sdt.models.efficientnet_survival_probabilities("b7")) == 48  # of 55: the first of each stage has none


@pytest.mark.slow  # see SLOW_ELSEWHERE
def test_options_reach_every_block():
    model = our_b0(
        distribution="linear", drop_connect_rate=0.5, mode="batch", inverted=False, skip_compute=True, seed=10
    )
    layers = stochastic_layers(model)
    assert all(type(l) is sdt.StochasticDepthBlock for l in layers)
    assert [l.survival_probability for l in layers] == pytest.approx(sdt.schedules.linear_decay(9, 0.5))
    assert [l.seed for l in layers] == list(range(10, 19))  # block l, from 0, gets seed + l
    assert {(l.mode, l.inverted) for l in layers} == {("batch", False)}
    block = model.get_layer("block2b_add")
    assert block.branch.name == "block2b_branch"
    assert block.branch.get_layer("block2b_expand_conv").kernel.shape == (1, 1, 24, 144)


@pytest.mark.slow  # see SLOW_ELSEWHERE
def test_no_drop_connect_gives_plain_adds():
    model = our_b0(drop_connect_rate=0.0, skip_compute=True)
    assert not stochastic_layers(model)
    assert sum(isinstance(l, keras.layers.Add) for l in model.layers) == 9


@pytest.mark.slow  # see SLOW_ELSEWHERE
def test_input_correction_of_keras_imagenet_build_is_folded_into_the_variance():
    # What keras.applications adds with weights="imagenet": Rescaling(1 / sqrt(stddev))
    # after the Normalization. Rebuilt here without the download.
    correction = [1.0 / np.sqrt(s) for s in (0.229, 0.224, 0.225)]

    def call_function(layer, *args, **kwargs):
        outputs = layer(*args, **kwargs)
        if isinstance(layer, keras.layers.Normalization):
            return keras.layers.Rescaling(correction, name="imagenet_correction")(outputs)
        return outputs

    imagenet_like = randomize(keras.models.clone_model(keras_b0(), call_function=call_function))
    uncorrected = keras_b0()
    uncorrected.set_weights(imagenet_like.get_weights())
    refresh_normalization(uncorrected)
    model = our_b0()
    sdt.models.load_keras_applications_weights(model, imagenet_like)
    x = pixels()
    expected = numpy(imagenet_like(x))
    assert np.abs(numpy(uncorrected(x)) - expected).max() > 0.1 * np.abs(expected).max()
    assert_close(model(x), expected)


@pytest.mark.slow  # see SLOW_ELSEWHERE
def test_another_variant_is_refused_naming_a_layer(source):
    model = sdt.models.EfficientNetB1(input_shape=SHAPE, classes=CLASSES)
    with pytest.raises(
        ValueError,
        match=r"argument `source`. Expected a keras.applications EfficientNet .* "
        r"model 'efficientnetb1' has layers 'block1b_dwconv'",
    ):
        sdt.models.load_keras_applications_weights(model, source)


@pytest.mark.slow  # see SLOW_ELSEWHERE
def test_other_classes_are_refused_and_nothing_is_copied(source):
    # 'predictions' comes last: an incremental copy would have changed everything before it
    assert_refused_and_nothing_copied(
        our_b0(classes=5), source, r"argument `source`. Expected layer 'predictions' with kernel of shape \(1280, 5\)"
    )


@pytest.mark.slow  # see SLOW_ELSEWHERE
def test_another_input_shape_is_refused_with_the_top_only(source):
    with pytest.raises(ValueError, match=r"argument `source`. Expected the input_shape of `model`"):
        sdt.models.load_keras_applications_weights(our_b0(input_shape=(64, 64, 3)), source)
    notop = keras.applications.EfficientNetB0(weights=None, include_top=False, input_shape=SHAPE)
    model = sdt.models.EfficientNetB0(include_top=False)  # (None, None, 3): any size without the top
    sdt.models.load_keras_applications_weights(model, notop)
    np.testing.assert_array_equal(numpy(model.get_layer("top_conv").kernel), numpy(notop.get_layer("top_conv").kernel))


@pytest.mark.slow  # see SLOW_ELSEWHERE
def test_a_model_that_is_not_an_efficientnet_is_refused(source):
    with pytest.raises(TypeError, match=r"argument `source`. Expected a functional EfficientNet"):
        sdt.models.load_keras_applications_weights(our_b0(), sdt.models.cifar_resnet(depth=8))
    with pytest.raises(TypeError, match=r"argument `allow_convention_change`. Expected a bool"):
        sdt.models.load_keras_applications_weights(our_b0(), source, allow_convention_change="yes")


@pytest.mark.one_backend
def test_weights_imagenet_is_refused_with_the_way_to_get_them():
    with pytest.raises(ValueError, match=r"argument `weights`. Expected None or the path to a weights file") as info:
        sdt.models.EfficientNetB0(weights="imagenet")
    assert "keras.applications.EfficientNetB0(weights='imagenet')" in str(info.value)
    assert "load_keras_applications_weights" in str(info.value)
    with pytest.raises(ValueError, match=r"argument `weights`. Expected None or the path to an existing weights file"):
        sdt.models.EfficientNetB0(weights="/nonexistent/efficientnetb0.h5")


@pytest.mark.slow  # see SLOW_ELSEWHERE
def test_weights_from_a_keras_weights_file(source, tmp_path):
    path = str(tmp_path / "efficientnetb0.weights.h5")
    source.save_weights(path)
    model = our_b0(weights=path, skip_compute=True, mode="batch")
    assert_close(model(pixels()), source(pixels()))


@pytest.mark.parametrize("skip_compute, mode", [(False, "sample"), (True, "batch")])
def test_keras_file_round_trip_in_safe_mode(source, tmp_path, skip_compute, mode):
    model = our_b0(skip_compute=skip_compute, mode=mode, seed=0)
    sdt.models.load_keras_applications_weights(model, source)
    path = str(tmp_path / "efficientnetb0.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert [type(l) for l in stochastic_layers(loaded)] == [type(l) for l in stochastic_layers(model)]
    assert_close(loaded(pixels(), training=False), model(pixels(), training=False))


@pytest.mark.slow
@pytest.mark.tensorflow_only
def test_export_serves_the_deterministic_inference_form(source, tmp_path):
    import tensorflow as tf

    model = our_b0()
    sdt.models.load_keras_applications_weights(model, source)
    path = str(tmp_path / "exported")
    model.export(path, verbose=False)
    served = tf.saved_model.load(path)
    x = pixels()
    first, second = served.serve(x), served.serve(x)
    np.testing.assert_array_equal(numpy(first), numpy(second))
    assert_close(first, source(x, training=False))


def test_strip_gives_stock_layers_with_the_same_inference(source):
    model = our_b0(mode="batch", skip_compute=True, inverted=False)
    sdt.models.load_keras_applications_weights(model, source, allow_convention_change=True)
    plain = sdt.strip_stochastic_depth(model)
    assert not stochastic_layers(plain)
    assert_close(plain(pixels()), model(pixels(), training=False))


@pytest.mark.slow  # eager JAX takes a minute; tests/layers checks the skip on every backend
@pytest.mark.filterwarnings("ignore:Gradients do not exist")  # dropped branches have none, as intended
def test_batch_mode_blocks_skip_dropped_branches_in_training():
    # p = 0 everywhere (paper's convention): every residual branch is dropped,
    # so its BatchNormalization statistics must not move; the others do.
    model = our_b0(
        classes=3,
        mode="batch",
        skip_compute=True,
        inverted=False,
        distribution="uniform",
        drop_connect_rate=1.0,
        seed=0,
    )
    # Eager: the same conditional, without minutes of tracing (the block's own
    # tests cover it in graph mode and under XLA).
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), run_eagerly=True)

    def statistics():
        block = model.get_layer("block2b_add").branch.get_layer("block2b_project_bn")
        return numpy(block.moving_mean), numpy(model.get_layer("block2a_project_bn").moving_mean)

    skipped, computed = statistics()
    loss = model.train_on_batch(pixels(n=4), np.arange(4) % 3)
    assert np.isfinite(loss)
    skipped_after, computed_after = statistics()
    np.testing.assert_array_equal(skipped_after, skipped)
    assert not np.array_equal(computed_after, computed)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["b1", "b5"])  # with b0 and b3 above: depth only, wider and deeper
def test_every_variant_takes_keras_weights(variant):
    name = f"EfficientNet{variant.upper()}"
    source = getattr(keras.applications, name)(weights=None, include_top=False, input_shape=SHAPE)
    model = getattr(sdt.models, name)(include_top=False, input_shape=SHAPE)
    sdt.models.load_keras_applications_weights(model, source)  # every layer found, every shape equal
    rates = [l.rate for l in source.layers if l.name.endswith("_drop")]
    assert [l.survival_probability for l in stochastic_layers(model)] == [1.0 - r for r in rates]


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"drop_connect_rate": 1.5}, ValueError, r"argument `drop_connect_rate`. Expected a float between 0 and 1"),
        (
            {"drop_connect_rate": float("nan")},
            ValueError,
            r"argument `drop_connect_rate`. Expected a float between 0 and 1",
        ),
        ({"drop_connect_rate": True}, TypeError, r"argument `drop_connect_rate`. Expected a float between 0 and 1"),
        (
            {"drop_connect_rate": 1.0, "distribution": "linear"},
            ValueError,
            r"argument `drop_connect_rate`. Expected a rate below 1 with inverted=True",
        ),
        (
            {"distribution": "cosine"},
            ValueError,
            r"argument `distribution`. Expected one of \('keras', 'linear', 'uniform'\)",
        ),
        ({"pooling": "sum"}, ValueError, r"argument `pooling`. Expected one of \(None, 'avg', 'max'\)"),
        ({"mode": "row"}, ValueError, r"argument `mode`"),
        ({"inverted": "yes"}, TypeError, r"argument `inverted`"),
        ({"skip_compute": 1}, TypeError, r"argument `skip_compute`. Expected a bool"),
        ({"classes": 0}, ValueError, r"argument `classes`. Expected a positive int"),
        ({"input_shape": (16, 16, 3)}, ValueError, r"argument `input_shape`. Expected \(height, width, channels\)"),
        ({"input_shape": (32, 32)}, ValueError, r"argument `input_shape`"),
        ({"input_tensor": np.zeros((1, 32, 32, 3))}, TypeError, r"argument `input_tensor`. Expected a Keras tensor"),
        ({"seed": -1}, ValueError, r"argument `seed`"),
    ],
)
@pytest.mark.one_backend
def test_bad_arguments_are_refused(kwargs, error, message):
    with pytest.raises(error, match=message):
        sdt.models.EfficientNetB0(**kwargs)


@pytest.mark.one_backend
def test_bad_variant_is_refused():
    with pytest.raises(
        ValueError, match=r"argument `variant`. Expected one of \('b0', .*'b7'\). Received: variant='b8'"
    ):
        sdt.models.efficientnet("b8")


@pytest.mark.slow  # see SLOW_ELSEWHERE
def test_input_tensor_and_default_shapes():
    image = keras.Input((64, 64, 3))
    model = sdt.models.EfficientNetB0(input_tensor=image, classes=CLASSES)
    assert model.input_shape == (None, 64, 64, 3) and model.output_shape == (None, CLASSES)
    assert model.name == "efficientnetb0"
    assert sdt.models.EfficientNetB0(include_top=False, pooling="max").output_shape == (None, 1280)


@pytest.mark.one_backend
def test_zero_init_residual_zeroes_project_bn_of_residual_blocks_only():
    model = our_b0(zero_init_residual=True)
    gammas = {w.path.split("/")[-2]: numpy(w) for w in model.weights if w.path.endswith("project_bn/gamma")}
    zeroed = sorted(name for name, gamma in gammas.items() if np.all(gamma == 0.0))
    residual = [layer.name.replace("_add", "_project_bn") for layer in stochastic_layers(model)]
    assert len(zeroed) == 9 and zeroed == sorted(residual)
    assert all(np.all(gamma == 1.0) for name, gamma in gammas.items() if name not in zeroed)
