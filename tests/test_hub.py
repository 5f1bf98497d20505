"""Tests of stochastic_depth_tf.hub: KerasHub backbones with stochastic depth, class kept, through either door.

Every backbone is built small from constructor arguments and saved to a
temporary preset directory: nothing is downloaded.
"""

import numpy as np
import pytest
from packaging.version import Version

keras_hub = pytest.importorskip("keras_hub")

import keras  # noqa: E402

from stochastic_depth_tf import hub  # noqa: E402
from stochastic_depth_tf.layers import stochastic_depth_layers  # noqa: E402
from stochastic_depth_tf.layers.stochastic_depth import StochasticDepth  # noqa: E402
from tests.layer_checks import outputs_and_gradients  # noqa: E402


@pytest.fixture(autouse=True)
def _seeded_weights():
    """Every test builds its backbones from the same initial weights.

    Unseeded, a small backbone now and then draws a residual branch whose
    last ReLU is zero on the test image (HGNetV2's did in a CI run), so that
    dropping it changes nothing and a statistical test sees no gate at all.
    """
    keras.utils.set_random_seed(0)


def _resnet(**overrides):
    config = dict(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 16],
        stackwise_num_blocks=[2, 2],
        stackwise_num_strides=[1, 2],
        block_type="basic_block",
        use_pre_activation=False,
        image_shape=(16, 16, 3),
    )
    config.update(overrides)
    return keras_hub.models.ResNetBackbone(**config)


def _resnet_v2():
    return _resnet(
        stackwise_num_filters=[64, 8],
        block_type="bottleneck_block",
        use_pre_activation=True,
    )


def _resnet_vd():
    # ResNet-vd: the projection shortcut pools, then convolves (KerasHub builds it without pre-activation only).
    return _resnet(block_type="bottleneck_block_vd")


def _xception():
    return keras_hub.models.XceptionBackbone(
        stackwise_conv_filters=[[8, 8], [16, 16], [16, 16], [16]],
        stackwise_pooling=[True, True, False, False],
        image_shape=(16, 16, 3),
    )


def _cspnet(block_type="dark_block", stage_type="csp"):
    # CSPDarkNet-53's ratios, which the csp and cs3 stages need to add up.
    return keras_hub.models.CSPNetBackbone(
        stem_filters=8,
        stem_kernel_size=3,
        stem_strides=1,
        stackwise_depth=[1, 2],
        stackwise_strides=[1, 2],
        stackwise_num_filters=[8, 16],
        block_type=block_type,
        stage_type=stage_type,
        bottle_ratio=[0.5],
        block_ratio=[1.0],
        expand_ratio=[2.0],
        image_shape=(16, 16, 3),
    )


def _mobilenet():
    # A residual first block (depthwise_residual) and one residual block per
    # stage (the second: stride 1, as many filters out as in).
    return keras_hub.models.MobileNetBackbone(
        stackwise_expansion=[[16, 24], [32, 32]],
        stackwise_num_blocks=[2, 2],
        stackwise_num_filters=[[8, 8], [16, 16]],
        stackwise_kernel_size=[[3, 3], [5, 5]],
        stackwise_num_strides=[[2, 1], [2, 1]],
        stackwise_se_ratio=[[None, None], [0.25, 0.25]],
        stackwise_activation=[["relu", "relu"], ["hard_swish", "hard_swish"]],
        stackwise_padding=[[1, 1], [2, 2]],
        output_num_filters=32,
        depthwise_filters=8,
        depthwise_stride=1,
        depthwise_residual=True,
        last_layer_filter=32,
        squeeze_and_excite=0.5,
        input_num_filters=8,
        image_shape=(16, 16, 3),
    )


def _efficientnet(block_types=("v1", "v1", "v1")):
    # Residual blocks 1a, 2b, 3a, 3b (stride 1, filters in = out) of five; its
    # drop-connect rates are 0.2 * b / 5 for block b = 0 .. 4. KerasHub's
    # get_config leaves num_features out, so it keeps its default.
    return keras_hub.models.EfficientNetBackbone(
        stackwise_width_coefficients=[1.0] * 3,
        stackwise_depth_coefficients=[1.0] * 3,
        stackwise_kernel_sizes=[3, 3, 3],
        stackwise_num_repeats=[1, 2, 2],
        stackwise_input_filters=[8, 8, 16],
        stackwise_output_filters=[8, 16, 16],
        stackwise_expansion_ratios=[1, 4, 4],
        stackwise_squeeze_and_excite_ratios=[0.25] * 3,
        stackwise_strides=[1, 2, 1],
        stackwise_block_types=list(block_types),
        dropout=0.2,
        input_shape=(16, 16, 3),
    )


def _efficientnet_v2():
    return _efficientnet(("fused", "fused", "unfused"))


def _mobilenet_v5():
    # Residual blocks: the second EdgeResidual, the second
    # UniversalInvertedResidual and the MobileAttention (stride 1, filters
    # in = out), with drop path rates 0.2 * b / 5 for block b = 0 .. 4.
    return keras_hub.models.MobileNetV5Backbone(
        stackwise_block_types=[["er", "er"], ["uir", "uir", "mqa"]],
        stackwise_num_blocks=[2, 3],
        stackwise_num_filters=[[8, 8], [16, 16, 16]],
        stackwise_strides=[[2, 1], [2, 1, 1]],
        stackwise_act_layers=[["relu", "relu"], ["relu", "relu", "relu"]],
        stackwise_exp_ratios=[[2.0, 2.0], [2.0, 2.0, 0.0]],
        stackwise_se_ratios=[[0.0, 0.0], [0.0, 0.0, 0.0]],
        stackwise_dw_kernel_sizes=[[0, 0], [3, 3, 0]],
        stackwise_dw_start_kernel_sizes=[[0, 0], [0, 3, 0]],
        stackwise_dw_end_kernel_sizes=[[0, 0], [0, 0, 0]],
        stackwise_exp_kernel_sizes=[[3, 3], [0, 0, 0]],
        stackwise_pw_kernel_sizes=[[1, 1], [0, 0, 0]],
        stackwise_num_heads=[[0, 0], [0, 0, 2]],
        stackwise_key_dims=[[0, 0], [0, 0, 8]],
        stackwise_value_dims=[[0, 0], [0, 0, 8]],
        stackwise_kv_strides=[[0, 0], [0, 0, 1]],
        stackwise_use_cpe=[[False, False], [False, False, False]],
        use_msfa=False,
        stem_size=8,
        num_features=16,
        drop_path_rate=0.2,
        image_shape=(16, 16, 3),
    )


def _hgnetv2():
    # The second block of each stage is residual.
    return keras_hub.models.HGNetV2Backbone(
        depths=[1, 2],
        embedding_size=8,
        hidden_sizes=[8, 16],
        stem_channels=[3, 8, 8],
        hidden_act="relu",
        use_learnable_affine_block=False,
        stackwise_stage_filters=[(8, 8, 8, 2, 1, 3), (8, 8, 16, 2, 1, 3)],
        apply_downsample=[False, True],
        use_lightweight_conv_block=[False, False],
        image_shape=(16, 16, 3),
    )


def _hgnetv2_classifier(backbone, num_classes):
    # Its classifier requires a preprocessor; one without an image converter passes images through.
    return keras_hub.models.HGNetV2ImageClassifier(
        backbone=backbone,
        preprocessor=keras_hub.models.HGNetV2ImageClassifierPreprocessor(),
        num_classes=num_classes,
    )


def _vit():
    return keras_hub.models.ViTBackbone(
        image_shape=(16, 16, 3), patch_size=4, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=16
    )


def _deit():
    return keras_hub.models.DeiTBackbone(
        image_shape=(16, 16, 3), patch_size=4, num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=16
    )


def _dinov2():
    # A drop path rate of its own, which the gates replace (and which would
    # change every training output if it were still called).
    return keras_hub.models.DINOV2Backbone(
        patch_size=4,
        num_layers=2,
        hidden_dim=8,
        num_heads=2,
        intermediate_dim=16,
        drop_path_rate=0.2,
        image_shape=(16, 16, 3),
        position_embedding_shape=(16, 16, 3),
    )


def _dinov3():
    return keras_hub.models.DINOV3Backbone(
        patch_size=4,
        num_layers=2,
        hidden_dim=8,
        num_heads=2,
        intermediate_dim=16,
        drop_path_rate=0.2,
        num_register_tokens=1,
        image_shape=(16, 16, 3),
    )


def _swin():
    # One stage: a windowed and a shifted-window block on 4 x 4 patches
    # (window 2). Its own drop path rates are linspace(0, 0.2, 2).
    return keras_hub.models.SwinTransformerBackbone(
        image_shape=(16, 16, 3),
        embed_dim=8,
        depths=[2],
        num_heads=[2],
        window_size=2,
        mlp_ratio=2.0,
        drop_path=0.2,
    )


def _vitdet():
    # Block 1 windowed (2 x 2 windows of the 4 x 4 patches), block 2 global.
    return keras_hub.models.ViTDetBackbone(
        hidden_size=8,
        num_layers=2,
        intermediate_dim=16,
        num_heads=2,
        global_attention_layer_indices=[1],
        image_shape=(16, 16, 3),
        patch_size=4,
        num_output_channels=8,
        window_size=2,
    )


def _classifier(backbone, num_classes):
    """A classifier on the class token or pooled features, for backbones KerasHub has no image classifier for."""
    images = keras.Input(backbone.image_shape)
    features = backbone(images)
    if len(features.shape) == 3:
        features = features[:, 0]
    else:
        features = keras.layers.GlobalAveragePooling2D()(features)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(features)
    return keras.Model(images, outputs)


def _mit():
    return keras_hub.models.MiTBackbone(
        layerwise_depths=[1, 2],
        num_layers=2,
        layerwise_num_heads=[1, 2],
        layerwise_sr_ratios=[2, 1],
        max_drop_path_rate=0.2,
        layerwise_patch_sizes=[3, 3],
        layerwise_strides=[2, 2],
        image_shape=(16, 16, 3),
        hidden_dims=[8, 16],
    )


BACKBONES = {
    "resnet_v1": (_resnet, keras_hub.models.ResNetImageClassifier, 4),
    "resnet_v2": (_resnet_v2, keras_hub.models.ResNetImageClassifier, 4),
    "resnet_vd": (_resnet_vd, keras_hub.models.ResNetImageClassifier, 4),
    "xception": (_xception, keras_hub.models.XceptionImageClassifier, 2),
    "cspnet": (_cspnet, keras_hub.models.CSPNetImageClassifier, 3),
    "mobilenet": (_mobilenet, keras_hub.models.MobileNetImageClassifier, 3),
    "mobilenet_v5": (_mobilenet_v5, keras_hub.models.MobileNetV5ImageClassifier, 3),
    "hgnetv2": (_hgnetv2, _hgnetv2_classifier, 2),
    "efficientnet": (_efficientnet, keras_hub.models.EfficientNetImageClassifier, 4),
    "efficientnet_v2": (_efficientnet_v2, keras_hub.models.EfficientNetImageClassifier, 4),
    "vit": (_vit, keras_hub.models.ViTImageClassifier, 4),
    "deit": (_deit, keras_hub.models.DeiTImageClassifier, 4),
    "dinov2": (_dinov2, _classifier, 4),
    "dinov3": (_dinov3, _classifier, 4),
    "vitdet": (_vitdet, _classifier, 4),
    "swin": (_swin, keras_hub.models.SwinTransformerImageClassifier, 4),
    "mit": (_mit, keras_hub.models.MiTImageClassifier, 6),
}


def _images(batch=4, seed=0):
    return np.random.default_rng(seed).uniform(0.0, 1.0, size=(batch, 16, 16, 3)).astype("float32")


def _array(outputs):
    """A model's output as one array; a dict of feature maps (HGNetV2's) flattened per example."""
    if isinstance(outputs, dict):
        parts = [keras.ops.convert_to_numpy(outputs[key]) for key in sorted(outputs)]
        return np.concatenate([part.reshape(part.shape[0], -1) for part in parts], axis=1)
    return keras.ops.convert_to_numpy(outputs)


def _infer(model, images):
    return _array(model(images, training=False))


def _survival(model):
    return [
        float(keras.ops.convert_to_numpy(gate.survival_probability_variable)) for gate in model.stochastic_depth_layers
    ]


# One backbone per mechanism runs the generic tests under every backend:
# graph surgery (ResNet), an encoder-block adapter (ViT) and an adapter that
# replaces a private drop path (DINOv2). The others run them with the slow
# tests, which the TensorFlow pass of tests/all_backends.py runs and the JAX
# and PyTorch passes skip: together they take minutes there (under JAX,
# 358 s on two workers for this module), and what differs between backends
# is the gate, which the three cover.
EVERY_BACKEND = ("resnet_v1", "vit", "dinov2")


def _cases():
    return [name if name in EVERY_BACKEND else pytest.param(name, marks=pytest.mark.slow) for name in sorted(BACKBONES)]


@pytest.fixture(params=_cases())
def case(request):
    return BACKBONES[request.param]


@pytest.fixture(params=_cases())
def training_case(request):
    return BACKBONES[request.param]


@pytest.mark.one_backend
def test_class_is_kept_and_weights_copied(case):
    build, _, num_gates = case
    original = build()
    model = hub.apply_stochastic_depth(original, final_survival_probability=0.8, seed=0)
    assert isinstance(model, type(original))
    assert type(model).__mro__[1] is type(original)
    assert type(model) is hub.stochastic_depth_class(type(original))
    assert model.name == original.name
    assert len(model.stochastic_depth_layers) == num_gates
    assert all(isinstance(gate, StochasticDepth) for gate in model.stochastic_depth_layers)
    # What callbacks and strip find: each gate once, in block order.
    assert stochastic_depth_layers(model) == list(model.stochastic_depth_layers)
    copied = sorted(model.weights, key=lambda weight: weight.path)
    weights = sorted(original.weights, key=lambda weight: weight.path)
    if [weight.path for weight in copied] != [weight.path for weight in weights]:
        copied, weights = model.weights, original.weights  # MiT: new automatic names
    assert len(copied) == len(weights)
    for one, other in zip(copied, weights):
        assert one is not other
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(one), keras.ops.convert_to_numpy(other))


def test_inverted_inference_is_the_original(case):
    build, _, _ = case
    original = build()
    model = hub.apply_stochastic_depth(original, final_survival_probability=0.5, seed=0)
    images = _images()
    np.testing.assert_allclose(_infer(model, images), _infer(original, images), rtol=0, atol=1e-6)


@pytest.mark.one_backend
def test_linear_schedule_per_block():
    model = hub.apply_stochastic_depth(_vit(), final_survival_probability=0.5)
    # two blocks, two gates each: p_l = 1 - (l / 2) * 0.5
    np.testing.assert_allclose(_survival(model), [0.75, 0.75, 0.5, 0.5], rtol=1e-6)


@pytest.mark.slow  # one model's structure: backend-neutral, run in the TensorFlow pass
def test_mit_keeps_its_own_rates_with_none():
    model = hub.apply_stochastic_depth(_mit(), final_survival_probability=None)
    # MiT's rates are linspace(0, 0.2, 3) per block, both adds of a block alike.
    np.testing.assert_allclose(_survival(model), [1.0, 1.0, 0.9, 0.9, 0.8, 0.8], rtol=1e-6)


@pytest.mark.one_backend
def test_dino_keeps_its_own_rates_with_none():
    # DINOv2: one rate for every block; DINOv3: linspace(0, rate, L).
    np.testing.assert_allclose(
        _survival(hub.apply_stochastic_depth(_dinov2(), final_survival_probability=None)), [0.8] * 4, rtol=1e-6
    )
    np.testing.assert_allclose(
        _survival(hub.apply_stochastic_depth(_dinov3(), final_survival_probability=None)),
        [1.0, 1.0, 0.8, 0.8],
        rtol=1e-6,
    )


@pytest.mark.slow  # one model's structure: backend-neutral, run in the TensorFlow pass
def test_depth_anything_takes_a_dinov2_with_stochastic_depth():
    config = dict(
        reassemble_factors=[2, 1],
        neck_hidden_dims=[4, 8],
        fusion_hidden_dim=8,
        head_hidden_dim=4,
        head_in_index=-1,
        feature_keys=["stage1", "stage2"],
    )
    original = _dinov2()
    model = hub.apply_stochastic_depth(original, seed=0)
    depth = keras_hub.models.DepthAnythingBackbone(image_encoder=model, **config)
    assert depth.image_encoder is model
    plain = keras_hub.models.DepthAnythingBackbone(image_encoder=original, **config)
    for one, other in zip(depth.weights, plain.weights):
        one.assign(keras.ops.convert_to_numpy(other))
    images = {"images": _images()}
    np.testing.assert_allclose(_infer(depth, images), _infer(plain, images), rtol=0, atol=1e-6)


@pytest.mark.slow  # one model's structure: backend-neutral, run in the TensorFlow pass
@pytest.mark.parametrize("block_type", ["bottleneck_block", "edge_block"])
def test_cspnet_block_types(block_type):
    original = _cspnet(block_type, stage_type="cs3")
    model = hub.apply_stochastic_depth(original, final_survival_probability=0.5, seed=0)
    assert len(model.stochastic_depth_layers) == 3  # one per block: 1 + 2
    images = _images()
    np.testing.assert_allclose(_infer(model, images), _infer(original, images), rtol=0, atol=1e-6)


@pytest.mark.slow  # one model's structure: backend-neutral, run in the TensorFlow pass
@pytest.mark.parametrize("name", ["efficientnet", "efficientnet_v2"])
def test_efficientnet_keeps_its_drop_connect_rates_with_none(name):
    model = hub.apply_stochastic_depth(BACKBONES[name][0](), final_survival_probability=None)
    # Residual blocks 0, 2, 3, 4 of five: p = 1 - 0.2 * b / 5.
    np.testing.assert_allclose(_survival(model), [1.0, 0.92, 0.88, 0.84], rtol=1e-6)


@pytest.mark.slow  # one model's structure: backend-neutral, run in the TensorFlow pass
def test_efficientnet_mixing_v1_and_v2_blocks_is_refused():
    with pytest.raises(ValueError, match="Invalid value received for argument `backbone`.*stackwise_block_types"):
        hub.apply_stochastic_depth(_efficientnet(("v1", "fused", "unfused")))


@pytest.mark.slow  # one model's structure: backend-neutral, run in the TensorFlow pass
def test_backbone_its_config_does_not_describe_is_refused():
    backbone = keras_hub.models.EfficientNetBackbone(**{**_efficientnet().get_config(), "num_features": 32})
    with pytest.raises(RuntimeError, match="differ in number or shape: the backbone's get_config does not describe"):
        hub.apply_stochastic_depth(backbone)


def _sam(image_encoder):
    prompt_encoder = keras_hub.layers.SAMPromptEncoder(
        hidden_size=8, image_embedding_size=(4, 4), input_image_size=(16, 16), mask_in_channels=4
    )
    mask_decoder = keras_hub.layers.SAMMaskDecoder(
        num_layers=1,
        hidden_size=8,
        intermediate_dim=16,
        num_heads=2,
        embedding_dim=8,
        num_multimask_outputs=3,
        iou_head_depth=2,
        iou_head_hidden_dim=8,
    )
    return keras_hub.models.SAMBackbone(
        image_encoder=image_encoder, prompt_encoder=prompt_encoder, mask_decoder=mask_decoder
    )


@pytest.mark.slow  # one model's structure: backend-neutral, run in the TensorFlow pass
def test_sam_takes_a_vitdet_with_stochastic_depth():
    original = _vitdet()
    model = hub.apply_stochastic_depth(original, seed=0)
    with_gates, plain = _sam(model), _sam(original)
    assert with_gates.image_encoder is model
    for one, other in zip(with_gates.weights, plain.weights):
        one.assign(keras.ops.convert_to_numpy(other))
    inputs = {
        "images": _images(2),
        "points": np.ones((2, 1, 2), dtype="float32"),
        "labels": np.ones((2, 1), dtype="float32"),
        "boxes": np.ones((2, 1, 2, 2), dtype="float32"),
        "masks": np.zeros((2, 0, 16, 16, 1), dtype="float32"),
    }
    expected, received = plain(inputs, training=False), with_gates(inputs, training=False)
    for key in expected:
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(received[key]), keras.ops.convert_to_numpy(expected[key]), rtol=0, atol=1e-6
        )


@pytest.mark.one_backend
def test_retinanet_takes_a_resnet_with_stochastic_depth():
    # The pyramid outputs of a graph-surgery backbone are its new graph's.
    def retinanet(image_encoder):
        return keras_hub.models.RetinaNetBackbone(
            image_encoder=image_encoder, min_level=2, max_level=3, use_p5=False, image_shape=(16, 16, 3)
        )

    original = _resnet()
    model = hub.apply_stochastic_depth(original, seed=0)
    with_gates, plain = retinanet(model), retinanet(original)
    for one, other in zip(with_gates.weights, plain.weights):
        one.assign(keras.ops.convert_to_numpy(other))
    images = _images()
    expected, received = plain(images, training=False), with_gates(images, training=False)
    for key in expected:
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(received[key]), keras.ops.convert_to_numpy(expected[key]), rtol=0, atol=1e-6
        )


@pytest.mark.one_backend
def test_sam_backbone_is_refused_with_its_reason():
    with pytest.raises(ValueError, match="SAMBackbone.*image_encoder"):
        hub.apply_stochastic_depth(_sam(_vitdet()))


@pytest.mark.slow  # one model's structure: backend-neutral, run in the TensorFlow pass
def test_swin_keeps_its_own_rates_with_none():
    model = hub.apply_stochastic_depth(_swin(), final_survival_probability=None)
    np.testing.assert_allclose(_survival(model), [1.0, 1.0, 0.8, 0.8], rtol=1e-6)


@pytest.mark.slow  # one model's structure: backend-neutral, run in the TensorFlow pass
def test_mobilenet_v5_keeps_its_own_rates_with_none():
    model = hub.apply_stochastic_depth(_mobilenet_v5(), final_survival_probability=None)
    np.testing.assert_allclose(_survival(model), [0.96, 0.88, 0.84], rtol=1e-6)


@pytest.mark.one_backend
def test_none_is_refused_without_private_rates():
    with pytest.raises(ValueError, match="Invalid value received for argument `final_survival_probability`"):
        hub.apply_stochastic_depth(_resnet(), final_survival_probability=None)


def _values(model):
    return [np.array(keras.ops.convert_to_numpy(weight)) for weight in model.weights]


def test_task_model_trains_one_step(training_case):
    build, task, _ = training_case
    original = build()
    original_before = _values(original)
    model = hub.apply_stochastic_depth(original, seed=0)
    model_before = _values(model)
    classifier = task(backbone=model, num_classes=3)
    classifier.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    history = classifier.fit(_images(8), np.arange(8) % 3, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(after, before) for after, before in zip(_values(model), model_before))
    # The original is a separate model: training the copy left it alone.
    for after, before in zip(_values(original), original_before):
        np.testing.assert_array_equal(after, before)


def test_preset_round_trip(case, tmp_path):
    build, _, _ = case
    model = hub.apply_stochastic_depth(build(), final_survival_probability=0.7, mode="batch", inverted=False, seed=3)
    model.stochastic_depth_layers[-1].survival_probability_variable.assign(0.6)
    model.save_to_preset(str(tmp_path))
    loaded = keras_hub.models.Backbone.from_preset(str(tmp_path))
    assert type(loaded) is type(model)
    assert loaded.stochastic_depth_settings == model.stochastic_depth_settings
    # The gates' current values travel with the weights.
    np.testing.assert_allclose(_survival(loaded), _survival(model), rtol=1e-6)
    images = _images()
    np.testing.assert_allclose(_infer(loaded, images), _infer(model, images), rtol=0, atol=1e-6)


def test_preset_loads_through_the_base_class_and_the_subclass(tmp_path):
    model = hub.apply_stochastic_depth(_vit(), seed=0)
    model.save_to_preset(str(tmp_path))
    for loader in (keras_hub.models.ViTBackbone, type(model)):
        assert type(loader.from_preset(str(tmp_path))) is type(model)


def test_keras_file_of_task_round_trip(tmp_path):
    model = hub.apply_stochastic_depth(_vit(), seed=0)
    classifier = keras_hub.models.ViTImageClassifier(backbone=model, num_classes=3)
    images = _images()
    expected = keras.ops.convert_to_numpy(classifier(images, training=False))
    path = str(tmp_path / "classifier.keras")
    classifier.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.backbone) is type(model)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(images, training=False)), expected, atol=1e-6)


def test_strip_gives_the_original_class_and_function(case):
    build, _, _ = case
    original = build()
    model = hub.apply_stochastic_depth(original, final_survival_probability=0.5, seed=0)
    plain = hub.strip_stochastic_depth(model)
    assert type(plain) is type(original)
    images = _images()
    np.testing.assert_allclose(_infer(plain, images), _infer(original, images), rtol=0, atol=1e-6)
    assert plain.get_config() == original.get_config()


@pytest.mark.parametrize("name", ["resnet_v1", "vit"])
def test_top_level_strip_gives_the_original_class(name):
    import stochastic_depth_tf as sdt

    original = BACKBONES[name][0]()
    model = hub.apply_stochastic_depth(original, final_survival_probability=0.5, seed=0)
    plain = sdt.strip_stochastic_depth(model)
    assert type(plain) is type(original)
    images = _images()
    np.testing.assert_allclose(_infer(plain, images), _infer(original, images), rtol=0, atol=1e-6)


def test_strip_refuses_paper_scaling_below_one():
    model = hub.apply_stochastic_depth(_vit(), final_survival_probability=0.5, inverted=False)
    with pytest.raises(ValueError, match="Invalid value received for argument `backbone`"):
        hub.strip_stochastic_depth(model)


def test_strip_of_paper_scaling_at_one():
    original = _vit()
    model = hub.apply_stochastic_depth(original, final_survival_probability=1.0, inverted=False)
    images = _images()
    np.testing.assert_allclose(_infer(hub.strip_stochastic_depth(model), images), _infer(original, images), atol=1e-6)


def _all_kept_fraction(original, model, batch):
    """Fraction of identical examples whose training output is the plain backbone's.

    With `inverted=False` an example whose every gate kept its branch gets
    `shortcut + residual` everywhere, the plain backbone's output; an example
    with any branch dropped gets another output.
    """
    images = np.repeat(_images(1), batch, axis=0)
    plain = _infer(original, images[:1])
    for layer in model._flatten_layers():
        # Normalization in inference mode, so examples do not see each other.
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
        # MiT's attention has a Dropout(0.1) of its own: off, to see only our gates.
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0
    trained = _array(model(images, training=True))
    axes = tuple(range(1, trained.ndim))
    # Relative to the output's scale: MobileNet's is about 1e-3, and a dropped
    # branch changes it by less than an absolute 1e-4.
    kept = np.max(np.abs(trained - plain), axis=axes) <= 1e-4 * float(np.max(np.abs(plain)))
    return float(np.mean(kept))


@pytest.mark.parametrize("name", _cases())
def test_gates_drop_in_training(name):
    build, _, num_gates = BACKBONES[name]
    original = build()
    model = hub.apply_stochastic_depth(
        original, final_survival_probability=0.8, distribution="uniform", mode="sample", inverted=False, seed=0
    )
    batch = 2000
    fraction = _all_kept_fraction(original, model, batch)
    expected = 0.8**num_gates
    # Binomial(2000, 0.8^G): 5 standard deviations, a false failure below 1e-6.
    bound = 5.0 * np.sqrt(expected * (1.0 - expected) / batch)
    assert abs(fraction - expected) <= bound


def test_unsupported_backbone_is_named():
    backbone = keras_hub.models.VGGBackbone(
        stackwise_num_repeats=[1], stackwise_num_filters=[4], image_shape=(16, 16, 3)
    )
    with pytest.raises(ValueError, match="Invalid value received for argument `backbone`.*VGGBackbone"):
        hub.apply_stochastic_depth(backbone)


def test_not_a_backbone_goes_to_surgery_which_refuses_it():
    # The front door hands any other model to graph surgery, which takes functional models only.
    with pytest.raises(ValueError, match="Invalid value received for argument `model`"):
        hub.apply_stochastic_depth(keras.Sequential([keras.layers.Dense(1)]))
    with pytest.raises(TypeError, match="Invalid type received for argument `model`"):
        hub.apply_stochastic_depth(object())


def test_applying_twice_is_refused():
    model = hub.apply_stochastic_depth(_vit())
    with pytest.raises(ValueError, match="Invalid value received for argument `backbone`"):
        hub.apply_stochastic_depth(model)


def test_strip_of_a_plain_backbone_is_refused():
    with pytest.raises(TypeError, match="Invalid type received for argument `backbone`"):
        hub.strip_stochastic_depth(_vit())


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="Invalid value received for argument `distribution`"):
        hub.apply_stochastic_depth(_vit(), distribution="cosine")
    with pytest.raises(ValueError, match="Invalid value received for argument `seed`"):
        hub.apply_stochastic_depth(_vit(), seed=-1)


def test_changed_block_fails_loudly(monkeypatch):
    from stochastic_depth_tf.hub import _compat

    def changed_call(self, inputs):
        return inputs * 2.0

    # A KerasHub release whose block computes something else than the adapter.
    monkeypatch.setattr(_compat.ViTEncoderBlock, "call", changed_call)
    with pytest.raises(RuntimeError, match="no longer computes"):
        hub.apply_stochastic_depth(_vit())


def test_changed_deit_output_fails_loudly(monkeypatch):
    from keras_hub.src.models.deit.deit_layers import DeiTOutput

    def changed_call(self, hidden_states, input_tensor):
        return self.dense(hidden_states) + 2.0 * input_tensor

    # The adapter makes DeiTOutput's residual add itself: a change there must show.
    monkeypatch.setattr(DeiTOutput, "call", changed_call)
    with pytest.raises(RuntimeError, match="no longer computes"):
        hub.apply_stochastic_depth(_deit())


@pytest.mark.one_backend
@pytest.mark.parametrize("name", ["resnet_v1", "vit"])
def test_scheduler_finds_every_gate_of_a_task_model(name):
    from stochastic_depth_tf.callbacks import SurvivalProbabilityScheduler

    build, task, num_gates = BACKBONES[name]
    model = hub.apply_stochastic_depth(build(), final_survival_probability=0.5, seed=0)
    classifier = task(backbone=model, num_classes=3)
    assert stochastic_depth_layers(classifier) == list(model.stochastic_depth_layers)
    classifier.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    # The ramp's first epoch starts every gate at its initial value, 1.0.
    classifier.fit(
        _images(4),
        np.arange(4) % 3,
        epochs=1,
        verbose=0,
        callbacks=[SurvivalProbabilityScheduler(duration=4)],
    )
    assert len(_survival(model)) == num_gates
    assert all(value == 1.0 for value in _survival(model))


def test_backbone_loads_from_a_task_preset(tmp_path):
    # keras-hub's Task.from_preset looks its task class up by the backbone's
    # exact class, so a whole task goes through a .keras file (tested above);
    # the backbone of a task preset loads as usual.
    model = hub.apply_stochastic_depth(_resnet(), seed=0)
    classifier = keras_hub.models.ResNetImageClassifier(backbone=model, num_classes=3)
    classifier.save_to_preset(str(tmp_path))
    loaded = keras_hub.models.Backbone.from_preset(str(tmp_path))
    assert type(loaded) is type(model)
    images = _images()
    np.testing.assert_allclose(_infer(loaded, images), _infer(model, images), atol=1e-6)


# Per-example compute skipping in the transformer blocks: the same seed gives
# the same kept rows with and without it, so the outputs and gradients agree.
SKIPPING = ("vit", "dinov2", "deit", "dinov3", "swin", "vitdet", "mit")


def _skipping_cases():
    return [name if name in EVERY_BACKEND else pytest.param(name, marks=pytest.mark.slow) for name in SKIPPING]


def _without_dropout(model):
    # A Dropout inside a branch draws other masks on the kept rows alone (MiT's attention has one).
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0
    return model


def _training_outputs_and_gradients(original, jit_compile=False, **settings):
    model = _without_dropout(
        hub.apply_stochastic_depth(original, final_survival_probability=0.5, distribution="uniform", seed=0, **settings)
    )

    def weighted(images):
        # Random weights: the sum of a normalized output has gradients of rounding noise only.
        output = _first_output(model(images, training=True))
        weights = np.random.default_rng(1).normal(size=tuple(output.shape)).astype("float32")
        return keras.ops.multiply(output, weights)

    return outputs_and_gradients(
        weighted,
        [_images(8)],
        variables=_block_variables(model),
        state=model.non_trainable_variables,
        jit_compile=jit_compile,
        calls=2,
    )


def _block_variables(model):
    """The trainable variables of the adapted blocks (some backbones hold others no output reaches)."""
    blocks = {id(gate._block()): gate._block() for gate in model.stochastic_depth_layers}
    return [variable for block in blocks.values() for variable in block.trainable_variables]


def _first_output(outputs):
    return outputs[sorted(outputs)[-1]] if isinstance(outputs, dict) else outputs


def _assert_same_outputs_and_gradients(skipping, merging):
    (outputs, gradients), (expected_outputs, expected_gradients) = skipping, merging
    np.testing.assert_allclose(outputs, expected_outputs, rtol=1e-5, atol=1e-5)
    assert len(gradients) == len(expected_gradients)
    for gradient, expected in zip(gradients, expected_gradients):
        np.testing.assert_allclose(gradient, expected, rtol=1e-4, atol=1e-5 * max(1.0, float(np.max(np.abs(expected)))))


@pytest.mark.parametrize("mode", ["subset", "sample"])
@pytest.mark.parametrize("name", _skipping_cases())
def test_skipping_examples_equals_the_merge(name, mode):
    original = BACKBONES[name][0]()
    _assert_same_outputs_and_gradients(
        _training_outputs_and_gradients(original, mode=mode, skip_compute=True),
        _training_outputs_and_gradients(original, mode=mode, skip_compute=False),
    )


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="XLA through tf.function(jit_compile=True)")
def test_skipping_examples_under_xla_equals_the_merge():
    original = _vit()
    _assert_same_outputs_and_gradients(
        _training_outputs_and_gradients(original, jit_compile=True, mode="subset", skip_compute=True),
        _training_outputs_and_gradients(original, jit_compile=True, mode="subset", skip_compute=False),
    )


@pytest.mark.parametrize(
    "settings, training, skipped",
    [
        ({"mode": "subset"}, True, True),
        ({"mode": "subset"}, False, False),
        ({"mode": "subset", "skip_compute": False}, True, False),
        ({"mode": "batch"}, True, False),
        ({"mode": "subset", "final_survival_probability": 0.95}, True, False),
    ],
)
def test_branches_run_on_kept_examples_in_training_only(monkeypatch, settings, training, skipped):
    from stochastic_depth_tf.hub import _adapter

    rows = []

    def spy(merge, branch, inputs, shortcut, **kwargs):
        def counted(kept):
            rows.append(int(keras.ops.shape(kept)[0]))
            return branch(kept)

        return skip_dropped_examples(merge, counted, inputs, shortcut, **kwargs)

    skip_dropped_examples = _adapter.skip_dropped_examples
    monkeypatch.setattr(_adapter, "skip_dropped_examples", spy)
    settings = {"final_survival_probability": 0.5, "distribution": "uniform", "seed": 0, **settings}
    model = hub.apply_stochastic_depth(_vit(), **settings)
    model(_images(8), training=training)
    # Two gates per block, two blocks; subset mode keeps round(0.5 * 8) rows.
    assert rows == ([4] * 4 if skipped else [])


def test_bad_skip_compute_is_refused():
    with pytest.raises(TypeError, match="Invalid type received for argument `skip_compute`"):
        hub.apply_stochastic_depth(_vit(), skip_compute="yes")


# The front door: `sdt.apply_stochastic_depth` and `sdt.strip_stochastic_depth` take KerasHub backbones.


@pytest.mark.one_backend
def test_hub_apply_is_the_front_door():
    import stochastic_depth_tf as sdt

    assert hub.apply_stochastic_depth is sdt.apply_stochastic_depth


@pytest.mark.one_backend
@pytest.mark.parametrize("name", ["resnet_v1", "vit"])
def test_front_door_keeps_the_backbone_class_with_the_hub_defaults(name):
    import stochastic_depth_tf as sdt

    original = BACKBONES[name][0]()
    model = sdt.apply_stochastic_depth(original, seed=0)
    assert type(model) is hub.stochastic_depth_class(type(original))
    assert model.stochastic_depth_settings == {
        "final_survival_probability": 0.9,
        "distribution": "linear",
        "mode": "sample",
        "inverted": True,
        "seed": 0,
        "skip_compute": True,
    }
    assert type(sdt.strip_stochastic_depth(model)) is type(original)


@pytest.mark.one_backend
def test_front_door_forwards_the_arguments_passed():
    import stochastic_depth_tf as sdt

    model = sdt.apply_stochastic_depth(_resnet(), final_survival_probability=0.5, mode="batch", inverted=False)
    assert model.stochastic_depth_settings["mode"] == "batch"
    assert model.stochastic_depth_settings["inverted"] is False
    np.testing.assert_allclose(_survival(model), [0.875, 0.75, 0.625, 0.5], rtol=1e-6)


def _functional_chain():
    inputs = keras.Input((4,))
    x = inputs
    for _ in range(4):
        x = keras.layers.Add()([x, keras.layers.Dense(4)(x)])
    return keras.Model(inputs, x)


@pytest.mark.one_backend
def test_front_door_gives_a_functional_model_the_same_defaults():
    import stochastic_depth_tf as sdt

    inputs = keras.Input((4,))
    x = keras.layers.Dense(4)(inputs)
    model = sdt.apply_stochastic_depth(keras.Model(inputs, keras.layers.Add()([x, keras.layers.Dense(4)(x)])))
    (gate,) = stochastic_depth_layers(model)
    assert (gate.mode, gate.inverted, gate.survival_probability) == ("sample", True, 0.9)


@pytest.mark.one_backend
def test_front_door_gives_every_kind_one_set_of_defaults():
    import stochastic_depth_tf as sdt

    # Four residual adds each: ResNet's four blocks, and a functional chain of four.
    backbone, functional = (sdt.apply_stochastic_depth(model, seed=0) for model in (_resnet(), _functional_chain()))
    gates = [stochastic_depth_layers(backbone), stochastic_depth_layers(functional)]
    assert [[(gate.mode, gate.inverted, gate.seed) for gate in kind] for kind in gates] == [
        [("sample", True, seed) for seed in range(4)]
    ] * 2
    assert [gate.survival_probability for gate in gates[0]] == [gate.survival_probability for gate in gates[1]]
    np.testing.assert_allclose(_survival(backbone), [0.975, 0.95, 0.925, 0.9], rtol=1e-6)


@pytest.mark.parametrize("name", EVERY_BACKEND)
def test_inference_with_the_defaults_is_the_original_exactly(name):
    import stochastic_depth_tf as sdt

    original = BACKBONES[name][0]()
    model = sdt.apply_stochastic_depth(original, seed=0)
    images = _images()
    np.testing.assert_array_equal(_infer(model, images), _infer(original, images))


@pytest.mark.one_backend
def test_settings_are_one_typed_object_saved_as_a_dict():
    from stochastic_depth_tf._settings import StochasticDepthSettings

    model = hub.apply_stochastic_depth(_resnet(), final_survival_probability=0.7, seed=3)
    assert isinstance(model.stochastic_depth_settings, StochasticDepthSettings)
    saved = model.get_config()[hub.SETTINGS_KEY]
    assert type(saved) is dict
    assert saved == dict(model.stochastic_depth_settings)


@pytest.mark.one_backend
def test_a_config_saved_before_skip_compute_loads_with_it_on():
    model = hub.apply_stochastic_depth(_vit(), final_survival_probability=0.7, seed=3)
    config = model.get_config()
    old = {key: value for key, value in config[hub.SETTINGS_KEY].items() if key != "skip_compute"}
    loaded = type(model).from_config({**config, hub.SETTINGS_KEY: old})
    assert loaded.stochastic_depth_settings == {**old, "skip_compute": True}
    np.testing.assert_allclose(_survival(loaded), _survival(model), rtol=1e-6)


@pytest.mark.one_backend
def test_a_saved_config_with_a_bad_setting_is_refused():
    model = hub.apply_stochastic_depth(_vit(), seed=0)
    config = model.get_config()
    with pytest.raises(ValueError, match="Invalid value received for argument `mode`"):
        type(model).from_config({**config, hub.SETTINGS_KEY: {**config[hub.SETTINGS_KEY], "mode": "row"}})


def _functional():
    inputs = keras.Input((8,))
    x = keras.layers.Dense(8)(inputs)
    return keras.Model(inputs, keras.layers.Add()([x, keras.layers.Dense(8)(x)]))


@pytest.mark.one_backend
@pytest.mark.parametrize(
    "build, model", [(_vit, "a ViTBackbone"), (_resnet, "a ResNetBackbone"), (_functional, "a functional model")]
)
@pytest.mark.parametrize("value", [1, 2])
def test_gates_per_layer_is_refused_for_a_model_without_text_layers(build, model, value):
    import stochastic_depth_tf as sdt

    # Gates per layer are LayerDrop's, for the transformer layers of text backbones (tests/test_hub_text.py).
    with pytest.raises(ValueError, match=f"argument `gates_per_layer`. Expected None \\(left out\\) for {model}"):
        sdt.apply_stochastic_depth(build(), gates_per_layer=value)


@pytest.mark.one_backend
def test_front_door_refuses_keeping_a_backbones_drop_connect():
    import stochastic_depth_tf as sdt

    with pytest.raises(ValueError, match="Invalid value received for argument `replace_drop_connect`"):
        sdt.apply_stochastic_depth(_resnet(), replace_drop_connect=False)


@pytest.mark.one_backend
def test_front_door_refuses_skipping_compute_in_a_functional_model():
    import stochastic_depth_tf as sdt

    inputs = keras.Input((4,))
    x = keras.layers.Dense(4)(inputs)
    model = keras.Model(inputs, keras.layers.Add()([x, keras.layers.Dense(4)(x)]))
    with pytest.raises(ValueError, match="Invalid value received for argument `skip_compute`"):
        sdt.apply_stochastic_depth(model, skip_compute=True)


# The keras-hub version gate: `_compat` imports every private KerasHub module, with the supported range.


def _import_compat_afresh():
    """Runs `stochastic_depth_tf.hub._compat` again as a new module (the loaded one stays in sys.modules)."""
    import importlib.util

    spec = importlib.util.find_spec("stochastic_depth_tf.hub._compat")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.one_backend
def test_the_tested_version_is_supported_and_installed_by_the_install_line():
    from stochastic_depth_tf.hub import _compat

    for version in _compat.TESTED_VERSIONS:
        assert _compat.is_supported(version)
    # The install line takes the newest tested release; the oldest tested is the floor.
    assert f'"keras-hub=={max(_compat.TESTED_VERSIONS, key=Version)}"' in hub.INSTALL
    assert _compat.MINIMUM_VERSION == min(_compat.TESTED_VERSIONS, key=Version)
    assert not _compat.is_supported("0.29.1")
    assert not _compat.is_supported("not a version")


@pytest.mark.one_backend
def test_a_supported_version_imports_without_a_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _import_compat_afresh()


@pytest.mark.one_backend
def test_the_version_falls_back_to_the_distributions(monkeypatch):
    import importlib.metadata

    from stochastic_depth_tf.hub import _compat

    def version(name):
        return {"keras-hub": "0.29.1"}[name]

    monkeypatch.delattr(keras_hub, "__version__")
    monkeypatch.setattr(importlib.metadata, "version", version)
    assert _compat.installed_version() == "0.29.1"


@pytest.mark.one_backend
def test_a_version_outside_the_range_that_works_is_used_with_a_warning(monkeypatch):
    monkeypatch.setattr(keras_hub, "__version__", "0.29.1")
    with pytest.warns(UserWarning, match=r"keras-hub 0\.29\.1 is outside the range .* >=0\.30\.0"):
        _import_compat_afresh()
    # Every adapter's check against its block passes: the backbone is given stochastic depth.
    model = hub.apply_stochastic_depth(_vit(), seed=0)
    assert len(model.stochastic_depth_layers) == 4


@pytest.mark.one_backend
def test_a_version_outside_the_range_whose_block_changed_fails_naming_both(monkeypatch):
    from stochastic_depth_tf.hub import _compat

    def changed_call(self, inputs):
        return inputs * 2.0

    monkeypatch.setattr(keras_hub, "__version__", "0.29.1")
    monkeypatch.setattr(_compat.ViTEncoderBlock, "call", changed_call)
    with pytest.raises(
        RuntimeError, match=r"no longer computes .* installed keras-hub is 0\.29\.1; .* supports keras-hub >=0\.30\.0"
    ):
        hub.apply_stochastic_depth(_vit())


@pytest.mark.one_backend
def test_a_version_outside_the_range_without_a_module_fails_at_import_naming_both(monkeypatch):
    import sys
    import warnings

    monkeypatch.setattr(keras_hub, "__version__", "0.29.1")
    # None in sys.modules makes the import of that module fail, as a release without it would.
    monkeypatch.setitem(sys.modules, "keras_hub.src.models.vit.vit_layers", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the out-of-range warning, tested above
        with pytest.raises(
            ImportError, match=r"cannot import .* installed keras-hub is 0\.29\.1; .* supports keras-hub >=0\.30\.0"
        ):
            _import_compat_afresh()
