"""Tests of LayerDrop on KerasHub's text and LLM backbones (stochastic_depth_tf.hub.text_encoder, text_decoder).

Every backbone is built tiny from its constructor arguments, weights seeded:
nothing is downloaded. The front door, `sdt.apply_stochastic_depth`, hands a
KerasHub backbone to `stochastic_depth_tf.hub`.
"""

import numpy as np
import pytest

keras_hub = pytest.importorskip("keras_hub")

import keras  # noqa: E402

import stochastic_depth_tf as sdt  # noqa: E402
from stochastic_depth_tf.layers import stochastic_depth_layers  # noqa: E402
from stochastic_depth_tf.layers._layer_drop import LayerDropGate  # noqa: E402
from tests.layer_checks import outputs_and_gradients  # noqa: E402

VOCABULARY = 64
SMALL = dict(num_layers=4, hidden_dim=16, intermediate_dim=32)
GQA = dict(num_query_heads=2, num_key_value_heads=1)


@pytest.fixture(autouse=True)
def _seeded_weights():
    """Every test builds its backbones from the same initial weights."""
    keras.utils.set_random_seed(0)


def _bert():
    return keras_hub.models.BertBackbone(
        vocabulary_size=VOCABULARY, num_heads=2, max_sequence_length=16, dropout=0.0, **SMALL
    )


def _roberta():
    return keras_hub.models.RobertaBackbone(
        vocabulary_size=VOCABULARY, num_heads=2, max_sequence_length=16, dropout=0.0, **SMALL
    )


def _distil_bert():
    return keras_hub.models.DistilBertBackbone(
        vocabulary_size=VOCABULARY, num_heads=2, max_sequence_length=16, dropout=0.0, **SMALL
    )


def _electra():
    return keras_hub.models.ElectraBackbone(
        vocab_size=VOCABULARY, num_heads=2, embedding_dim=16, max_sequence_length=16, dropout=0.0, **SMALL
    )


def _gpt2():
    return keras_hub.models.GPT2Backbone(
        vocabulary_size=VOCABULARY, num_heads=2, max_sequence_length=16, dropout=0.0, **SMALL
    )


def _opt():
    return keras_hub.models.OPTBackbone(
        vocabulary_size=VOCABULARY, num_heads=2, max_sequence_length=16, dropout=0.0, **SMALL
    )


def _gemma():
    return keras_hub.models.GemmaBackbone(vocabulary_size=VOCABULARY, head_dim=8, **GQA, **SMALL)


def _gemma3():
    return keras_hub.models.Gemma3Backbone(
        vocabulary_size=VOCABULARY, image_size=16, head_dim=8, vision_encoder=None, **GQA, **SMALL
    )


def _llama():
    return keras_hub.models.LlamaBackbone(vocabulary_size=VOCABULARY, **GQA, **SMALL)


def _mistral():
    return keras_hub.models.MistralBackbone(vocabulary_size=VOCABULARY, **GQA, **SMALL)


def _qwen():
    return keras_hub.models.QwenBackbone(vocabulary_size=VOCABULARY, **GQA, **SMALL)


def _qwen3():
    return keras_hub.models.Qwen3Backbone(vocabulary_size=VOCABULARY, head_dim=8, **GQA, **SMALL)


def _phi3():
    return keras_hub.models.Phi3Backbone(vocabulary_size=VOCABULARY, **GQA, **SMALL)


BACKBONES = {
    "bert": _bert,
    "roberta": _roberta,
    "distil_bert": _distil_bert,
    "electra": _electra,
    "gpt2": _gpt2,
    "opt": _opt,
    "gemma": _gemma,
    "gemma3": _gemma3,
    "llama": _llama,
    "mistral": _mistral,
    "qwen": _qwen,
    "qwen3": _qwen3,
    "phi3": _phi3,
}
# One per layer class of each family runs on every backend (the adapters'
# plumbing is backend-neutral; what differs is the gate, which these cover).
EVERY_BACKEND = ("bert", "gpt2", "gemma", "llama")


def _cases(names=None):
    names = sorted(BACKBONES) if names is None else names
    return [name if name in EVERY_BACKEND else pytest.param(name, marks=pytest.mark.slow) for name in names]


def _inputs(backbone, batch=4, length=8):
    """Token ids with padding at the end of some rows (and segment ids where the backbone takes them)."""
    rng = np.random.default_rng(0)
    lengths = [length, length - 3, 3, length][:batch] + [length] * max(0, batch - 4)
    padding_mask = np.array([[1] * n + [0] * (length - n) for n in lengths], dtype="int32")
    inputs = {"token_ids": rng.integers(1, VOCABULARY, (batch, length)).astype("int32") * padding_mask}
    inputs["padding_mask"] = padding_mask
    if "segment_ids" in backbone.input:
        inputs["segment_ids"] = np.zeros((batch, length), dtype="int32")
    return inputs


def _sequence(outputs):
    """The backbone's sequence output (BERT and ELECTRA return a dict)."""
    if isinstance(outputs, dict):
        outputs = outputs["sequence_output"]
    return np.asarray(keras.ops.convert_to_numpy(outputs))


def _apply(backbone, **settings):
    return sdt.apply_stochastic_depth(backbone, **{"final_survival_probability": 0.5, "seed": 0, **settings})


@pytest.mark.one_backend
@pytest.mark.parametrize("name", _cases())
def test_class_is_kept_and_weights_copied(name):
    original = BACKBONES[name]()
    model = _apply(original)
    assert isinstance(model, type(original))
    assert type(model).stochastic_depth_base_class is type(original)
    assert model.name == original.name
    # LayerDrop's default: one gate per layer, in the order the layers run.
    gates = model.stochastic_depth_layers
    assert len(gates) == len(original.transformer_layers) == 4
    assert all(isinstance(gate, LayerDropGate) for gate in gates)
    assert stochastic_depth_layers(model) == list(gates)
    assert [gate.survival_probability for gate in gates] == [0.875, 0.75, 0.625, 0.5]
    copied, weights = (sorted(m.weights, key=lambda weight: weight.path) for m in (model, original))
    assert [weight.path for weight in copied] == [weight.path for weight in weights]
    for one, other in zip(copied, weights):
        assert one is not other
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(one), keras.ops.convert_to_numpy(other))


@pytest.mark.parametrize("name", _cases())
def test_inference_is_the_original_exactly_padding_included(name):
    original = BACKBONES[name]()
    model = _apply(original)
    inputs = _inputs(original)
    np.testing.assert_array_equal(_sequence(model(inputs)), _sequence(original(inputs)))


@pytest.mark.parametrize("name", _cases(["gemma", "llama"]))
def test_survival_probability_one_trains_as_the_original_exactly(name):
    original = BACKBONES[name]()
    model = _apply(original, final_survival_probability=1.0)
    inputs = _inputs(original)
    np.testing.assert_array_equal(_sequence(model(inputs, training=True)), _sequence(original(inputs, training=True)))


def _embedded(backbone, inputs):
    """What the backbone's transformer layers take: its embeddings of `inputs`, as NumPy (the test's input)."""
    # The first layer's input tensors: the sequence, then the masks passed to it.
    tensors = backbone.transformer_layers[0].input
    embedding = keras.Model(backbone.input, tensors[0] if isinstance(tensors, (list, tuple)) else tensors)
    return np.asarray(keras.ops.convert_to_numpy(embedding(inputs)))


def _mask_argument(model):
    return type(model.transformer_layers[0]).mask_arguments[0]


def _layers_outputs_and_gradients(model, inputs, gates, jit_compile=False):
    """The transformer layers' training outputs (weighted) and gradients, on the backbone's embeddings, twice.

    In batch mode TensorFlow runs them as a graph (as `fit` does): eagerly,
    `tf.cond` runs one branch and leaves the gradients of a layer it skipped
    None, where a graph (and JAX, and our PyTorch conditional) gives zeros.
    """
    padding_mask = keras.ops.convert_to_tensor(inputs["padding_mask"])
    argument = _mask_argument(model)
    embedded = _embedded(model, inputs)
    weights = np.random.default_rng(1).normal(size=embedded.shape).astype("float32")

    def layers(x):
        for layer in model.transformer_layers:
            x = layer(x, training=True, **{argument: padding_mask})
        # Random weights: the plain sum of a normalized output has gradients of rounding noise only.
        return keras.ops.multiply(x, weights)

    if keras.backend.backend() == "tensorflow" and not jit_compile and gates[0].mode == "batch":
        import tensorflow as tf

        layers = tf.function(layers)
    variables = [variable for layer in model.transformer_layers for variable in layer.trainable_variables]
    state = {id(variable): variable for variable in model.non_trainable_variables}
    state.update({id(variable): variable for gate in gates for variable in gate.non_trainable_variables})
    return outputs_and_gradients(
        layers, [embedded], variables=variables, state=list(state.values()), jit_compile=jit_compile, calls=2
    )


def _assert_same_outputs_and_gradients(skipping, merging):
    (outputs, gradients), (expected_outputs, expected_gradients) = skipping, merging
    np.testing.assert_allclose(outputs, expected_outputs, rtol=1e-5, atol=1e-5)
    assert len(gradients) == len(expected_gradients)
    for gradient, expected in zip(gradients, expected_gradients):
        np.testing.assert_allclose(gradient, expected, rtol=1e-4, atol=1e-5 * max(1.0, float(np.max(np.abs(expected)))))


@pytest.mark.parametrize("mode", ["batch", "sample", "subset"])
@pytest.mark.parametrize(
    "name",
    ["bert", "gemma", pytest.param("gpt2", marks=pytest.mark.slow), pytest.param("llama", marks=pytest.mark.slow)],
)
def test_skipping_equals_the_merge_form(name, mode):
    original = BACKBONES[name]()
    inputs = _inputs(original, batch=8)
    settings = {"mode": mode, "distribution": "uniform"}
    skipping, merging = (_apply(original, skip_compute=skip, **settings) for skip in (True, False))
    _assert_same_outputs_and_gradients(
        _layers_outputs_and_gradients(skipping, inputs, skipping.stochastic_depth_layers),
        _layers_outputs_and_gradients(merging, inputs, merging.stochastic_depth_layers),
    )


@pytest.mark.slow
@pytest.mark.tensorflow_only
@pytest.mark.parametrize("mode", ["batch", "subset"])
def test_skipping_under_xla_equals_the_merge_form(mode):
    original = _gemma()
    inputs = _inputs(original, batch=8)
    settings = {"mode": mode, "distribution": "uniform"}
    skipping, merging = (_apply(original, skip_compute=skip, **settings) for skip in (True, False))
    _assert_same_outputs_and_gradients(
        _layers_outputs_and_gradients(skipping, inputs, skipping.stochastic_depth_layers, jit_compile=True),
        _layers_outputs_and_gradients(merging, inputs, merging.stochastic_depth_layers, jit_compile=True),
    )


@pytest.mark.parametrize("mode", ["batch", "sample", "subset"])
def test_survival_probability_zero_drops_every_layer_in_training(mode):
    original = _gemma()
    model = _apply(original, final_survival_probability=0.0, inverted=False, distribution="uniform", mode=mode)
    inputs = _inputs(original)
    # The paper's scaling at inference, p = 0: every layer returns its input, as in training.
    dropped = _sequence(model(inputs))
    np.testing.assert_array_equal(_sequence(model(inputs, training=True)), dropped)
    assert np.max(np.abs(dropped - _sequence(original(inputs)))) > 1e-3


@pytest.mark.parametrize(
    "settings, training, rows",
    [
        ({"mode": "subset"}, True, [4] * 4),
        ({"mode": "subset"}, False, []),
        ({"mode": "subset", "skip_compute": False}, True, []),
        ({"mode": "subset", "final_survival_probability": 0.95}, True, []),
    ],
)
def test_layers_run_on_kept_sequences_in_training_only(monkeypatch, settings, training, rows):
    from stochastic_depth_tf.layers import _layer_drop

    seen = []

    def spy(merge, change, inputs, shortcut, **kwargs):
        def counted(kept):
            seen.append(int(keras.ops.shape(kept)[0]))
            return change(kept)

        return skip_dropped_examples(merge, counted, inputs, shortcut, **kwargs)

    skip_dropped_examples = _layer_drop.skip_dropped_examples
    monkeypatch.setattr(_layer_drop, "skip_dropped_examples", spy)
    model = _apply(_gemma(), **{"distribution": "uniform", **settings})
    model(_inputs(model, batch=8), training=training)
    # Subset mode keeps round(0.5 * 8) of the sequences, in each of the four layers.
    assert seen == rows


@pytest.mark.parametrize("training, conditionals", [(True, 4), (False, 0)])
def test_batch_mode_runs_each_layer_in_a_conditional_in_training(monkeypatch, training, conditionals):
    from stochastic_depth_tf.layers import _layer_drop

    owners = []

    def spy(predicate, kept, skipped, layers, owner):
        owners.append(owner)
        return conditional(predicate, kept, skipped, layers, owner)

    conditional = _layer_drop.backend.conditional
    monkeypatch.setattr(_layer_drop.backend, "conditional", spy)
    model = _apply(_gemma(), mode="batch")
    model(_inputs(model), training=training)
    assert owners == [gate.name for gate in model.stochastic_depth_layers][:conditionals]


CAUSAL_LMS = {
    "gpt2": keras_hub.models.GPT2CausalLM,
    "opt": keras_hub.models.OPTCausalLM,
    "gemma": keras_hub.models.GemmaCausalLM,
    "gemma3": keras_hub.models.Gemma3CausalLM,
    "llama": keras_hub.models.LlamaCausalLM,
    "mistral": keras_hub.models.MistralCausalLM,
    "qwen": keras_hub.models.QwenCausalLM,
    "qwen3": keras_hub.models.Qwen3CausalLM,
    "phi3": keras_hub.models.Phi3CausalLM,
}


def _prompt():
    """Two prompts of 3 and 2 tokens, room for 5 more: `generate` from token ids (`preprocessor=None`)."""
    token_ids = np.array([[5, 6, 7, 0, 0, 0, 0, 0], [9, 3, 0, 0, 0, 0, 0, 0]], dtype="int32")
    return {"token_ids": token_ids, "padding_mask": (token_ids > 0).astype("int32")}


def _causal_lm(name, backbone):
    causal_lm = CAUSAL_LMS[name](backbone=backbone, preprocessor=None)
    # Greedy: the same tokens from the same logits (GPT-2's default samples top-k).
    causal_lm.compile(sampler="greedy")
    return causal_lm


def _generate(causal_lm):
    if isinstance(causal_lm, keras_hub.models.Gemma3CausalLM):
        # Its `generate` adds `images: None` to the outputs it then concatenates
        # (keras-hub 0.32, text only, no preprocessor): the step it compiles.
        outputs = causal_lm.generate_step(_prompt(), stop_token_ids=None)
    else:
        outputs = causal_lm.generate(_prompt(), stop_token_ids=None)
    return np.asarray(keras.ops.convert_to_numpy(outputs["token_ids"]))


def _next_tokens(inputs):
    """Labels of a causal LM: each token's next, padding and the last position weighted 0."""
    labels = np.roll(inputs["token_ids"], -1, axis=1)
    weights = np.roll(inputs["padding_mask"], -1, axis=1) * inputs["padding_mask"]
    weights[:, -1] = 0
    return labels, weights.astype("float32")


@pytest.mark.one_backend
def test_every_registered_adapter_defines_its_sub_layers():
    from stochastic_depth_tf.hub import text_decoder, text_encoder
    from stochastic_depth_tf.layers._layer_drop import LayerDropBlock

    adapters = [*text_decoder.ADAPTERS.values(), *text_encoder.ADAPTERS.values()]
    assert len(adapters) >= 9
    for adapter in adapters:
        assert adapter.sublayers is not LayerDropBlock.sublayers, adapter.__name__
        if issubclass(adapter, text_decoder._GemmaShaped):
            assert adapter._attention_mask is not text_decoder._GemmaShaped._attention_mask, adapter.__name__


def test_generate_is_the_originals_on_every_backend():
    # One decoder at the fast size, so that the JAX and PyTorch passes (which
    # skip the slow tests below) check generation through call_with_cache too.
    original = BACKBONES["gpt2"]()
    expected = _generate(_causal_lm("gpt2", original))
    np.testing.assert_array_equal(_generate(_causal_lm("gpt2", _apply(original, mode="batch"))), expected)


# One causal LM per decoder implementation the adapters mirror: OPT's is
# GPT-2's TransformerDecoder, Mistral's and the Qwens' are Llama's shape.
# GPT-2's generation is the fast test's above, on every backend; training
# then generating is the same code path as for the four here.
GENERATE_MATRIX = ["gemma", "gemma3", "llama", "phi3"]


@pytest.mark.slow  # a generate compiles its loop: 10 to 30 s each; run per backend with -m slow
@pytest.mark.parametrize("name", GENERATE_MATRIX)
def test_generate_is_the_originals_and_runs_after_training(name):
    original = BACKBONES[name]()
    expected = _generate(_causal_lm(name, original))
    model = _apply(original, mode="batch")
    causal_lm = _causal_lm(name, model)
    np.testing.assert_array_equal(_generate(causal_lm), expected)
    inputs = _inputs(model)
    labels, weights = _next_tokens(inputs)
    before = [np.array(keras.ops.convert_to_numpy(weight)) for weight in model.trainable_weights]
    history = causal_lm.fit(inputs, labels, sample_weight=weights, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(
        not np.array_equal(keras.ops.convert_to_numpy(weight), value)
        for weight, value in zip(model.trainable_weights, before)
    )
    generated = _generate(causal_lm)
    assert generated.shape == expected.shape
    np.testing.assert_array_equal(generated[:, :3] * _prompt()["padding_mask"][:, :3], _prompt()["token_ids"][:, :3])


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sample", "subset"])
def test_text_classifier_trains_with_layers_dropped(mode):
    model = _apply(_bert(), mode=mode)
    classifier = keras_hub.models.BertTextClassifier(backbone=model, num_classes=2, preprocessor=None)
    inputs = _inputs(model, batch=8)
    history = classifier.fit(inputs, np.arange(8) % 2, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.slow
@pytest.mark.tensorflow_only
def test_llama_trains_in_batch_mode_under_xla():
    # Llama's feed-forward is Dense layers on sequences: traced by fit with
    # an unknown batch, their gradient does not compile in an XLA
    # conditional, so there each layer is computed and gated instead.
    model = _apply(_llama(), mode="batch")
    causal_lm = keras_hub.models.LlamaCausalLM(backbone=model, preprocessor=None)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    causal_lm.compile(optimizer="adam", loss=loss, jit_compile=True)
    inputs = _inputs(model)
    labels, weights = _next_tokens(inputs)
    history = causal_lm.fit(inputs, labels, sample_weight=weights, batch_size=3, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    answers = [value for gate in model.stochastic_depth_layers for value in gate._fast_under_xla.values()]
    assert answers and not any(answers)


def _survival(model):
    return [
        float(keras.ops.convert_to_numpy(gate.survival_probability_variable)) for gate in model.stochastic_depth_layers
    ]


@pytest.mark.parametrize("name", _cases(["bert", "gemma", "llama", "gpt2"]))
def test_preset_round_trip(name, tmp_path):
    model = _apply(BACKBONES[name](), final_survival_probability=0.7, mode="batch", seed=3)
    model.stochastic_depth_layers[-1].survival_probability_variable.assign(0.6)
    model.save_to_preset(str(tmp_path))
    loaded = keras_hub.models.Backbone.from_preset(str(tmp_path))
    assert type(loaded) is type(model)
    assert loaded.stochastic_depth_settings == model.stochastic_depth_settings
    # The gates' current values travel with the weights.
    np.testing.assert_allclose(_survival(loaded), _survival(model), rtol=1e-6)
    inputs = _inputs(model)
    np.testing.assert_array_equal(_sequence(loaded(inputs)), _sequence(model(inputs)))


def test_keras_file_of_a_causal_lm_round_trip(tmp_path):
    causal_lm = _causal_lm("gemma", _apply(_gemma()))
    path = str(tmp_path / "causal_lm.keras")
    causal_lm.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.backbone) is type(causal_lm.backbone)
    np.testing.assert_array_equal(_generate(loaded), _generate(causal_lm))


@pytest.mark.parametrize("name", _cases())
def test_strip_gives_the_original_class_and_function(name):
    original = BACKBONES[name]()
    plain = sdt.strip_stochastic_depth(_apply(original))
    assert type(plain) is type(original)
    assert plain.get_config() == original.get_config()
    inputs = _inputs(original)
    np.testing.assert_array_equal(_sequence(plain(inputs)), _sequence(original(inputs)))


@pytest.mark.one_backend
@pytest.mark.parametrize(
    "build, reason",
    [
        (
            lambda: keras_hub.models.AlbertBackbone(
                vocabulary_size=VOCABULARY, num_heads=2, embedding_dim=8, max_sequence_length=16, **SMALL
            ),
            "shared across depth",
        ),
        (
            lambda: keras_hub.models.BartBackbone(
                vocabulary_size=VOCABULARY, num_heads=2, max_sequence_length=16, **SMALL
            ),
            "an encoder-decoder",
        ),
    ],
)
def test_unsupported_text_backbones_are_refused_with_their_reason(build, reason):
    with pytest.raises(ValueError, match=f"Invalid value received for argument `backbone`.*{reason}"):
        _apply(build())


@pytest.mark.one_backend
def test_every_text_backbone_is_supported_or_refused():
    from stochastic_depth_tf import hub

    text = [
        name
        for name in dir(keras_hub.models)
        if name.endswith("Backbone")
        and any(
            word in name
            for word in ("Bert", "Roberta", "Electra", "GPT", "Gpt", "OPT", "Gemma", "Llama", "Mistral", "Mixtral")
            + ("Qwen", "Phi", "Albert", "Bart", "T5", "Bloom", "Falcon", "Deberta", "ESM", "FNet", "Roformer")
            + ("SmolLM", "XLNet", "RWKV", "Whisper", "Moonshine")
        )
    ]
    classes = {getattr(keras_hub.models, name).__name__ for name in text}
    known = set(hub.SUPPORTED_BACKBONES) | set(hub.UNSUPPORTED_BACKBONES)
    assert sorted(classes - known) == []


@pytest.mark.one_backend
def test_a_changed_layer_signature_fails_loudly(monkeypatch):
    from stochastic_depth_tf.hub import text_decoder

    # A keras-hub release whose Gemma block no longer takes the mask the adapter passes.
    monkeypatch.setattr(text_decoder.GemmaDecoderBlockLayerDrop, "mask_arguments", ("attention_padding_mask",))
    with pytest.raises(TypeError, match="no longer takes the arguments .* attention_padding_mask"):
        _apply(_gemma())


@pytest.mark.one_backend
def test_a_mask_lost_on_the_way_fails_loudly(monkeypatch):
    from stochastic_depth_tf.layers import _layer_drop

    pack_rows = _layer_drop.pack_rows

    def lossy(x, extras):
        packed, unpack = pack_rows(x, extras)
        return packed, lambda rows: (unpack(rows)[0], tuple(None for _ in extras))

    # The check runs each adapted layer through the packing the per-example skipping uses.
    monkeypatch.setattr(_layer_drop, "pack_rows", lossy)
    with pytest.raises(RuntimeError, match="no longer computes"):
        _apply(_gemma())


@pytest.mark.parametrize("name", _cases())
def test_two_gates_gate_each_sub_layer_and_keep_the_inference(name):
    original = BACKBONES[name]()
    inputs = _inputs(original)
    # Each adapted layer is checked against its class's call when it is given its gates.
    model = _apply(original, gates_per_layer=2)
    gates = model.stochastic_depth_layers
    assert len(gates) == 8
    assert [gate.name.rsplit("_", 1)[-1] for gate in gates] == ["0", "1"] * 4
    assert [gate.survival_probability for gate in gates] == [0.875, 0.875, 0.75, 0.75, 0.625, 0.625, 0.5, 0.5]
    expected = _sequence(original(inputs))
    np.testing.assert_array_equal(_sequence(model(inputs)), expected)
    assert np.max(np.abs(_sequence(model(inputs, training=True)) - expected)) > 1e-4


@pytest.mark.parametrize("mode", ["batch", "subset"])
def test_two_gates_skipping_equals_the_merge_form(mode):
    original = _gemma()
    inputs = _inputs(original, batch=8)
    settings = {"mode": mode, "distribution": "uniform", "gates_per_layer": 2}
    skipping, merging = (_apply(original, skip_compute=skip, **settings) for skip in (True, False))
    _assert_same_outputs_and_gradients(
        _layers_outputs_and_gradients(skipping, inputs, skipping.stochastic_depth_layers),
        _layers_outputs_and_gradients(merging, inputs, merging.stochastic_depth_layers),
    )


@pytest.mark.one_backend
def test_one_gate_asked_for_is_layer_drop_and_stored():
    model = _apply(_bert(), gates_per_layer=1)
    assert [gate.name for gate in model.stochastic_depth_layers] == [
        f"{layer.name}_layer_drop" for layer in model.transformer_layers
    ]
    assert model.get_config()["stochastic_depth"]["gates_per_layer"] == 1
    # Left out, it is not stored: the config reads as before the setting existed.
    assert "gates_per_layer" not in _apply(_bert()).get_config()["stochastic_depth"]


@pytest.mark.one_backend
@pytest.mark.parametrize("value", [0, 3, "2", True, 2.0])
def test_gates_per_layer_refuses_bad_values(value):
    with pytest.raises(ValueError, match="Invalid value received for argument `gates_per_layer`. Expected None"):
        _apply(_bert(), gates_per_layer=value)


def test_two_gates_round_trip_a_preset(tmp_path):
    model = _apply(_gemma(), gates_per_layer=2, mode="batch")
    model.save_to_preset(str(tmp_path))
    loaded = keras_hub.models.Backbone.from_preset(str(tmp_path))
    assert loaded.stochastic_depth_settings.gates_per_layer == 2
    assert [gate.name for gate in loaded.stochastic_depth_layers] == [
        gate.name for gate in model.stochastic_depth_layers
    ]
    assert len(loaded.stochastic_depth_layers) == 8
    inputs = _inputs(model)
    np.testing.assert_array_equal(_sequence(loaded(inputs)), _sequence(model(inputs)))


def _logits(causal_lm, inputs):
    return np.asarray(keras.ops.convert_to_numpy(causal_lm(inputs)))


@pytest.mark.parametrize("name", _cases(["gemma", "llama", "gpt2"]))
def test_token_embedding_is_the_backbones_own_after_apply_and_strip(name):
    original = BACKBONES[name]()
    inputs = _inputs(original)
    # A causal LM's logits go through its backbone's token embedding (tied, or its reverse).
    expected = _logits(_causal_lm(name, original), inputs)
    model = _apply(original)
    for backbone in (model, sdt.strip_stochastic_depth(model)):
        embedding = backbone.token_embedding
        assert embedding is not None and embedding is not original.token_embedding
        assert any(layer is embedding for layer in backbone.layers)
        np.testing.assert_array_equal(_logits(_causal_lm(name, backbone), inputs), expected)


# Progressive Layer Dropping (Zhang and He, NeurIPS 2020): the time schedule, its depth rule, the callback.


@pytest.mark.one_backend
def test_progressive_layer_drop_time_schedule():
    from stochastic_depth_tf import schedules

    assert schedules.progressive_layer_drop(0) == 1.0
    np.testing.assert_allclose(schedules.progressive_layer_drop(1000), 0.5 + 0.5 / np.e, rtol=1e-12)
    np.testing.assert_allclose(schedules.progressive_layer_drop(10, 0.8, gamma=0.1), 0.8 + 0.2 / np.e, rtol=1e-12)
    assert schedules.progressive_layer_drop(10**6) == 0.5


@pytest.mark.one_backend
@pytest.mark.parametrize("t", [0, 10, 700, 10**5])
def test_progressive_layer_drop_depth_rule_is_each_layers_exponential_ramp(t):
    from stochastic_depth_tf import schedules

    theta = schedules.progressive_layer_drop(t)
    depth = schedules.progressive_layer_drop_depth(6, t)
    np.testing.assert_allclose(depth, [1 - (l / 6) * (1 - theta) for l in range(1, 7)], rtol=1e-12)
    # What the callback's exponential ramp gives a model with linear decay to theta_bar.
    ramps = [schedules.exponential_ramp(t, target) for target in schedules.linear_decay(6, 0.5)]
    np.testing.assert_allclose(depth, ramps, rtol=1e-12)


@pytest.mark.one_backend
@pytest.mark.parametrize("argument, value, error", [("t", -1, ValueError), ("gamma", float("inf"), ValueError)])
def test_progressive_layer_drop_refuses_bad_arguments(argument, value, error):
    from stochastic_depth_tf import schedules

    with pytest.raises(error, match=f"Invalid value received for argument `{argument}`"):
        schedules.progressive_layer_drop(**{"t": 0, argument: value})


@pytest.mark.one_backend
def test_progressive_layer_drop_refuses_a_bool_time():
    from stochastic_depth_tf import schedules

    with pytest.raises(TypeError, match="Invalid type received for argument `t`"):
        schedules.progressive_layer_drop(True)


def test_scheduler_runs_progressive_layer_drop_over_steps():
    from stochastic_depth_tf import schedules

    inputs = keras.Input((8,))
    x = inputs
    for probability in schedules.linear_decay(4, 0.5):
        x = sdt.StochasticDepth(probability, mode="batch", inverted=True)([x, keras.layers.Dense(8)(x)])
    model = keras.Model(inputs, keras.layers.Dense(1)(x))
    model.compile("sgd", "mse")
    scheduler = sdt.callbacks.SurvivalProbabilityScheduler(unit="step", ramp="exponential", gamma=0.3)
    model.fit(np.ones((8, 8)), np.zeros((8, 1)), batch_size=2, epochs=1, verbose=0, callbacks=[scheduler])
    # Four steps: the last was given t = 3, PLD's depth rule at step 3.
    expected = schedules.progressive_layer_drop_depth(4, 3, final_survival_probability=0.5, gamma=0.3)
    np.testing.assert_allclose(list(scheduler.current_values().values()), expected, rtol=1e-6)


@pytest.mark.slow
def test_scheduler_runs_progressive_layer_drop_on_a_causal_lm():
    from stochastic_depth_tf import schedules

    model = _apply(_gemma(), mode="batch")  # linear decay to theta_bar = 0.5
    causal_lm = _causal_lm("gemma", model)
    inputs = _inputs(model, batch=8)
    labels, weights = _next_tokens(inputs)
    scheduler = sdt.callbacks.SurvivalProbabilityScheduler(unit="step", ramp="exponential", gamma=0.3)
    causal_lm.fit(inputs, labels, sample_weight=weights, batch_size=2, epochs=1, verbose=0, callbacks=[scheduler])
    # Four steps: the last was given t = 3, PLD's depth rule at step 3.
    expected = schedules.progressive_layer_drop_depth(4, 3, final_survival_probability=0.5, gamma=0.3)
    np.testing.assert_allclose(_survival(model), expected, rtol=1e-6)


@pytest.mark.one_backend
def test_scheduler_refuses_a_bad_ramp_and_gamma():
    with pytest.raises(ValueError, match="Invalid value received for argument `ramp`"):
        sdt.callbacks.SurvivalProbabilityScheduler(duration=3, ramp="cosine")
    with pytest.raises(ValueError, match="Invalid value received for argument `gamma`"):
        sdt.callbacks.SurvivalProbabilityScheduler(ramp="exponential", gamma=-0.1)


@pytest.mark.parametrize("mode", ["batch", "subset"])
def test_mixed_precision_keeps_the_inference_and_trains(mode):
    keras.config.set_dtype_policy("mixed_bfloat16")
    original = _gemma()
    model = _apply(original, mode=mode)
    inputs = _inputs(original, batch=8)
    np.testing.assert_array_equal(_sequence(model(inputs)), _sequence(original(inputs)))
    trained = model(inputs, training=True)
    assert keras.backend.standardize_dtype(trained.dtype) == "bfloat16"
    assert np.all(np.isfinite(_sequence(trained)))
