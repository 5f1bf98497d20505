"""Tests of surgery's two parts on their own: reading residual merges, and rebuilding."""

import keras
import numpy as np

import stochastic_depth_tf as sdt
from stochastic_depth_tf.surgery.graph import nodes, residual_merges
from stochastic_depth_tf.surgery.rebuild import rebuild
from tests.helpers import vectors


def mixed_model():
    """An Add, a nested model with an `x + y`, a StochasticDepth, a ShakeDrop and a block, in that order."""
    inner_inputs = keras.Input((4,))
    inner = keras.Model(
        inner_inputs, keras.layers.Dense(4, name="op_branch")(inner_inputs) + inner_inputs, name="inner"
    )
    inputs = keras.Input((4,))
    branch = keras.layers.Dense(4, name="add_branch")(inputs)
    x = keras.layers.Add(name="add")([branch, inputs])
    x = inner(x)
    x = sdt.StochasticDepth(name="merge")([x, keras.layers.Dense(4, name="merge_branch")(x)])
    x = sdt.ShakeDrop(name="shake")([x, keras.layers.Dense(4, name="shake_branch")(x)])
    x = sdt.StochasticDepthBlock(keras.layers.Dense(4, name="block_branch"), name="block")(x)
    return keras.Model(inputs, x, name="outer")


def test_residual_merges_in_block_order_with_their_shortcut_and_residual():
    model = mixed_model()
    merges = residual_merges(model)
    assert [merge.node.operation.name for merge in merges][:1] == ["add"]
    assert [merge.node.operation.name for merge in merges][2:] == ["merge", "shake", "block"]
    assert [merge.is_add for merge in merges] == [True, True, False, False, False]
    add, op_add, merge, shake, block = merges
    assert add.shortcut is model.input and add.residual is model.get_layer("add_branch").output
    inner = model.get_layer("inner")
    assert op_add.model is inner and op_add.shortcut is inner.input
    assert op_add.residual is inner.get_layer("op_branch").output
    assert merge.residual is model.get_layer("merge_branch").output
    assert shake.residual is model.get_layer("shake_branch").output
    assert (block.shortcut, block.residual) == (None, None)
    assert block.node.input_tensors[0] is model.get_layer("shake").output


def test_residual_merges_of_a_plain_network_is_empty():
    inputs = keras.Input((4,))
    assert residual_merges(keras.Model(inputs, keras.layers.Dense(4)(inputs))) == []


def test_nodes_run_inputs_first():
    model = mixed_model()
    names = [node.operation.name for node in nodes(model)]
    assert names == ["add_branch", "add", "inner", "merge_branch", "merge", "shake_branch", "shake", "block"]


def test_rebuild_replaces_a_residual_merge_by_its_shortcut():
    # What pruning a block means: the branch is gone, the shortcut stays.
    model = mixed_model()
    add = residual_merges(model)[0]
    pruned = rebuild(model, {id(add.node): lambda node, state: state.tensor(add.shortcut)})
    assert "add" not in [layer.name for layer in pruned.layers]
    assert "add_branch" not in [layer.name for layer in pruned.layers]
    x = vectors()
    y = model.get_layer("inner")(x)
    for name in ("merge", "shake"):
        y = model.get_layer(name)([y, model.get_layer(f"{name}_branch")(y)], training=False)
    expected = model.get_layer("block")(y, training=False)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(pruned(x, training=False)), keras.ops.convert_to_numpy(expected), rtol=1e-6
    )


def test_rebuild_without_replacements_copies_weights_and_outputs():
    model = mixed_model()
    copy = rebuild(model, {})
    assert all(new is not old for new, old in zip(copy.layers[1:], model.layers[1:]))
    for new, old in zip(copy.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(new, old)
    x = vectors()
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(copy(x, training=False)),
        keras.ops.convert_to_numpy(model(x, training=False)),
        rtol=1e-6,
    )
