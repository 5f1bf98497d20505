"""Tests of which adds surgery takes for residuals: value-reading branches only, and scaled merges."""

import warnings

import keras
import numpy as np
import pytest

from stochastic_depth_tf import schedules
from stochastic_depth_tf.surgery import apply_stochastic_depth, strip_stochastic_depth
from stochastic_depth_tf.surgery.graph import residual_merges
from tests.helpers import images, numpy, stochastic_depth_layers, vectors

INCEPTION_SHAPE = (75, 75, 3)
NOT_RESIDUAL = r"\d+ add\(s\) of model .* left alone as not residual"


def token_ids(n=2, length=6, vocabulary_size=32, seed=0):
    return np.random.default_rng(seed).integers(1, vocabulary_size, size=(n, length)).astype("int32")


def quietly(function, *args, **kwargs):
    """`function(*args, **kwargs)` with the not-residual warning silenced (tests that count it say so)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=NOT_RESIDUAL)
        return function(*args, **kwargs)


def small_transformer(num_layers=2, width=8, sequence_length=None):
    """Token + position embedding, then pre-norm blocks `x + attention(x)`, `x + mlp(x)`, with a padding mask."""
    keras_hub = pytest.importorskip("keras_hub")
    tokens = keras.Input((sequence_length,), dtype="int32", name="token_ids")
    padding = keras.Input((sequence_length,), dtype="int32", name="padding_mask")
    token_embedding = keras.layers.Embedding(32, width, name="token_embedding")(tokens)
    position_embedding = keras_hub.layers.PositionEmbedding(16, name="position_embedding")(token_embedding)
    x = keras.layers.Add(name="embeddings_add")([token_embedding, position_embedding])
    attention_mask = keras.ops.expand_dims(padding, 1) * keras.ops.expand_dims(padding, 2)
    for index in range(num_layers):
        normed = keras.layers.LayerNormalization(name=f"block{index}_attention_norm")(x)
        attended = keras.layers.MultiHeadAttention(2, width // 2, name=f"block{index}_attention")(
            normed, normed, attention_mask=attention_mask
        )
        x = keras.layers.Add(name=f"block{index}_attention_add")([x, attended])
        normed = keras.layers.LayerNormalization(name=f"block{index}_mlp_norm")(x)
        hidden = keras.layers.Dense(2 * width, activation="gelu", name=f"block{index}_mlp_in")(normed)
        x = keras.layers.Add(name=f"block{index}_mlp_add")(
            [x, keras.layers.Dense(width, name=f"block{index}_mlp_out")(hidden)]
        )
    return keras.Model([tokens, padding], x, name="small_transformer")


def gpt2_backbone():
    keras_hub = pytest.importorskip("keras_hub")
    return keras_hub.models.GPT2Backbone(
        vocabulary_size=64, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32, max_sequence_length=16
    )


# A branch that reads only its input's shape is no residual.


@pytest.mark.one_backend
def test_gpt2_embedding_sum_is_not_a_residual():
    backbone = gpt2_backbone()
    with pytest.warns(
        UserWarning, match=r"1 add\(s\) of model 'gpt2_backbone' left alone as not residual: embeddings_add"
    ):
        assert residual_merges(backbone) == []


@pytest.mark.one_backend
def test_gpt2_graph_refused_for_want_of_a_residual_add():
    # GPT-2's graph as a plain functional model (the backbone class itself
    # goes to stochastic_depth_tf.hub): its residuals are inside the
    # TransformerDecoder layers, out of the graph's sight, and the embedding
    # sum is no residual.
    backbone = gpt2_backbone()
    graph = keras.Model(backbone.inputs, backbone.outputs, name="gpt2_graph")
    with pytest.warns(UserWarning, match=r"1 add\(s\) of model 'gpt2_graph'.*: embeddings_add"):
        with pytest.raises(ValueError, match="Invalid value received for argument `model`.*residual add"):
            apply_stochastic_depth(graph)


def test_transformer_gates_its_blocks_and_leaves_the_embedding_sum():
    original = small_transformer()
    with pytest.warns(
        UserWarning, match=r"1 add\(s\) of model 'small_transformer' left alone as not residual: embeddings_add"
    ):
        model = apply_stochastic_depth(original, final_survival_probability=0.5, inverted=True)
    assert [layer.name for layer in stochastic_depth_layers(model)] == [
        "block0_attention_add",
        "block0_mlp_add",
        "block1_attention_add",
        "block1_mlp_add",
    ]
    assert type(model.get_layer("embeddings_add")) is keras.layers.Add
    padding = np.ones((2, 6), "int32")
    padding[1, 4:] = 0
    inputs = [token_ids(), padding]
    np.testing.assert_allclose(
        numpy(model(inputs, training=False)), numpy(original(inputs, training=False)), rtol=1e-5, atol=1e-6
    )


@pytest.mark.one_backend
def test_transformer_of_fixed_sequence_length():
    model = quietly(apply_stochastic_depth, small_transformer(sequence_length=6))
    assert len(stochastic_depth_layers(model)) == 4
    assert type(model.get_layer("embeddings_add")) is keras.layers.Add


@pytest.mark.one_backend
def test_shape_only_branch_of_ops_left_alone():
    inputs = keras.Input((4,))
    x = keras.layers.Add(name="bias")([inputs, keras.ops.ones_like(inputs)])
    x = keras.layers.Add(name="residual")([x, keras.layers.Dense(4)(x)])
    with pytest.warns(UserWarning, match=r"1 add\(s\) of model .* left alone as not residual: bias"):
        model = apply_stochastic_depth(keras.Model(inputs, x))
    assert [layer.name for layer in stochastic_depth_layers(model)] == ["residual"]


@pytest.mark.one_backend
def test_shape_only_shortcut_left_alone():
    # The shorter path is the shortcut; it must carry the block input's values too.
    keras_hub = pytest.importorskip("keras_hub")
    inputs = keras.Input((6, 4))
    positions = keras_hub.layers.PositionEmbedding(6)(inputs)
    branch = keras.layers.Dense(4)(keras.layers.Dense(4)(inputs))
    outputs = keras.layers.Add(name="positions_plus_branch")([positions, branch])
    with pytest.warns(UserWarning, match=NOT_RESIDUAL), pytest.raises(ValueError, match="residual add"):
        apply_stochastic_depth(keras.Model(inputs, outputs))


@pytest.mark.one_backend
def test_zero_initialized_branch_is_still_a_residual():
    # Constant for these weights (the output is the shortcut), a branch for any other.
    inputs = keras.Input((4,))
    branch = keras.layers.Dense(4, kernel_initializer="zeros", name="branch")(inputs)
    x = keras.layers.Add(name="zero_dense")([inputs, branch])
    x = keras.layers.Add(name="zero_gamma")(
        [x, keras.layers.BatchNormalization(gamma_initializer="zeros")(keras.layers.Dense(4)(x))]
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=NOT_RESIDUAL)
        model = apply_stochastic_depth(keras.Model(inputs, x))
    assert [layer.name for layer in stochastic_depth_layers(model)] == ["zero_dense", "zero_gamma"]


@pytest.mark.one_backend
def test_branch_with_dropout_and_batch_normalization_is_a_residual():
    inputs = keras.Input((4,))
    branch = keras.layers.Dropout(0.5)(keras.layers.BatchNormalization()(keras.layers.Dense(4)(inputs)))
    model = apply_stochastic_depth(keras.Model(inputs, keras.layers.Add(name="add")([inputs, branch])))
    assert [layer.name for layer in stochastic_depth_layers(model)] == ["add"]


@pytest.mark.one_backend
def test_probe_leaves_the_model_as_it_was():
    original = small_transformer()
    weights = original.get_weights()
    inbound = [len(layer._inbound_nodes) for layer in original.layers]
    quietly(residual_merges, original)
    assert [len(layer._inbound_nodes) for layer in original.layers] == inbound
    for before, after in zip(weights, original.get_weights()):
        np.testing.assert_array_equal(after, before)


# Scaled merges: `shortcut + s * residual` in one layer (InceptionResNetV2's CustomScaleLayer).


@keras.saving.register_keras_serializable(package="test_surgery_residuals")
class ScaledAdd(keras.layers.Layer):
    """`inputs[0] + scale * inputs[1]`, as keras.applications' private CustomScaleLayer computes."""

    def __init__(self, scale, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}

    def call(self, inputs):
        return inputs[0] + inputs[1] * self.scale


def scaled_chain(scales=(0.17, 0.1, 1.0)):
    inputs = keras.Input((4,))
    x = inputs
    for index, scale in enumerate(scales):
        x = ScaledAdd(scale, name=f"scaled_{index}")([x, keras.layers.Dense(4, name=f"branch_{index}")(x)])
    return keras.Model(inputs, x, name="scaled_chain")


@pytest.mark.one_backend
def test_scaled_merges_read_with_their_scale():
    merges = residual_merges(scaled_chain())
    assert [merge.node.operation.name for merge in merges] == ["scaled_0", "scaled_1", "scaled_2"]
    assert [merge.residual_scale for merge in merges] == pytest.approx([0.17, 0.1, 1.0], rel=1e-7)
    assert all(merge.is_add for merge in merges)


def test_scaled_merges_gated_with_the_scale_kept():
    original = scaled_chain()
    model = apply_stochastic_depth(original, final_survival_probability=0.5, inverted=True)
    assert [layer.name for layer in stochastic_depth_layers(model)] == ["scaled_0", "scaled_1", "scaled_2"]
    assert [layer.name for layer in model.layers if isinstance(layer, keras.layers.Rescaling)] == [
        "scaled_0_residual_scale",
        "scaled_1_residual_scale",
    ]
    x = vectors()
    np.testing.assert_array_equal(numpy(model(x, training=False)), numpy(original(x, training=False)))


def test_scaled_merge_paper_inference_scales_both():
    original = scaled_chain(scales=(0.2,))
    model = apply_stochastic_depth(original, final_survival_probability=0.5, inverted=False)
    x = vectors()
    residual = numpy(original.get_layer("branch_0")(x))
    np.testing.assert_allclose(numpy(model(x, training=False)), x + 0.5 * 0.2 * residual, rtol=1e-6)


def test_scaled_merges_strip_to_the_original_output():
    original = scaled_chain()
    model = apply_stochastic_depth(original, final_survival_probability=0.5, inverted=False)
    stripped = strip_stochastic_depth(model)
    assert not stochastic_depth_layers(stripped)
    x = vectors()
    np.testing.assert_allclose(numpy(stripped(x)), numpy(model(x, training=False)), rtol=1e-6)
    inverse = strip_stochastic_depth(apply_stochastic_depth(original, final_survival_probability=0.5, inverted=True))
    np.testing.assert_array_equal(numpy(inverse(x)), numpy(original(x)))
    for old, new in zip(original.get_weights(), inverse.get_weights()):
        np.testing.assert_array_equal(new, old)


@pytest.mark.one_backend
@pytest.mark.parametrize(
    "merge",
    [keras.layers.Multiply, keras.layers.Average, keras.layers.Subtract, keras.layers.Maximum],
    ids=lambda merge: merge.__name__,
)
def test_other_merge_layers_are_not_scaled_adds(merge):
    inputs = keras.Input((4,))
    outputs = merge(name="merge")([inputs, keras.layers.Dense(4)(inputs)])
    assert residual_merges(keras.Model(inputs, outputs)) == []


# keras.applications InceptionResNetV2: 40 scaled merges (CustomScaleLayer), at its smallest input.
# Big (780 layers, a minute to build and rewrite under load): slow, and one
# backend, as the small scaled-merge tests above carry the maths to every backend.


@pytest.fixture(scope="module")
def inception_resnet():
    original = keras.applications.InceptionResNetV2(weights=None, input_shape=INCEPTION_SHAPE, include_top=False)
    model = apply_stochastic_depth(original, final_survival_probability=0.5, inverted=True, seed=0)
    return original, model


@pytest.mark.slow
@pytest.mark.one_backend
def test_inception_resnet_scaled_residuals_gated_with_their_scales(inception_resnet):
    original, model = inception_resnet
    layers = stochastic_depth_layers(model)
    assert len(layers) == 40
    assert not [layer for layer in model.layers if type(layer).__name__ == "CustomScaleLayer"]
    assert [layer.survival_probability for layer in layers] == schedules.linear_decay(40, 0.5)
    scales = [layer.scale for layer in model.layers if isinstance(layer, keras.layers.Rescaling)]
    # block35 x 10, block17 x 20, block8 x 9 and a last block8 of scale 1 (a plain add).
    assert scales == pytest.approx([0.17] * 10 + [0.1] * 20 + [0.2] * 9, rel=1e-7)
    assert len(model.get_weights()) == len(original.get_weights())
    for old, new in zip(original.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(new, old)


@pytest.mark.slow
@pytest.mark.one_backend
def test_inception_resnet_inverted_inference_is_the_original(inception_resnet):
    original, model = inception_resnet
    expected = numpy(original(images(INCEPTION_SHAPE, n=2), training=False))
    np.testing.assert_allclose(
        numpy(model(images(INCEPTION_SHAPE, n=2), training=False)), expected, rtol=1e-6, atol=1e-7
    )


@pytest.mark.slow
@pytest.mark.one_backend
def test_inception_resnet_strip_is_the_inverse(inception_resnet):
    original, model = inception_resnet
    stripped = strip_stochastic_depth(model)
    assert not stochastic_depth_layers(stripped)
    expected = numpy(original(images(INCEPTION_SHAPE, n=2), training=False))
    np.testing.assert_allclose(
        numpy(stripped(images(INCEPTION_SHAPE, n=2), training=False)), expected, rtol=1e-6, atol=1e-7
    )
    for old, new in zip(original.get_weights(), stripped.get_weights()):
        np.testing.assert_array_equal(new, old)
