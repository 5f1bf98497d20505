"""`sdt.prune_blocks`: residual blocks removed outright, for serving a shallower network."""

import re
import warnings

import keras
import numpy as np
import pytest

import stochastic_depth_tf as sdt
from stochastic_depth_tf import pruning
from stochastic_depth_tf.layers import stochastic_depth_layers
from tests.helpers import run_tflite

IMAGES = np.random.default_rng(0).uniform(size=(6, 12, 12, 1)).astype("float32")


def resnet(**kwargs):
    kwargs = {"depth": 20, "input_shape": (12, 12, 1), "seed": 0, **kwargs}
    return sdt.models.cifar_resnet(**kwargs)


def names(model):
    return [layer.name for layer in stochastic_depth_layers(model)]


def predict(model, images=IMAGES):
    return keras.ops.convert_to_numpy(model(images, training=False))


def moved_statistics(model, seed=1):
    """Moves every BatchNormalization's statistics away from 0 and 1, so copying them shows."""
    rng = np.random.default_rng(seed)
    for variable in model.variables:
        if "moving" in variable.path:
            variable.assign(rng.uniform(0.5, 1.5, size=variable.shape).astype(variable.dtype))
        elif "gamma" in variable.path:
            variable.assign(rng.uniform(0.5, 1.5, size=variable.shape).astype(variable.dtype))
    return model


def with_blocks_zeroed(model, indices, images=IMAGES):
    """The original model's output with the given blocks' survival probability at 0 (a dropped branch)."""
    layers = stochastic_depth_layers(model)
    saved = [float(keras.ops.convert_to_numpy(layers[i].survival_probability_variable.value)) for i in indices]
    for i in indices:
        layers[i].survival_probability_variable.assign(0.0)
    try:
        return predict(model, images)
    finally:
        for i, value in zip(indices, saved):
            layers[i].survival_probability_variable.assign(value)


def dense_chain(kernels_zero=(), probabilities=(1.0, 0.9, 0.8)):
    """Three merge layers on Dense branches; a branch in `kernels_zero` adds exactly nothing."""
    inputs = keras.Input((4,))
    x = keras.layers.Dense(4, name="stem")(inputs)
    for index, probability in enumerate(probabilities):
        branch = keras.layers.Dense(4, activation="tanh", name=f"branch{index}")
        residual = branch(x)
        if index in kernels_zero:
            branch.kernel.assign(np.zeros((4, 4), "float32"))
            branch.bias.assign(np.zeros((4,), "float32"))
        x = sdt.StochasticDepth(probability, name=f"merge{index}")([x, residual])
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs, name="dense_chain")


# The public name.


@pytest.mark.one_backend
def test_prune_blocks_is_exported():
    assert sdt.prune_blocks is pruning.prune_blocks
    assert "prune_blocks" in sdt.__all__


# What a removed block becomes.


def test_removed_merge_layer_computes_its_shortcut_and_its_branch_leaves_the_graph():
    model = moved_statistics(resnet(skip_compute=False))
    pruned = sdt.prune_blocks(model, blocks=[3, 8])
    np.testing.assert_allclose(predict(pruned), with_blocks_zeroed(model, [3, 8]), rtol=1e-5, atol=1e-5)
    kept = {layer.name for layer in pruned.layers}
    assert "stage2_block1_stochastic_depth" not in kept and "stage2_block1_conv1" not in kept
    assert "stage3_block3_conv2" not in kept and "stage3_block3_bn2" not in kept
    assert "stage2_block1_shortcut" in kept  # the zero-pad shortcut of the transition stays
    removed = sum(
        model.get_layer(f"{prefix}_{name}").count_params()
        for prefix in ("stage2_block1", "stage3_block3")
        for name in ("conv1", "bn1", "conv2", "bn2")
    )
    assert pruned.count_params() == model.count_params() - removed


@pytest.mark.one_backend
def test_removed_block_layer_becomes_its_projection_shortcut():
    model = moved_statistics(resnet(shortcut="projection"))
    pruned = sdt.prune_blocks(model, blocks=["stage2_block1_stochastic_depth_block", 6])
    np.testing.assert_allclose(predict(pruned), with_blocks_zeroed(model, [3, 6]), rtol=1e-5, atol=1e-5)
    assert names(pruned) == [name for index, name in enumerate(names(model)) if index not in (3, 6)]
    assert "stage2_block1_shortcut" in [layer.name for layer in pruned.layers]


@pytest.mark.one_backend
def test_blocks_are_numbered_in_the_order_of_the_collector():
    model = resnet()
    for index in (0, 4, 8):
        assert names(sdt.prune_blocks(model, blocks=[index])) == names(model)[:index] + names(model)[index + 1 :]


def test_kept_blocks_keep_weights_and_the_current_survival_probability():
    model = moved_statistics(resnet())
    for layer in stochastic_depth_layers(model):
        layer.survival_probability_variable.assign(0.3)  # where a schedule might leave it
    pruned = sdt.prune_blocks(model, blocks=[])
    np.testing.assert_allclose(predict(pruned), predict(model), rtol=1e-6, atol=1e-6)
    assert [
        float(keras.ops.convert_to_numpy(layer.survival_probability_variable.value))
        for layer in stochastic_depth_layers(pruned)
    ] == pytest.approx([0.3] * 9)


@pytest.mark.one_backend
def test_inverted_blocks_keep_their_plain_add_at_inference():
    model = moved_statistics(resnet(inverted=True, skip_compute=False))
    pruned = sdt.prune_blocks(model, keep=9)
    np.testing.assert_allclose(predict(pruned), predict(model), rtol=1e-6, atol=1e-6)


@pytest.mark.one_backend
def test_pruned_model_is_a_copy():
    model = resnet()
    pruned = sdt.prune_blocks(model, blocks=[8])
    before = predict(model)
    for variable in pruned.trainable_variables:
        variable.assign(keras.ops.zeros(variable.shape, variable.dtype))
    np.testing.assert_array_equal(predict(model), before)


@pytest.mark.one_backend
def test_shake_drop_pyramidnet_block_removed_is_its_zero_padded_shortcut():
    model = moved_statistics(sdt.models.pyramidnet(depth=20, alpha=12, block="basic", input_shape=(12, 12, 1), seed=0))
    assert all(isinstance(layer, sdt.ShakeDrop) for layer in stochastic_depth_layers(model))
    # With alpha in (-1, 1) a ShakeDrop at p = 0 adds E[alpha] = 0 times its branch: a removed block.
    pruned = sdt.prune_blocks(model, blocks=[1, 4, 5])
    np.testing.assert_allclose(predict(pruned), with_blocks_zeroed(model, [1, 4, 5]), rtol=1e-5, atol=1e-5)


@pytest.mark.one_backend
def test_efficientnet_residual_blocks_are_pruned_lowest_survival_first():
    # The paper's scaling (inverted=False), so that a survival probability of 0 drops a branch
    # at inference too: the model with those blocks at 0 is what the pruned one must compute
    # (compared on logits, which differ between the full and the pruned model by far more than 1e-5).
    model = moved_statistics(
        sdt.models.EfficientNetB0(
            input_shape=(32, 32, 3), classes=10, classifier_activation=None, weights=None, inverted=False
        )
    )
    order = pruning.removal_order(model)
    assert len(order) == 9  # the blocks with a residual add; the others hold none of our layers
    pruned = sdt.prune_blocks(model, keep=5)
    assert names(pruned) == [name for index, name in enumerate(names(model)) if index not in order[:4]]
    assert pruned.output_shape == model.output_shape
    assert pruned.count_params() < model.count_params()
    images = np.random.default_rng(1).uniform(size=(2, 32, 32, 3)).astype("float32")
    expected = with_blocks_zeroed(model, order[:4], images)
    np.testing.assert_allclose(predict(pruned, images), expected, rtol=1e-5, atol=1e-5)


def test_surgery_result_of_a_plain_network_keeps_its_outputs_and_prunes_deepest_first():
    plain = moved_statistics(resnet(final_survival_probability=1.0))
    model = sdt.apply_stochastic_depth(plain, final_survival_probability=1.0)
    assert pruning.removal_order(model) == list(range(8, -1, -1))
    np.testing.assert_allclose(predict(sdt.prune_blocks(model, keep=9)), predict(plain), rtol=1e-6, atol=1e-6)
    pruned = sdt.prune_blocks(model, keep=7)
    assert names(pruned) == names(model)[:7]


@pytest.mark.one_backend
def test_residual_written_as_x_plus_y_is_pruned_after_surgery():
    inputs = keras.Input((4,))
    x = keras.layers.Dense(4, name="stem")(inputs)
    x = x + keras.layers.Dense(4, name="branch")(x)
    model = sdt.apply_stochastic_depth(keras.Model(inputs, keras.layers.Dense(2, name="head")(x)), 0.5)
    pruned = sdt.prune_blocks(model, keep=0)
    assert stochastic_depth_layers(pruned) == []
    assert "branch" not in [layer.name for layer in pruned.layers]
    features = np.ones((2, 4), "float32")
    expected = model.get_layer("head")(model.get_layer("stem")(features))
    np.testing.assert_allclose(predict(pruned, features), keras.ops.convert_to_numpy(expected), rtol=1e-6)


@pytest.mark.one_backend
def test_blocks_inside_a_nested_functional_model_are_pruned():
    inner = resnet(skip_compute=False, name="inner")
    inputs = keras.Input((12, 12, 1))
    outer = keras.Model(inputs, keras.layers.Dense(2, name="outer_head")(inner(inputs)))
    moved_statistics(outer)
    pruned = sdt.prune_blocks(outer, blocks=[2])
    assert len(stochastic_depth_layers(pruned)) == 8
    np.testing.assert_allclose(predict(pruned), with_blocks_zeroed(outer, [2]), rtol=1e-5, atol=1e-5)


@pytest.mark.one_backend
def test_compile_config_is_carried_over():
    model = resnet()
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    pruned = sdt.prune_blocks(model, keep=0.5)
    assert pruned.compiled
    loss, accuracy = pruned.evaluate(IMAGES, np.arange(6) % 10, verbose=0)
    assert np.isfinite(loss) and 0.0 <= accuracy <= 1.0


def test_pruned_model_still_trains_with_stochastic_depth():
    pruned = sdt.prune_blocks(resnet(), keep=3)
    pruned.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    history = pruned.fit(IMAGES, np.arange(6) % 10, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


# Choosing the blocks.


@pytest.mark.one_backend
def test_lowest_survival_removes_deepest_first_under_the_linear_rule():
    model = resnet()
    assert pruning.removal_order(model) == [8, 7, 6, 5, 4, 3, 2, 1, 0]
    assert names(sdt.prune_blocks(model, keep=5)) == names(model)[:5]


@pytest.mark.one_backend
def test_lowest_survival_reads_the_current_variable_and_breaks_ties_deepest_first():
    model = resnet(distribution="uniform")
    layers = stochastic_depth_layers(model)
    layers[2].survival_probability_variable.assign(0.1)
    layers[5].survival_probability_variable.assign(0.2)
    assert pruning.removal_order(model) == [2, 5, 8, 7, 6, 4, 3, 1, 0]


@pytest.mark.one_backend
def test_keep_as_a_count_or_a_fraction():
    model = resnet()
    assert len(names(sdt.prune_blocks(model, keep=1))) == 1
    assert len(names(sdt.prune_blocks(model, keep=1.0))) == 9
    assert len(names(sdt.prune_blocks(model, keep=0))) == 0
    assert len(names(sdt.prune_blocks(model, keep=0.5))) == 5  # 4.5 rounds half up
    assert len(names(sdt.prune_blocks(model, keep=np.int64(4)))) == 4


@pytest.mark.parametrize(
    "keep, removed", [(6, [2, 5, 8]), (7, [4, 8]), (3, [1, 2, 4, 5, 7, 8]), (9, []), (0, list(range(9)))]
)
@pytest.mark.one_backend
def test_every_k_is_layerdrops_rule(keep, removed):
    model = resnet()
    pruned = sdt.prune_blocks(model, keep=keep, rule="every_k")
    assert names(pruned) == [name for index, name in enumerate(names(model)) if index not in removed]


def single_removal_costs(model, features, labels, compiled):
    """The cost of removing each block alone, measured on really pruned models."""
    costs = []
    for index in range(len(stochastic_depth_layers(model))):
        scores = predict(sdt.prune_blocks(model, blocks=[index]), features)
        if compiled:
            costs.append(
                float(np.mean(keras.ops.convert_to_numpy(keras.losses.sparse_categorical_crossentropy(labels, scores))))
            )
        else:
            costs.append(float(np.mean(scores.argmax(-1) != labels)))
    return costs


@pytest.mark.parametrize("compiled", [True, False])
def test_greedy_first_removes_the_block_whose_removal_costs_least(compiled):
    keras.utils.set_random_seed(0)
    model = dense_chain(kernels_zero=(0,))  # removing merge0 changes nothing
    features = np.random.default_rng(3).normal(size=(64, 4)).astype("float32")
    labels = np.random.default_rng(5).integers(0, 3, size=64)
    if compiled:
        model.compile(loss="sparse_categorical_crossentropy")
    costs = single_removal_costs(model, features, labels, compiled)
    by_survival = pruning.removal_order(model)
    assert by_survival == [2, 1, 0]
    expected = min(by_survival, key=lambda index: costs[index])  # ties: the lowest-survival order
    order = pruning.removal_order(model, rule="greedy", validation_data=(features, labels))
    assert order[0] == expected and sorted(order) == [0, 1, 2]
    pruned = sdt.prune_blocks(model, keep=2, rule="greedy", validation_data=(features, labels))
    assert names(pruned) == [name for index, name in enumerate(names(model)) if index != expected]


@pytest.mark.one_backend
def test_greedy_accepts_one_hot_labels():
    keras.utils.set_random_seed(0)
    model = dense_chain(kernels_zero=(1,))
    features = np.random.default_rng(4).normal(size=(32, 4)).astype("float32")
    labels = np.random.default_rng(6).integers(0, 3, size=32)
    one_hot = np.eye(3, dtype="float32")[labels]
    assert pruning.removal_order(model, rule="greedy", validation_data=(features, one_hot)) == pruning.removal_order(
        model, rule="greedy", validation_data=(features, labels)
    )


@pytest.mark.one_backend
def test_removal_order_is_the_prefix_prune_blocks_removes():
    model = resnet()
    order = pruning.removal_order(model)
    for keep in (8, 4, 0):
        assert names(sdt.prune_blocks(model, keep=keep)) == names(sdt.prune_blocks(model, blocks=order[: 9 - keep]))


# Blocks that cannot go.


def shape_changing_model():
    """A merge whose shortcut has an unknown length and whose output a known one."""
    shortcut = keras.Input((None, 4), name="shortcut")
    other = keras.Input((5, 4), name="other")
    merged = sdt.StochasticDepth(0.5, name="changes_shape")([shortcut, keras.layers.Dense(4)(other)])
    x = sdt.StochasticDepth(0.9, name="fine")([merged, keras.layers.Dense(4)(merged)])
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(x))
    return keras.Model([shortcut, other], outputs)


@pytest.mark.one_backend
def test_block_whose_removal_changes_a_shape_is_refused_by_name():
    with pytest.raises(
        ValueError, match=re.escape("Invalid value received for argument `blocks`. Expected removable")
    ) as error:
        sdt.prune_blocks(shape_changing_model(), blocks=["changes_shape"])
    assert "would change a shape" in str(error.value)


@pytest.mark.one_backend
def test_block_whose_removal_changes_a_shape_is_kept_with_a_warning():
    model = shape_changing_model()
    with pytest.warns(UserWarning, match=r"1 of 2 blocks cannot be removed and are kept: block 0 \('changes_shape'\)"):
        pruned = sdt.prune_blocks(model, keep=0)
    assert names(pruned) == ["changes_shape"]


@pytest.mark.one_backend
def test_block_inside_a_sequential_cannot_be_cut_out():
    block = sdt.StochasticDepthBlock(keras.layers.Dense(4), survival_probability=0.5, name="nested_block")
    inputs = keras.Input((4,))
    x = sdt.StochasticDepth(0.5, name="top")([inputs, keras.layers.Dense(4)(inputs)])
    x = keras.Sequential([block], name="chain")(x)
    model = keras.Model(inputs, x)
    with pytest.raises(ValueError, match="Expected removable blocks only") as error:
        sdt.prune_blocks(model, blocks=[1])
    assert "not called in a functional graph" in str(error.value)
    with pytest.warns(UserWarning, match="block 1 \\('nested_block'\\)"):
        assert names(sdt.prune_blocks(model, keep=0)) == ["nested_block"]


@pytest.mark.one_backend
def test_no_warning_when_every_block_can_go():
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        sdt.prune_blocks(resnet(), keep=4)


# Errors.


@pytest.mark.one_backend
def test_model_of_the_wrong_type():
    with pytest.raises(TypeError, match="Invalid type received for argument `model`. Expected a functional"):
        sdt.prune_blocks("resnet", keep=1)


@pytest.mark.one_backend
def test_sequential_model_is_refused():
    model = keras.Sequential([keras.Input((4,)), sdt.StochasticDepthBlock(keras.layers.Dense(4))])
    with pytest.raises(ValueError, match="Invalid value received for argument `model`. Expected a functional"):
        sdt.prune_blocks(model, keep=0)


@pytest.mark.one_backend
def test_model_without_our_layers_is_refused():
    with pytest.raises(ValueError, match="Expected a functional keras.Model with at least one StochasticDepth"):
        sdt.prune_blocks(resnet(final_survival_probability=1.0), keep=0)


@pytest.mark.one_backend
@pytest.mark.parametrize("arguments", [{}, {"blocks": [1], "keep": 3}])
def test_exactly_one_of_blocks_and_keep(arguments):
    with pytest.raises(
        ValueError, match=re.escape("Invalid arguments received by prune_blocks. Expected exactly one of")
    ):
        sdt.prune_blocks(resnet(), **arguments)


@pytest.mark.one_backend
@pytest.mark.parametrize("arguments", [{"rule": "greedy"}, {"validation_data": (IMAGES, np.zeros(6))}])
def test_explicit_blocks_take_no_rule(arguments):
    with pytest.raises(ValueError, match=re.escape("Expected `rule` and `validation_data` only with `keep`")):
        sdt.prune_blocks(resnet(), blocks=[1], **arguments)


@pytest.mark.one_backend
@pytest.mark.parametrize("blocks", ["stage1_block1_stochastic_depth_block", 3, {1, 2}])
def test_blocks_of_the_wrong_type(blocks):
    with pytest.raises(TypeError, match="Invalid type received for argument `blocks`. Expected a list or tuple"):
        sdt.prune_blocks(resnet(), blocks=blocks)


@pytest.mark.one_backend
@pytest.mark.parametrize("blocks", [[9], [-1], [True], ["no_such_block"], [1.0]])
def test_blocks_out_of_range_or_unknown(blocks):
    with pytest.raises(
        ValueError, match=re.escape("Invalid value received for argument `blocks`. Expected block numbers in [0, 8]")
    ):
        sdt.prune_blocks(resnet(), blocks=blocks)


@pytest.mark.one_backend
def test_block_named_twice():
    with pytest.raises(ValueError, match="Expected each block at most once. Received: block 8 twice"):
        sdt.prune_blocks(resnet(), blocks=[8, "stage3_block3_stochastic_depth_block"])


@pytest.mark.one_backend
@pytest.mark.parametrize("keep", ["half", True, [3]])
def test_keep_of_the_wrong_type(keep):
    with pytest.raises(TypeError, match="Invalid type received for argument `keep`. Expected an int count"):
        sdt.prune_blocks(resnet(), keep=keep)


@pytest.mark.parametrize(
    "keep, expected",
    [
        (10, "an int count in [0, 9]"),
        (-1, "an int count in [0, 9]"),
        (1.5, "a float fraction in [0.0, 1.0]"),
        (float("nan"), "a float fraction"),
    ],
)
@pytest.mark.one_backend
def test_keep_out_of_range(keep, expected):
    with pytest.raises(ValueError, match=re.escape(f"Invalid value received for argument `keep`. Expected {expected}")):
        sdt.prune_blocks(resnet(), keep=keep)


@pytest.mark.one_backend
def test_unknown_rule():
    with pytest.raises(ValueError, match="Invalid value received for argument `rule`. Expected one of"):
        sdt.prune_blocks(resnet(), keep=3, rule="random")


@pytest.mark.one_backend
@pytest.mark.parametrize("rule", ["lowest_survival", "every_k"])
def test_validation_data_only_with_greedy(rule):
    with pytest.raises(ValueError, match="Invalid value received for argument `validation_data`. Expected None unless"):
        sdt.prune_blocks(resnet(), keep=3, rule=rule, validation_data=(IMAGES, np.zeros(6)))


@pytest.mark.parametrize(
    "validation_data, expected",
    [
        (None, "Expected `(x, y)` with rule='greedy'"),
        ((IMAGES,), "Expected `(x, y)`, two arrays"),
        ((IMAGES, np.zeros(5)), "Expected `(x, y)`, two arrays"),
        ([IMAGES[:0], np.zeros(0)], "Expected `(x, y)`, two arrays"),
    ],
)
@pytest.mark.one_backend
def test_greedy_needs_validation_data(validation_data, expected):
    with pytest.raises(
        ValueError, match=re.escape(f"Invalid value received for argument `validation_data`. {expected}")
    ):
        sdt.prune_blocks(resnet(), keep=3, rule="greedy", validation_data=validation_data)


@pytest.mark.one_backend
def test_greedy_refuses_a_model_compiled_with_several_losses():
    model = dense_chain()
    model.compile(loss=["sparse_categorical_crossentropy"])
    features = np.zeros((4, 4), "float32")
    with pytest.raises(ValueError, match="Expected a model compiled with one loss"):
        sdt.prune_blocks(model, keep=1, rule="greedy", validation_data=(features, np.zeros(4)))


@pytest.mark.one_backend
def test_removal_order_has_no_every_k():
    with pytest.raises(ValueError, match="Invalid value received for argument `rule`. Expected one of .* nested"):
        pruning.removal_order(resnet(), rule="every_k")


# Saving (every backend) and serving (TensorFlow).


def test_pruned_model_saves_to_keras_and_reloads(tmp_path):
    model = moved_statistics(resnet())
    pruned = sdt.prune_blocks(model, keep=0.5)
    path = str(tmp_path / "pruned.keras")
    pruned.save(path)
    reloaded = keras.models.load_model(path)
    assert names(reloaded) == names(pruned)
    np.testing.assert_allclose(predict(reloaded), predict(pruned), rtol=1e-6, atol=1e-6)


RANDOM_OP = re.compile(r"Random|Rng|TruncatedNormal|Multinomial|StatefulUniform|SeedGenerator|Shuffle")


def graph_op_types(concrete_function):
    """Op types of a concrete function's graph and of every function in its library."""
    graph_def = concrete_function.graph.as_graph_def()
    types = {node.op for node in graph_def.node}
    types |= {node.op for function in graph_def.library.function for node in function.node_def}
    return types


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The full and the pruned ResNet-20, each exported as a SavedModel and reloaded."""
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = moved_statistics(resnet())
    served = {}
    for form, candidate in (("full", model), ("pruned", sdt.prune_blocks(model, keep=0.5))):
        path = str(tmp_path_factory.mktemp(form))
        candidate.export(path, verbose=False)
        served[form] = (candidate, path, tf.saved_model.load(path), predict(candidate))
    return served


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("form", ["full", "pruned"])
def test_saved_model_serves_what_predict_gives(exported, form):
    _, _, loaded, expected = exported[form]
    np.testing.assert_allclose(np.asarray(loaded.serve(IMAGES)), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.tensorflow_only
def test_saved_model_of_the_pruned_model_holds_no_random_op(exported):
    _, _, loaded, _ = exported["pruned"]
    types = graph_op_types(loaded.signatures["serving_default"])
    assert "Conv2D" in types  # the model's ops were read
    assert {op for op in types if RANDOM_OP.search(op)} == set()
    assert len(stochastic_depth_layers(exported["pruned"][0])) == 5


@pytest.mark.tensorflow_only
def test_random_op_check_sees_the_gate_of_a_training_graph():
    """The same check finds the gate's random ops when the model is traced in training."""
    import tensorflow as tf

    model = sdt.prune_blocks(resnet(), keep=0.5)
    traced = tf.function(lambda x: model(x, training=True)).get_concrete_function(tf.TensorSpec((None, 12, 12, 1)))
    assert {op for op in graph_op_types(traced) if RANDOM_OP.search(op)}


@pytest.mark.tensorflow_only
@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated")
@pytest.mark.parametrize("form", ["full", "pruned"])
def test_tflite_conversion_matches_predict(exported, form):
    import tensorflow as tf

    _, path, _, expected = exported[form]
    converter = tf.lite.TFLiteConverter.from_saved_model(path)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    np.testing.assert_allclose(run_tflite(converter.convert(), IMAGES), expected, rtol=1e-5, atol=1e-5)
