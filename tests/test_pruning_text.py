"""Tests of sdt.prune_blocks on KerasHub text and LLM models with LayerDrop: fewer transformer layers, same class."""

import numpy as np
import pytest

keras_hub = pytest.importorskip("keras_hub")

import keras  # noqa: E402

import stochastic_depth_tf as sdt  # noqa: E402
from tests.test_hub_text import (  # noqa: E402
    _apply,
    _bert,
    _causal_lm,
    _gemma,
    _generate,
    _inputs,
    _next_tokens,
    _sequence,
    _survival,
)


@pytest.fixture(autouse=True)
def _seeded_weights():
    keras.utils.set_random_seed(0)


def _without(model, removed):
    """The model's inference output with `removed` layers returning their input, in place (what pruning should give)."""
    backbone = getattr(model, "backbone", model)
    inputs = _inputs(backbone)
    try:
        for index in removed:
            backbone.transformer_layers[index].layer_drop_removed = True
        return _sequence(backbone(inputs))
    finally:
        for layer in backbone.transformer_layers:
            layer.layer_drop_removed = False


def _weights(layer):
    return [np.array(keras.ops.convert_to_numpy(weight)) for weight in layer.weights]


def _assert_pruned(model, pruned, removed):
    kept = [index for index in range(len(model.transformer_layers)) if index not in removed]
    assert type(pruned) is type(model)
    assert pruned.get_config()["num_layers"] == len(pruned.transformer_layers) == len(kept)
    assert len(pruned.stochastic_depth_layers) == len(kept)
    for new, index in zip(pruned.transformer_layers, kept):
        for one, other in zip(_weights(new), _weights(model.transformer_layers[index])):
            np.testing.assert_array_equal(one, other)
    np.testing.assert_allclose(_sequence(pruned(_inputs(model))), _without(model, removed), rtol=0, atol=1e-6)


@pytest.mark.parametrize("build", [_gemma, _bert], ids=["gemma", "bert"])
def test_every_k_removes_every_other_layer(build):
    model = _apply(build())
    _assert_pruned(model, sdt.prune_blocks(model, keep=2, rule="every_k"), removed=[1, 3])


def test_lowest_survival_removes_the_deepest_under_linear_decay():
    model = _apply(_gemma())
    assert sdt.pruning.removal_order(model) == [3, 2, 1, 0]
    _assert_pruned(model, sdt.prune_blocks(model, keep=0.5), removed=[2, 3])


def test_kept_layers_keep_their_current_survival_probability():
    model = _apply(_gemma(), inverted=False)
    model.stochastic_depth_layers[0].survival_probability_variable.assign(0.3)
    pruned = sdt.prune_blocks(model, blocks=[1, 2])
    np.testing.assert_allclose(_survival(pruned), [0.3, _survival(model)[3]], rtol=1e-6)
    # The paper's scaling at inference uses them: the pruned model computes what the original did without 1, 2.
    np.testing.assert_allclose(_sequence(pruned(_inputs(model))), _without(model, [1, 2]), rtol=0, atol=1e-6)


def test_blocks_by_number_and_name():
    model = _apply(_gemma())
    pruned = sdt.prune_blocks(model, blocks=[0, model.transformer_layers[2].name])
    _assert_pruned(model, pruned, removed=[0, 2])


def test_greedy_on_a_backbone_scores_how_far_its_output_moves():
    model = _apply(_gemma())
    order = sdt.pruning.removal_order(model, rule="greedy", validation_data=_inputs(model))
    assert sorted(order) == [0, 1, 2, 3]
    pruned = sdt.prune_blocks(model, keep=3, rule="greedy", validation_data=_inputs(model))
    _assert_pruned(model, pruned, removed=order[:1])
    # The first removal is the layer whose absence moves the output least.
    distances = [np.mean(np.square(_without(model, [index]) - _without(model, []))) for index in range(4)]
    assert order[0] == int(np.argmin(distances))
    assert all(not layer.layer_drop_removed for layer in model.transformer_layers)


def test_greedy_on_a_causal_lm_scores_its_loss_and_returns_the_task():
    causal_lm = _causal_lm("gemma", _apply(_gemma()))
    inputs = _inputs(causal_lm.backbone, batch=8)
    labels, weights = _next_tokens(inputs)
    pruned = sdt.prune_blocks(causal_lm, keep=2, rule="greedy", validation_data=(inputs, labels, weights))
    assert type(pruned) is type(causal_lm)
    assert len(pruned.backbone.transformer_layers) == 2
    assert pruned.backbone.get_config()["num_layers"] == 2


@pytest.mark.slow  # a fit, a generate (its loop compiles) and a preset: about 30 s
def test_pruned_causal_lm_trains_generates_and_round_trips_a_preset(tmp_path):
    model = sdt.prune_blocks(_apply(_gemma(), mode="batch"), keep=2, rule="every_k")
    causal_lm = _causal_lm("gemma", model)
    inputs = _inputs(model)
    labels, weights = _next_tokens(inputs)
    history = causal_lm.fit(inputs, labels, sample_weight=weights, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert _generate(causal_lm).shape == (2, 8)
    model.save_to_preset(str(tmp_path))
    loaded = keras_hub.models.Backbone.from_preset(str(tmp_path))
    assert type(loaded) is type(model) and len(loaded.transformer_layers) == 2
    np.testing.assert_array_equal(_sequence(loaded(inputs)), _sequence(model(inputs)))


def test_pruned_classifier_keeps_its_head():
    classifier = keras_hub.models.BertTextClassifier(backbone=_apply(_bert()), num_classes=3, preprocessor=None)
    pruned = sdt.prune_blocks(classifier, keep=2, rule="every_k")
    assert type(pruned) is type(classifier)
    backbone = {id(weight) for weight in classifier.backbone.weights}
    head = [weight.path for weight in classifier.weights if id(weight) not in backbone]
    assert head
    for path in head:
        (one,) = [weight for weight in pruned.weights if weight.path == path]
        (other,) = [weight for weight in classifier.weights if weight.path == path]
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(one), keras.ops.convert_to_numpy(other))


@pytest.mark.one_backend
def test_a_removal_that_moves_a_sliding_window_layer_is_refused():
    model = _apply(keras_hub.models.GemmaBackbone(**{**_gemma().get_config(), "use_sliding_window_attention": True}))
    # Gemma slides its window in the even layers: keeping 0 and 1 keeps them as built.
    _assert_pruned(model, sdt.prune_blocks(model, blocks=[2, 3]), removed=[2, 3])
    with pytest.raises(ValueError, match="built with other use_sliding_window_attention"):
        sdt.prune_blocks(model, keep=2, rule="every_k")


@pytest.mark.one_backend
def test_greedy_on_a_backbone_needs_its_inputs():
    model = _apply(_gemma())
    with pytest.raises(ValueError, match="Invalid value received for argument `validation_data`"):
        sdt.prune_blocks(model, keep=2, rule="greedy", validation_data=(np.zeros((2, 8)), np.zeros(2)))
    with pytest.raises(ValueError, match="Invalid value received for argument `validation_data`"):
        sdt.prune_blocks(model, keep=2, rule="greedy")


@pytest.mark.one_backend
def test_bad_keep_and_blocks_are_refused():
    model = _apply(_gemma())
    with pytest.raises(ValueError, match="Invalid value received for argument `keep`"):
        sdt.prune_blocks(model, keep=5)
    with pytest.raises(ValueError, match="Invalid value received for argument `blocks`"):
        sdt.prune_blocks(model, blocks=[4])
    with pytest.raises(ValueError, match="Expected exactly one of"):
        sdt.prune_blocks(model)
