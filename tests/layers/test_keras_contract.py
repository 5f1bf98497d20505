"""Keras' layer contract for every public layer: `run_layer_test`, masks as `Add` carries them, dtypes.

`run_layer_test` (`keras.src.testing`) is the test Keras runs on its own
layers: it builds the layer, counts its weights and seed generators (and
under PyTorch the module's parameters against them), serializes it, calls it
symbolically and eagerly, trains it one step with `fit` and calls it under
mixed precision. Every case here passes on TensorFlow, JAX and PyTorch.
"""

import keras
import numpy as np
import pytest

import stochastic_depth_tf as sdt
from tests.layer_checks import run_keras_layer_test

BACKEND = keras.backend.backend()
PAIR = ((2, 4), (2, 4))
TRAINING = [pytest.param({}, id="default-call"), pytest.param({"training": True}, id="training")]


def merge_counts():
    """A merge layer's state as Keras counts it: no weight, one seed generator (and so one torch parameter)."""
    return {
        "expected_num_trainable_weights": 0,
        "expected_num_non_trainable_weights": 0,
        "expected_num_seed_generators": 1,
    }


# --- run_layer_test ---------------------------------------------------------


@pytest.mark.parametrize("call_kwargs", TRAINING)
@pytest.mark.parametrize("inverted", [False, True], ids=["paper", "inverted"])
@pytest.mark.parametrize("mode", sdt.ops.MODES)
def test_stochastic_depth_passes_keras_layer_test(mode, inverted, call_kwargs):
    run_keras_layer_test(
        sdt.StochasticDepth,
        {"survival_probability": 0.5, "mode": mode, "inverted": inverted, "seed": 1},
        input_shape=PAIR,
        call_kwargs=call_kwargs,
        expected_output_shape=(2, 4),
        expected_output_dtype="float32",
        supports_masking=True,
        **merge_counts(),
    )


@pytest.mark.parametrize("call_kwargs", TRAINING)
@pytest.mark.parametrize("shake_mode", ["sample", "element"])
@pytest.mark.parametrize("mode", ["batch", "sample"])
def test_shake_drop_passes_keras_layer_test(mode, shake_mode, call_kwargs):
    run_keras_layer_test(
        sdt.ShakeDrop,
        {"survival_probability": 0.5, "mode": mode, "shake_mode": shake_mode, "seed": 1},
        input_shape=PAIR,
        call_kwargs=call_kwargs,
        expected_output_shape=(2, 4),
        expected_output_dtype="float32",
        supports_masking=True,
        **merge_counts(),
    )


def dense_block(projection=False, **kwargs):
    """A block with a Dense branch; `projection` widens 4 to 6 features with a Dense shortcut."""
    width = 6 if projection else 4
    shortcut = keras.layers.Dense(width) if projection else None
    return sdt.StochasticDepthBlock(keras.layers.Dense(width), shortcut=shortcut, **kwargs)


def conv_block(projection=False, **kwargs):
    """A block with a Conv2D branch; `projection` halves the resolution, the shortcut a `ZeroPadShortcut`."""
    if projection:
        branch = keras.layers.Conv2D(6, 3, strides=2, padding="same")
        return sdt.StochasticDepthBlock(branch, shortcut=sdt.layers.ZeroPadShortcut(6), **kwargs)
    return sdt.StochasticDepthBlock(keras.layers.Conv2D(3, 3, padding="same"), **kwargs)


def conv_bn_block(projection=False, **kwargs):
    """A Conv2D + BatchNormalization branch; `projection` halves the resolution, the shortcut a strided 1x1 Conv2D."""
    filters, strides = (6, 2) if projection else (3, 1)
    branch = keras.Sequential(
        [keras.layers.Conv2D(filters, 3, strides=strides, padding="same"), keras.layers.BatchNormalization()]
    )
    shortcut = keras.layers.Conv2D(filters, 1, strides=strides) if projection else None
    return sdt.StochasticDepthBlock(branch, shortcut=shortcut, **kwargs)


# name: (make the block, input shape, output shape without and with a projection)
BLOCKS = {
    "dense": (dense_block, (2, 4), {False: (2, 4), True: (2, 6)}),
    "conv": (conv_block, (2, 4, 4, 3), {False: (2, 4, 4, 3), True: (2, 2, 2, 6)}),
    "conv_bn": (conv_bn_block, (2, 4, 4, 3), {False: (2, 4, 4, 3), True: (2, 2, 2, 6)}),
}


@pytest.mark.parametrize("call_kwargs", TRAINING)
@pytest.mark.parametrize("mode", sdt.ops.MODES)
@pytest.mark.parametrize("projection", [False, True], ids=["identity", "shortcut-layer"])
@pytest.mark.parametrize("branch", sorted(BLOCKS))
def test_block_passes_keras_layer_test(branch, projection, mode, call_kwargs):
    make_block, input_shape, output_shapes = BLOCKS[branch]
    run_keras_layer_test(
        make_block,
        {"projection": projection, "survival_probability": 0.5, "mode": mode, "seed": 1},
        input_shape=input_shape,
        call_kwargs=call_kwargs,
        expected_output_shape=output_shapes[projection],
        expected_output_dtype="float32",
        supports_masking=True,
    )


@pytest.mark.parametrize(
    "input_shape, output_shape", [((2, 4, 4, 3), (2, 2, 2, 6)), ((2, 6, 3), (2, 3, 6))], ids=["image", "sequence"]
)
def test_zero_pad_shortcut_passes_keras_layer_test(input_shape, output_shape):
    run_keras_layer_test(
        sdt.layers.ZeroPadShortcut,
        {"filters": 6},
        input_shape=input_shape,
        expected_output_shape=output_shape,
        expected_output_dtype="float32",
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
        expected_num_seed_generators=0,
    )


# --- masks ------------------------------------------------------------------

# Two padded sequences: 3 and 2 real tokens of 5.
TOKENS = np.array([[3, 5, 2, 0, 0], [1, 4, 0, 0, 0]], "int32")
MASK = TOKENS > 0


def masked_sequence_model(merge, branch=None):
    """Embedding(mask_zero=True) -> `merge([x, branch(x)])` -> masked average; outputs (average, merged).

    The branch is a `Dense(4)` unless given.
    """
    inputs = keras.Input((5,), dtype="int32")
    x = keras.layers.Embedding(10, 4, mask_zero=True, name="embedding")(inputs)
    merged = merge([x, (branch or keras.layers.Dense(4))(x)])
    return keras.Model(inputs, [keras.layers.GlobalAveragePooling1D()(merged), merged])


def masked_average(values):
    """The average over the real tokens of `TOKENS`."""
    weights = MASK[..., None].astype("float32")
    return (values * weights).sum(axis=1) / weights.sum(axis=1)


@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize("layer", [sdt.StochasticDepth, sdt.ShakeDrop])
def test_survival_probability_one_equals_add_on_a_masked_sequence(layer, training):
    add = masked_sequence_model(keras.layers.Add())
    ours = masked_sequence_model(layer(1.0))
    ours.set_weights(add.get_weights())
    expected, _ = add(TOKENS, training=training)
    average, merged = ours(TOKENS, training=training)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(average), keras.ops.convert_to_numpy(expected))
    # Not the average over the padding too: the mask reached the pooling.
    # Summation order differs between backends and versions (JAX 0.4.34 is
    # 2e-9 off on an entry of 1e-4), hence the absolute bound, far below the
    # 1e-2 that averaging over the padding moves the result.
    average, merged = keras.ops.convert_to_numpy(average), keras.ops.convert_to_numpy(merged)
    np.testing.assert_allclose(average, masked_average(merged), rtol=1e-6, atol=1e-7)
    assert np.abs(average - merged.mean(axis=1)).max() > 1e-3


@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize("mode", sdt.ops.MODES)
def test_gated_merge_keeps_the_mask(mode, training):
    model = masked_sequence_model(sdt.StochasticDepth(0.5, mode=mode, seed=3))
    assert model.outputs[1]._keras_mask is not None  # the symbolic output carries it too
    average, merged = model(TOKENS, training=training)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(average), masked_average(keras.ops.convert_to_numpy(merged)), rtol=1e-6
    )


def masked_block_model(block):
    inputs = keras.Input((5,), dtype="int32")
    x = keras.layers.Embedding(10, 4, mask_zero=True, name="embedding")(inputs)
    merged = block(x)
    return keras.Model(inputs, [keras.layers.GlobalAveragePooling1D()(merged), merged])


MASKED_BRANCHES = {
    "dense": lambda: keras.layers.Dense(4),
    "sequential": lambda: keras.Sequential([keras.layers.Dense(4), keras.layers.BatchNormalization()]),
}


@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize("mode", sdt.ops.MODES)
@pytest.mark.parametrize("branch", sorted(MASKED_BRANCHES))
def test_block_keeps_the_mask_of_a_masking_branch(branch, mode, training):
    """In every path: merged, skipped whole (batch) or per example (sample, subset)."""
    model = masked_block_model(sdt.StochasticDepthBlock(MASKED_BRANCHES[branch](), survival_probability=0.5, mode=mode))
    assert model.outputs[1]._keras_mask is not None  # the symbolic output carries it too
    for _ in range(3):  # with p = 0.5 and a batch of 2, the paths differ between calls
        average, merged = model(TOKENS, training=training)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(average), masked_average(keras.ops.convert_to_numpy(merged)), rtol=1e-5
        )


def test_block_at_survival_probability_one_equals_add_on_a_masked_sequence():
    block = sdt.StochasticDepthBlock(keras.layers.Dense(4), survival_probability=1.0)
    ours = masked_block_model(block)
    add = masked_sequence_model(keras.layers.Add())
    add.set_weights(ours.get_weights())
    for training in (False, True):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(ours(TOKENS, training=training)[0]),
            keras.ops.convert_to_numpy(add(TOKENS, training=training)[0]),
            rtol=1e-6,
        )


def test_block_drops_the_mask_where_add_drops_it():
    """A branch that does not support masking (Conv1D) leaves its output unmasked, and `Add` then gives none."""
    ours = masked_block_model(
        sdt.StochasticDepthBlock(keras.layers.Conv1D(4, 3, padding="same"), survival_probability=1.0)
    )
    add = masked_sequence_model(keras.layers.Add(), branch=keras.layers.Conv1D(4, 3, padding="same"))
    add.set_weights(ours.get_weights())
    assert getattr(ours.outputs[1], "_keras_mask", None) is None
    average, merged = ours(TOKENS)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(average), keras.ops.convert_to_numpy(merged).mean(axis=1), rtol=1e-6
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(average), keras.ops.convert_to_numpy(add(TOKENS)[0]), rtol=1e-6
    )


@pytest.mark.one_backend
def test_merge_mask_is_the_inputs_masks_or_ed_as_add_has_it():
    layer = sdt.StochasticDepth(0.5)
    add = keras.layers.Add()
    x = keras.ops.zeros((2, 3, 4))
    first = keras.ops.convert_to_tensor(np.array([[True, False, False], [True, True, False]]))
    second = keras.ops.convert_to_tensor(np.array([[True, True, False], [False, False, False]]))
    for masks in ([first, second], [first, None], [None, None], None):
        expected = add.compute_mask([x, x], masks)
        mask = layer.compute_mask([x, x], masks)
        if expected is None:
            assert mask is None
        else:
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(mask), keras.ops.convert_to_numpy(expected))


# --- dtypes -----------------------------------------------------------------

SHORTCUTS = {
    "identity": lambda: (None, 4),
    "projection": lambda: (keras.layers.Dense(6), 6),
    "zero_pad": lambda: (sdt.layers.ZeroPadShortcut(6, strides=1), 6),
}


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("mode", sdt.ops.MODES)
@pytest.mark.parametrize("shortcut", sorted(SHORTCUTS))
def test_block_returns_its_compute_dtype_in_training_and_inference(shortcut, mode, policy):
    """Skipped whole, per example or merged: every path adds in the compute dtype, whatever the shortcut's policy."""
    layer, width = SHORTCUTS[shortcut]()
    block = sdt.StochasticDepthBlock(
        keras.layers.Conv1D(width, 1), shortcut=layer, survival_probability=0.5, mode=mode, dtype=policy
    )
    x = np.random.default_rng(0).normal(size=(4, 3, 4)).astype("float32")
    compute_dtype = keras.DTypePolicy(policy).compute_dtype
    assert keras.backend.standardize_dtype(block(keras.Input((3, 4))).dtype) == compute_dtype
    for training in (False, True, True, True):  # training three times: the gates differ between calls
        output = block(x, training=training)
        assert keras.backend.standardize_dtype(output.dtype) == compute_dtype, training


@pytest.mark.one_backend
@pytest.mark.parametrize(
    "make_output",
    [
        lambda x: sdt.StochasticDepth(0.5)([x, x]),
        lambda x: sdt.ShakeDrop(0.5)([x, x]),
        lambda x: sdt.StochasticDepthBlock(keras.layers.Dense(4))(x),
    ],
    ids=["StochasticDepth", "ShakeDrop", "StochasticDepthBlock"],
)
def test_integer_inputs_are_refused_at_the_symbolic_call(make_output):
    with pytest.raises(TypeError, match=r"Expected a floating point tensor.*Received: shortcut with dtype=int32"):
        make_output(keras.Input((4,), dtype="int32"))


# --- the survival probability as PyTorch state ------------------------------


@pytest.mark.skipif(BACKEND != "torch", reason="PyTorch modules: parameters and buffers")
def test_survival_probability_is_a_torch_buffer_not_a_parameter():
    """State, not a weight: in `state_dict()` (restored by `load_state_dict`), not in `parameters()`."""
    import torch

    block = sdt.StochasticDepthBlock(keras.layers.Dense(4), survival_probability=0.5)
    block.build((None, 4))
    variable = block.survival_probability_variable
    assert all(parameter is not variable.value for parameter in block.parameters())
    assert len(block.torch_params) == len(block.weights) + 1  # the seed generator's state
    assert "merge.survival_probability_state" in block.state_dict()
    variable.assign(0.25)  # as a schedule does; the next call reads it
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(block(np.ones((1, 4), "float32"))),
        1 + 0.25 * keras.ops.convert_to_numpy(block.branch(np.ones((1, 4), "float32"))),
        rtol=1e-6,
    )
    state = block.state_dict()
    state["merge.survival_probability_state"] = torch.tensor(0.75)
    block.load_state_dict(state)
    assert float(keras.ops.convert_to_numpy(variable)) == 0.75
