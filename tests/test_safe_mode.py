"""`.keras` files in safe mode: every public layer and builder, and tampered configs.

What is proved:

- `keras.saving.load_model(path, safe_mode=True)`, with no
  `custom_objects`, loads models of every public layer
  (`sdt.StochasticDepth`, `sdt.StochasticDepthBlock` with a Sequential
  branch and a projection shortcut, `sdt.layers.ZeroPadShortcut`) and of
  `sdt.models.cifar_resnet` (on blocks and on merge layers), with the same
  config, the same layer classes and the same inference outputs;
- safe mode reaches inside a block: a Python lambda in a branch is refused;
- a `.keras` file whose `config.json` was tampered with (an unknown `mode`,
  a `survival_probability` of 7, a `branch` that is not a layer, ...) fails
  in `load_model` with the package's own message, never later in a call.
"""

import json
import zipfile

import keras
import numpy as np
import pytest

import stochastic_depth_tf as sdt
from tests.helpers import as_trained, block_model, images, merge_model


def as_json(config):
    """A config as a `.keras` file stores it (tuples become lists)."""
    return json.loads(json.dumps(config))


def zero_pad_model():
    """`ZeroPadShortcut` as a layer of the model and as a block's shortcut."""
    inputs = keras.Input((8, 8, 4))
    x = sdt.layers.ZeroPadShortcut(6, strides=1, name="pad")(inputs)
    branch = keras.Sequential([keras.layers.Conv2D(8, 3, strides=2, padding="same")], name="branch")
    block = sdt.StochasticDepthBlock(
        branch,
        shortcut=sdt.layers.ZeroPadShortcut(8, strides=2, name="block_pad"),
        survival_probability=0.8,
        name="block",
    )
    return keras.Model(inputs, block(x))


def cifar_resnet(skip_compute):
    return sdt.models.cifar_resnet(
        depth=8,
        num_classes=3,
        input_shape=(12, 12, 3),
        seed=0,
        skip_compute=skip_compute,
        shortcut="zero_pad" if skip_compute else "projection",
    )


MODELS = {
    "stochastic_depth_batch": lambda: merge_model("batch", False),
    "stochastic_depth_sample_inverted": lambda: merge_model("sample", True),
    "stochastic_depth_block": lambda: block_model("batch", False),
    "zero_pad_shortcut": zero_pad_model,
    "cifar_resnet_blocks": lambda: cifar_resnet(skip_compute=True),
    "cifar_resnet_merge": lambda: cifar_resnet(skip_compute=False),
}


def layer_classes(layer):
    """Class names of a layer and every layer nested in it (models, block branches and shortcuts)."""
    if isinstance(layer, sdt.StochasticDepthBlock):
        children = [layer.branch] + ([] if layer.shortcut is None else [layer.shortcut])
    else:
        children = getattr(layer, "layers", [])
    return [type(layer).__name__] + [name for child in children for name in layer_classes(child)]


@pytest.mark.parametrize("name", MODELS)
def test_keras_file_loads_in_safe_mode_without_custom_objects(tmp_path, name):
    """Same config, same layer classes and same inference outputs after a safe-mode load."""
    model = as_trained(MODELS[name]())  # moved statistics and survival probabilities: only the file restores them
    x = images(model.input.shape[1:])
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert as_json(loaded.get_config()) == as_json(model.get_config())
    assert layer_classes(loaded) == layer_classes(model)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_safe_mode_reaches_inside_a_block_branch(tmp_path):
    """A Python lambda inside a block's branch is refused in safe mode, and loads only without it."""
    inputs = keras.Input((4,))
    branch = keras.Sequential([keras.layers.Lambda(lambda t: 2.0 * t)], name="branch")
    model = keras.Model(inputs, sdt.StochasticDepthBlock(branch, name="block")(inputs))
    path = str(tmp_path / "lambda.keras")
    model.save(path)
    with pytest.raises(ValueError, match="Requested the deserialization of a `Lambda` layer"):
        keras.saving.load_model(path, safe_mode=True)
    loaded = keras.saving.load_model(path, safe_mode=False)
    x = images((4,))
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


# Tampered files.


def every_layer_model():
    """`StochasticDepth`, then a block with a Sequential branch and a `ZeroPadShortcut`."""
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    branch = keras.layers.Conv2D(4, 3, padding="same", name="conv")(x)
    x = sdt.StochasticDepth(0.6, seed=1, name="merge")([x, branch])
    branch = keras.Sequential(
        [keras.layers.Conv2D(8, 3, strides=2, padding="same"), keras.layers.BatchNormalization()],
        name="branch",
    )
    block = sdt.StochasticDepthBlock(
        branch, shortcut=sdt.layers.ZeroPadShortcut(8, name="pad"), survival_probability=0.7, name="block"
    )
    return keras.Model(inputs, block(x))


@pytest.fixture(scope="module")
def saved_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("saved") / "model.keras"
    every_layer_model().save(str(path))
    return path


def edit_layer_config(config, layer_name, edit):
    """Applies `edit` to the config of the layer named `layer_name`, wherever it is nested."""
    if isinstance(config, dict):
        inner = config.get("config")
        if "class_name" in config and isinstance(inner, dict) and inner.get("name") == layer_name:
            edit(inner)
            return True
        return any([edit_layer_config(value, layer_name, edit) for value in config.values()])
    if isinstance(config, list):
        return any([edit_layer_config(value, layer_name, edit) for value in config])
    return False


def tampered_copy(source, destination, layer_name, edit):
    """A copy of a `.keras` zip with one layer's config edited in `config.json`."""
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    assert edit_layer_config(config, layer_name, edit), layer_name
    members["config.json"] = json.dumps(config).encode("utf-8")
    with zipfile.ZipFile(destination, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return str(destination)


def replace(**values):
    return lambda config: config.update(values)


# Keras' base `from_config` (used by StochasticDepth and ZeroPadShortcut)
# re-raises a constructor's error as a TypeError quoting it; the block's own
# `from_config` lets a ValueError through as it is; an error raised while a
# nested object is deserialized is wrapped in a TypeError by Keras.
TAMPERED = {
    "merge_mode": (
        "merge",
        replace(mode="banana"),
        TypeError,
        r"Invalid value received for argument `mode`\. Expected one of \('batch', 'sample', 'subset'\)\. Received: mode='banana'",
    ),
    "merge_survival_probability": (
        "merge",
        replace(survival_probability=7),
        TypeError,
        r"Invalid value received for argument `survival_probability`\. Expected a float between 0 and 1",
    ),
    "merge_inverted": (
        "merge",
        replace(inverted="yes"),
        TypeError,
        r"Invalid type received for argument `inverted`\. Expected a bool",
    ),
    "block_mode": (
        "block",
        replace(mode="banana"),
        ValueError,
        r"Invalid value received for argument `mode`\. Expected one of \('batch', 'sample', 'subset'\)",
    ),
    "block_survival_probability": (
        "block",
        replace(survival_probability=7),
        ValueError,
        r"Invalid value received for argument `survival_probability`\. Expected a float between 0 and 1",
    ),
    "block_branch_number": (
        "block",
        replace(branch=3),
        TypeError,
        r"Invalid type received for argument `branch`\. Expected a keras\.layers\.Layer\. Received: branch=3",
    ),
    "block_branch_initializer": (
        "block",
        replace(branch=keras.saving.serialize_keras_object(keras.initializers.Zeros())),
        TypeError,
        r"Invalid type received for argument `branch`\. Expected a keras\.layers\.Layer\. Received: branch=<",
    ),
    "block_branch_plain_dict": (
        "block",
        replace(branch={"units": 3}),
        TypeError,
        r"Invalid type received for argument `branch`\. Expected a keras\.layers\.Layer\. Received: branch=\{'units': 3\}",
    ),
    "block_shortcut_string": (
        "block",
        replace(shortcut="identity"),
        TypeError,
        r"Invalid type received for argument `shortcut`\. Expected a keras\.layers\.Layer or None",
    ),
    "block_skip_compute": (
        "block",
        replace(skip_compute="yes"),
        TypeError,
        r"Invalid type received for argument `skip_compute`\. Expected a bool",
    ),
    "zero_pad_filters": (
        "pad",
        replace(filters=-1),
        TypeError,
        r"Invalid value received for argument `filters`\. Expected a positive int",
    ),
    "zero_pad_fewer_filters_than_channels": (
        "pad",
        replace(filters=2),
        ValueError,
        r"Invalid input shape received by ZeroPadShortcut",
    ),
}


@pytest.mark.one_backend
@pytest.mark.parametrize("case", TAMPERED)
def test_tampered_config_fails_at_load_with_our_message(saved_file, tmp_path, case):
    """The edited file raises in `load_model`, and the exception text carries the package's message."""
    layer_name, edit, error, message = TAMPERED[case]
    path = tampered_copy(saved_file, tmp_path / "tampered.keras", layer_name, edit)
    with pytest.raises(error, match=message):
        keras.saving.load_model(path, safe_mode=True)


def test_untampered_copy_loads(saved_file, tmp_path):
    """Rewriting the zip with an edit that changes nothing loads: the failures above are the edits'."""
    path = tampered_copy(saved_file, tmp_path / "copy.keras", "block", replace())
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded.get_layer("block"), sdt.StochasticDepthBlock)
