"""The benchmark scripts' data and contenders (their timings are not tested)."""

import numpy as np
import pytest

import stochastic_depth_tf as sdt
from benchmarks import step_time

# TensorFlow only: the benchmarks' graph-mode, XLA and SavedModel contenders.
pytestmark = pytest.mark.tensorflow_only


def test_digits_batch_is_the_demo_data():
    x, y = step_time.batch_of("digits", 64)
    assert x.shape == (64, 12, 12, 1) and x.dtype == np.float32
    assert y.shape == (64,) and set(np.unique(y)) <= set(range(10))


def test_cifar_shaped_batch_is_random_32x32x3():
    x, y = step_time.batch_of("cifar-shaped", 8)
    assert x.shape == (8, 32, 32, 3) and y.shape == (8,)


def test_digits_batch_larger_than_the_training_split_is_a_clear_error():
    with pytest.raises(ValueError, match="Invalid value received for argument `batch`. Expected at most 1257"):
        step_time.batch_of("digits", 5000)


def test_contenders_are_built_for_the_input_shape():
    builders = step_time.contenders(8, (12, 12, 1))
    for name in ("add", "merge_batch", "block", "keras_dropout"):
        model = builders[name]()
        assert model.input_shape == (None, 12, 12, 1)
        assert model.output_shape == (None, 10)


def test_table_header_names_the_device_tensorflow_chose():
    table = step_time.markdown([], "python -m benchmarks.step_time", "settings")
    assert "- device: " in table
    assert step_time.device_description() in table
    import tensorflow as tf

    accelerators = tf.config.list_logical_devices("GPU") + tf.config.list_logical_devices("TPU")
    assert step_time.device_description().startswith(accelerators[0].name if accelerators else "CPU")


def test_efficientnet_contenders_share_the_survival_probabilities():
    # A --quick run traces four EfficientNets (minutes on 2 cores), so only the builders are tested.
    from benchmarks import efficientnet_step_time

    builders = efficientnet_step_time.contenders(32, "linear")
    expected = sdt.models.efficientnet_survival_probabilities("b0", 0.5, "linear")
    keras_model = builders["keras"]()
    assert [1.0 - l.rate for l in keras_model.layers if l.name.endswith("_drop")] == pytest.approx(expected)
    for name in ("add", "merge_sample", "block_batch"):
        model = builders[name]()
        assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 10)
        layers = [l for l in model.layers if isinstance(l, (sdt.StochasticDepth, sdt.StochasticDepthBlock))]
        assert [l.survival_probability for l in layers] == ([] if name == "add" else pytest.approx(expected))
    assert efficientnet_step_time.expected_dropped_blocks("linear") == pytest.approx(2.5)


def test_digits_mode_trains_with_the_recipes_optimizer(monkeypatch):
    import keras

    import stochastic_depth_tf as sdt

    compiled = []
    monkeypatch.setattr(step_time, "contenders", lambda depth, shape: {"add": lambda: step_time.plain_network(depth, shape)})
    monkeypatch.setattr(keras.Model, "compile", lambda self, optimizer, **kwargs: compiled.append(optimizer))
    monkeypatch.setattr(keras.Model, "train_on_batch", lambda self, x, y: 0.0)
    x, y = step_time.batch_of("digits", 8)
    step_time.time_training(8, False, x, y, rounds=1, steps=1, warmup=1, recipe=sdt.recipes.DIGITS)
    assert isinstance(compiled[0], keras.optimizers.SGD) and compiled[0].nesterov
    assert compiled[0].weight_decay == sdt.recipes.DIGITS.weight_decay


@pytest.mark.parametrize("network", ["vit", "convnext"])
def test_per_example_contenders_build_the_same_network(network):
    from benchmarks import per_example

    counts = set()
    for contender in per_example.CONTENDERS:
        model = per_example.build(network, contender, drop_rate=0.4, blocks=1)
        assert model.output_shape == (None, 10)
        counts.add(model.count_params())
    assert len(counts) == 1, "every contender trains the same weights"
