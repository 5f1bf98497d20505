"""Tests of `stochastic_depth_tf.models.cifar_resnet`."""

import keras
import numpy as np
import pytest

import stochastic_depth_tf as sdt
from tests.helpers import images, stochastic_layers
from tests.layer_checks import JIT_COMPILE, outputs_and_gradients

SHAPE = (32, 32, 3)  # CIFAR's images: `cifar_resnet`'s input by default


@pytest.mark.one_backend
@pytest.mark.parametrize("depth, params", [(20, 0.27e6), (56, 0.85e6), (110, 1.7e6)])
def test_parameter_counts_match_he_et_al(depth, params):
    # He et al. (2016), table 6: 0.27M, 0.85M and 1.7M parameters.
    model = sdt.models.cifar_resnet(depth=depth)
    assert model.count_params() == pytest.approx(params, rel=0.03)


@pytest.mark.one_backend
@pytest.mark.parametrize("skip_compute", [True, False])
def test_blocks_follow_linear_decay(skip_compute):
    model = sdt.models.cifar_resnet(depth=20, skip_compute=skip_compute)
    layers = stochastic_layers(model)
    assert len(layers) == 9
    expected_type = sdt.StochasticDepthBlock if skip_compute else sdt.StochasticDepth
    assert all(type(l) is expected_type for l in layers)
    assert [l.survival_probability for l in layers] == pytest.approx(sdt.schedules.linear_decay(9, 0.5))


@pytest.mark.one_backend
def test_uniform_distribution_and_seeds():
    model = sdt.models.cifar_resnet(depth=20, distribution="uniform", final_survival_probability=0.8, seed=10)
    layers = stochastic_layers(model)
    assert [l.survival_probability for l in layers] == [0.8] * 9
    assert [l.seed for l in layers] == list(range(10, 19))  # block l, from 0, gets seed + l


@pytest.mark.one_backend
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
    x = images(SHAPE)
    np.testing.assert_allclose(blocks.predict(x, verbose=0), merges.predict(x, verbose=0), rtol=1e-4, atol=1e-5)


@pytest.mark.one_backend
def test_zero_pad_transitions_have_no_weights_and_projection_has_some():
    zero_pad = sdt.models.cifar_resnet(depth=20, shortcut="zero_pad")
    projection = sdt.models.cifar_resnet(depth=20, shortcut="projection")
    # Two transitions, each a 1x1 conv (16*32 and 32*64 weights) and a BN (4 x channels).
    assert projection.count_params() - zero_pad.count_params() == 16 * 32 + 32 * 64 + 4 * (32 + 64)


@pytest.mark.parametrize("skip_compute", [True, False])
def test_trains_and_round_trips_through_keras_file(tmp_path, skip_compute):
    model = sdt.models.cifar_resnet(depth=8, num_classes=3, skip_compute=skip_compute, seed=0)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x, y = images(SHAPE, n=8), np.arange(8) % 3
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    path = str(tmp_path / "resnet.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


@pytest.mark.one_backend
@pytest.mark.parametrize("depth", [7, 21, 2, 20.0, "110", True])
def test_bad_depth_is_refused(depth):
    with pytest.raises(ValueError, match=r"argument `depth`. Expected an int of the form 6n \+ 2"):
        sdt.models.cifar_resnet(depth=depth)


@pytest.mark.one_backend
@pytest.mark.parametrize("num_classes", [0, 2.0, True])
def test_bad_num_classes_is_refused(num_classes):
    with pytest.raises(
        ValueError,
        match=rf"argument `num_classes`. Expected a positive int. Received: num_classes={num_classes!r}",
    ):
        sdt.models.cifar_resnet(depth=20, num_classes=num_classes)


@pytest.mark.one_backend
def test_bad_shortcut_is_refused():
    with pytest.raises(
        ValueError,
        match=r"argument `shortcut`. Expected one of \('zero_pad', 'projection'\). Received: shortcut='conv'",
    ):
        sdt.models.cifar_resnet(depth=20, shortcut="conv")


@pytest.mark.one_backend
def test_bad_distribution_and_probability_are_refused():
    with pytest.raises(ValueError, match=r"argument `distribution`"):
        sdt.models.cifar_resnet(depth=20, distribution="cosine")
    with pytest.raises(ValueError, match=r"argument `final_survival_probability`"):
        sdt.models.cifar_resnet(depth=20, final_survival_probability=1.2)


@pytest.mark.one_backend
def test_bad_input_shape_is_refused():
    with pytest.raises(ValueError, match=r"argument `input_shape`. Expected a channels-last shape of rank 2"):
        sdt.models.cifar_resnet(depth=20, input_shape=(40,))


@pytest.mark.one_backend
def test_seeds_count_blocks_from_zero_as_surgery_does():
    built = sdt.models.cifar_resnet(depth=8, skip_compute=False, seed=7)
    plain = sdt.models.cifar_resnet(depth=8, final_survival_probability=1.0)
    applied = sdt.apply_stochastic_depth(plain, final_survival_probability=0.5, seed=7)
    assert [l.seed for l in stochastic_layers(built)] == [l.seed for l in stochastic_layers(applied)] == [7, 8, 9]


@pytest.mark.parametrize(
    "kwargs", [{"final_survival_probability": 1.0}, {"skip_compute": True}, {"skip_compute": False}]
)
def test_zero_init_residual_zeroes_the_last_gamma_of_every_branch(kwargs):
    model = sdt.models.cifar_resnet(depth=14, input_shape=(12, 12, 1), zero_init_residual=True, **kwargs)
    gammas = {w.path.split("/")[-2]: keras.ops.convert_to_numpy(w) for w in model.weights if w.path.endswith("/gamma")}
    assert sorted(name for name, gamma in gammas.items() if np.all(gamma == 0.0)) == sorted(
        f"stage{s}_block{b}_bn2" for s in (1, 2, 3) for b in (1, 2)
    )
    assert all(np.all(gamma == 1.0) for name, gamma in gammas.items() if not name.endswith("_bn2"))


def test_zero_init_residual_blocks_start_as_their_shortcut():
    # With every branch zero, the block output is relu(shortcut(x)): the
    # network's output then does not depend on the branches' other weights.
    model = sdt.models.cifar_resnet(
        depth=8, input_shape=(12, 12, 1), zero_init_residual=True, final_survival_probability=1.0
    )
    x = np.random.default_rng(0).normal(size=(4, 12, 12, 1)).astype("float32")
    before = model.predict(x, verbose=0)
    conv = model.get_layer("stage1_block1_conv1")
    conv.kernel.assign(np.random.default_rng(1).normal(size=conv.kernel.shape).astype("float32"))
    np.testing.assert_array_equal(model.predict(x, verbose=0), before)


@pytest.mark.one_backend
def test_bad_zero_init_residual_and_seed_generator_are_refused():
    with pytest.raises(TypeError, match=r"Invalid type received for argument `zero_init_residual`. Expected a bool"):
        sdt.models.cifar_resnet(depth=8, zero_init_residual="yes")
    with pytest.raises(TypeError, match=r"Invalid type received for argument `seed`. Expected None or an int"):
        sdt.models.cifar_resnet(depth=8, seed=keras.random.SeedGenerator(0))


# The one-dimensional network, for MNIST-1D: a rank-2 input_shape.

SEQUENCE_SHAPE = (40, 1)  # MNIST-1D: 40 samples, one channel


def sequences(n=4, seed=0):
    return np.random.default_rng(seed).normal(size=(n,) + SEQUENCE_SHAPE).astype("float32")


def analytic_parameter_count(depth, kernel_size, in_channels, num_classes, shortcut):
    """Weights of the CIFAR ResNet, counted by hand; BatchNormalization holds 4 per channel."""
    n = (depth - 2) // 6
    count = kernel_size * in_channels * 16 + 4 * 16  # stem
    previous = 16
    for filters in (16, 32, 64):
        for _ in range(n):
            count += kernel_size * previous * filters + 4 * filters  # conv1, bn1
            count += kernel_size * filters * filters + 4 * filters  # conv2, bn2
            if shortcut == "projection" and filters != previous:
                count += previous * filters + 4 * filters  # 1x1 conv, bn
            previous = filters
    return count + 64 * num_classes + num_classes


@pytest.mark.one_backend
@pytest.mark.parametrize("shortcut", ["zero_pad", "projection"])
@pytest.mark.parametrize("depth", [20, 110])
def test_parameter_counts_equal_the_analytic_count(depth, shortcut):
    one_d = sdt.models.cifar_resnet(depth=depth, shortcut=shortcut, input_shape=SEQUENCE_SHAPE)
    two_d = sdt.models.cifar_resnet(depth=depth, shortcut=shortcut)
    assert one_d.count_params() == analytic_parameter_count(depth, 3, 1, 10, shortcut)
    assert two_d.count_params() == analytic_parameter_count(depth, 9, 3, 10, shortcut)


@pytest.mark.one_backend
def test_1d_network_shapes_and_layers():
    model = sdt.models.cifar_resnet(depth=20, num_classes=10, input_shape=SEQUENCE_SHAPE)
    assert model.name == "cifar_resnet20_1d"
    assert model.output_shape == (None, 10)
    # Three stages of lengths 40, 20, 10 (stride 2 at each transition), 16, 32, 64 channels.
    stage_outputs = [model.get_layer(f"stage{s}_block3_out").output.shape for s in (1, 2, 3)]
    assert stage_outputs == [(None, 40, 16), (None, 20, 32), (None, 10, 64)]
    assert isinstance(model.get_layer("stem_conv"), keras.layers.Conv1D)
    assert isinstance(model.get_layer("pool"), keras.layers.GlobalAveragePooling1D)
    assert not any(isinstance(l, keras.layers.Conv2D) for l in model._flatten_layers())
    y = model.predict(sequences(), verbose=0)
    assert y.shape == (4, 10)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.one_backend
@pytest.mark.parametrize("depth, blocks", [(8, 3), (20, 9), (110, 54)])
@pytest.mark.parametrize("skip_compute", [True, False])
def test_1d_block_count_and_decay(depth, blocks, skip_compute):
    model = sdt.models.cifar_resnet(depth=depth, skip_compute=skip_compute, input_shape=SEQUENCE_SHAPE)
    layers = stochastic_layers(model)
    assert len(layers) == blocks
    assert [l.survival_probability for l in layers] == pytest.approx(sdt.schedules.linear_decay(blocks, 0.5))
    plain = sdt.models.cifar_resnet(depth=depth, final_survival_probability=1.0, input_shape=SEQUENCE_SHAPE)
    assert sum(isinstance(l, keras.layers.Add) for l in plain.layers) == blocks


@pytest.mark.one_backend
def test_1d_zero_pad_transitions_have_no_weights_and_projection_has_some():
    zero_pad = sdt.models.cifar_resnet(depth=20, shortcut="zero_pad", input_shape=SEQUENCE_SHAPE)
    projection = sdt.models.cifar_resnet(depth=20, shortcut="projection", input_shape=SEQUENCE_SHAPE)
    assert projection.count_params() - zero_pad.count_params() == 16 * 32 + 32 * 64 + 4 * (32 + 64)
    shortcut = zero_pad.get_layer("stage2_block1_stochastic_depth_block").shortcut
    assert isinstance(shortcut, sdt.layers.ZeroPadShortcut)
    assert shortcut.compute_output_shape((None, 40, 16)) == (None, 20, 32)
    conv = projection.get_layer("stage2_block1_stochastic_depth_block").shortcut.layers[0]
    assert isinstance(conv, keras.layers.Conv1D) and conv.kernel.shape == (1, 16, 32)


# The 1D builds share the 2D builds' code and mechanics, which every backend
# runs above; outside TensorFlow one 1D case each (a projection shortcut,
# where the 1D build differs most), the others with the slow tests.
ONE_D_ELSEWHERE = pytest.mark.slow


@pytest.mark.parametrize("shortcut", [pytest.param("zero_pad", marks=ONE_D_ELSEWHERE), "projection"])
def test_1d_block_and_merge_builds_agree_at_inference(shortcut):
    kwargs = dict(depth=8, shortcut=shortcut, input_shape=SEQUENCE_SHAPE)
    blocks = sdt.models.cifar_resnet(skip_compute=True, **kwargs)
    merges = sdt.models.cifar_resnet(skip_compute=False, **kwargs)
    by_key = {"/".join(w.path.split("/")[-2:]): w for w in merges.weights}
    for weight in blocks.weights:
        weight.assign(keras.ops.convert_to_numpy(by_key["/".join(weight.path.split("/")[-2:])]))
    x = sequences()
    np.testing.assert_allclose(blocks.predict(x, verbose=0), merges.predict(x, verbose=0), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "skip_compute, shortcut",
    [
        (True, "projection"),
        pytest.param(True, "zero_pad", marks=ONE_D_ELSEWHERE),
        pytest.param(False, "projection", marks=ONE_D_ELSEWHERE),
        pytest.param(False, "zero_pad", marks=ONE_D_ELSEWHERE),
    ],
)
def test_1d_trains_and_round_trips_through_keras_file(tmp_path, skip_compute, shortcut):
    model = sdt.models.cifar_resnet(
        depth=8, num_classes=3, skip_compute=skip_compute, shortcut=shortcut, seed=0, input_shape=SEQUENCE_SHAPE
    )
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x, y = sequences(n=8), np.arange(8) % 3
    before = [keras.ops.convert_to_numpy(w).copy() for w in model.trainable_weights]
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert any(not np.array_equal(b, keras.ops.convert_to_numpy(w)) for b, w in zip(before, model.trainable_weights))
    path = str(tmp_path / "resnet1d.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


skip_jax_conv = pytest.mark.skipif(
    keras.backend.backend() == "jax", reason="JAX on CPU multiplies a convolution branch (tests/layers)"
)


@skip_jax_conv
@pytest.mark.parametrize("jit_compile", JIT_COMPILE)
def test_1d_dropped_blocks_skip_their_branch(jit_compile):
    """A stride-1 Conv1D branch is skipped when dropped: its BN statistics move on kept steps only.

    Under XLA on the CPU this relies on the Conv2D gradient rewrite
    (stochastic_depth_tf/backend/tensorflow_xla.py): Keras' Conv1D is TensorFlow's conv1d, a
    Conv2D op on an expanded axis, which the rewrite handles.
    """
    model = sdt.models.cifar_resnet(
        depth=8, distribution="uniform", final_survival_probability=0.5, seed=3, input_shape=SEQUENCE_SHAPE
    )
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", jit_compile=jit_compile)
    moving_mean = (
        model.get_layer("stage1_block1_stochastic_depth_block").branch.get_layer("stage1_block1_bn1").moving_mean
    )
    x, y = sequences(n=4) + 3.0, np.arange(4) % 10
    steps, changes = 30, 0
    for _ in range(steps):
        before = keras.ops.convert_to_numpy(moving_mean).copy()
        model.train_on_batch(x, y)
        changes += not np.array_equal(before, keras.ops.convert_to_numpy(moving_mean))
    # p = 0.5 over 30 steps: all kept or all dropped has probability 2 * 2**-30.
    assert 0 < changes < steps


@pytest.mark.tensorflow_only  # the XLA-on-CPU gradient rewrite (stochastic_depth_tf/backend/tensorflow_xla.py)
def test_1d_stride_one_branches_run_in_the_xla_conditional_with_exact_gradients():
    import tensorflow as tf

    model = sdt.models.cifar_resnet(depth=8, final_survival_probability=0.5, input_shape=SEQUENCE_SHAPE)
    block = model.get_layer("stage1_block1_stochastic_depth_block")
    block.survival_probability = 1.0
    branch = block.branch
    x = np.random.default_rng(0).normal(size=(2, 40, 16)).astype("float32")

    def gradients(function):
        _, grads = outputs_and_gradients(
            lambda inputs: keras.ops.square(function(inputs)),
            [x],
            variables=branch.trainable_variables,
            state=block.non_trainable_variables,
            jit_compile=True,
        )
        return grads

    block_gradients = gradients(lambda inputs: block(inputs, training=True))
    # The branch ran inside the conditional, with the rewritten Conv2D gradients.
    assert list(block._fast_under_xla.values()) == [True]
    reference = gradients(lambda inputs: keras.ops.add(inputs, branch(inputs, training=True)))
    for got, expected in zip(block_gradients, reference):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)

    # The conditional's gradient holds forward convolutions only (Keras' Conv1D
    # is a Conv2D op on an expanded axis), which XLA runs fast.
    @tf.function(jit_compile=True)
    def traced_gradients(inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            loss = tf.reduce_sum(tf.square(block(inputs, training=True)))
        return tape.gradient(loss, [inputs] + branch.trainable_variables)

    graph_def = traced_gradients.get_concrete_function(tf.constant(x)).graph.as_graph_def()
    op_types = {node.op for function in graph_def.library.function for node in function.node_def}
    assert "Conv2D" in op_types
    assert not op_types & {"Conv2DBackpropFilter", "Conv2DBackpropInput"}
