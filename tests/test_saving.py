"""`stochastic_depth_tf.saving`: Keras' loaders, with errors that name the file.

The four faults of issue #21 (a `.keras` file cut short or with corrupted
bytes, a weights file cut short, the weights of another architecture) are
tested end to end, beside Keras' own errors, in a subprocess by
`tests/test_faults.py::test_damaged_or_mismatched_files_fail_at_load_naming_the_file`;
these are the argument checks, the pass-through of what is not a damaged
file, and the cases that scenario leaves out.
"""

from __future__ import annotations

import os
import pathlib
import pickle
import subprocess
import sys
import textwrap
import zipfile

import keras
import numpy as np
import pytest

import stochastic_depth_tf as sdt
from stochastic_depth_tf.saving import DamagedFileError, WeightsMismatchError
from tests.markdown_snippets import ROOT


def small_model(num_dense: int = 1, width: int = 4) -> keras.Model:
    """A `StochasticDepth` over `num_dense` Dense layers of `width` units (the last one the residual); seeded."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    residual = inputs
    for _ in range(num_dense):
        residual = keras.layers.Dense(width)(residual)
    shortcut = inputs if width == 4 else keras.layers.Dense(width)(inputs)
    return keras.Model(inputs, sdt.StochasticDepth(0.7, seed=1)([shortcut, residual]))


@pytest.mark.parametrize("filepath", [3, None, b"model.keras", ["model.keras"]])
def test_filepath_that_is_not_a_path_is_refused(filepath):
    with pytest.raises(TypeError, match="Invalid type received for argument `filepath`. Expected a str or os.PathLike"):
        sdt.saving.load_model(filepath)
    with pytest.raises(TypeError, match="Invalid type received for argument `filepath`. Expected a str or os.PathLike"):
        sdt.saving.load_weights(small_model(), filepath)


def test_model_that_is_not_a_keras_model_is_refused(tmp_path):
    path = tmp_path / "model.weights.h5"
    small_model().save_weights(path)
    with pytest.raises(TypeError, match="Invalid type received for argument `model`. Expected a keras.Model"):
        sdt.saving.load_weights(keras.layers.Dense(4), path)


@pytest.mark.parametrize("name", ["missing.keras", "missing.weights.h5"])
def test_missing_file_raises_file_not_found_naming_it(tmp_path, name):
    path = tmp_path / name
    load = sdt.saving.load_model if name.endswith(".keras") else lambda p: sdt.saving.load_weights(small_model(), p)
    with pytest.raises(FileNotFoundError, match="Invalid value received for argument `filepath`") as raised:
        load(path)
    assert repr(str(path)) in str(raised.value)


def test_intact_files_load_as_with_keras(tmp_path):
    model = small_model()
    x = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    model.save(tmp_path / "model.keras")
    model.save_weights(tmp_path / "model.weights.h5")
    loaded = sdt.saving.load_model(tmp_path / "model.keras")  # a pathlib.Path, no custom_objects
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    fresh = small_model()
    fresh.set_weights([np.zeros_like(w) for w in fresh.get_weights()])
    sdt.saving.load_weights(fresh, str(tmp_path / "model.weights.h5"))
    np.testing.assert_array_equal(fresh.predict(x, verbose=0), model.predict(x, verbose=0))


def test_errors_not_about_the_file_are_keras_own(tmp_path):
    small_model().save(tmp_path / "model.keras")
    small_model().save_weights(tmp_path / "model.weights.h5")
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'") as raised:
        sdt.saving.load_model(tmp_path / "model.keras", colour="red")
    assert raised.value.__cause__ is None
    with pytest.raises(ValueError, match="Invalid keyword arguments") as raised:
        sdt.saving.load_weights(small_model(), tmp_path / "model.weights.h5", colour="red")
    assert not isinstance(raised.value, (DamagedFileError, WeightsMismatchError))
    text = tmp_path / "notes.txt"
    text.write_text("not a model")
    with pytest.raises(ValueError, match="File format not supported") as raised:
        sdt.saving.load_model(text)
    assert not isinstance(raised.value, (DamagedFileError, WeightsMismatchError))


def test_keras_file_of_other_bytes_is_damaged(tmp_path):
    """A `.keras` name on a file that is no zip archive at all (a text file, an HDF5 file renamed)."""
    path = tmp_path / "model.keras"
    path.write_text("<html>404</html>")
    with pytest.raises(DamagedFileError, match="Damaged file received: ") as raised:
        sdt.saving.load_model(path)
    assert str(path) in str(raised.value) and "is not a zip archive" in str(raised.value)
    assert raised.value.filepath == str(path)
    assert isinstance(raised.value, ValueError)
    assert isinstance(raised.value.__cause__, ValueError)  # Keras' "File not found", chained


def test_weights_of_a_truncated_keras_file_are_damaged(tmp_path):
    """`load_weights` also takes a `.keras` file; cut short, it is named too."""
    small_model().save(tmp_path / "model.keras")
    data = (tmp_path / "model.keras").read_bytes()
    path = str(tmp_path / "cut.keras")
    pathlib.Path(path).write_bytes(data[: len(data) // 2])
    with pytest.raises(DamagedFileError, match="Damaged file received: ") as raised:
        sdt.saving.load_weights(small_model(), path)
    assert path in str(raised.value)


def test_weights_of_a_model_with_another_layer_count(tmp_path):
    """A layer of the model with no weights in the file (a shallower model's file) is a mismatch, named."""
    path = tmp_path / "shallow.weights.h5"
    small_model(num_dense=1).save_weights(path)
    with pytest.raises(WeightsMismatchError, match="Weights of another architecture received in the file") as raised:
        sdt.saving.load_weights(small_model(num_dense=2), path)
    assert str(path) in str(raised.value)
    assert "expected 2 variables, but received 0" in str(raised.value)  # Keras' detail, quoted
    assert raised.value.filepath == str(path)


def test_deeper_model_weights_load_into_a_shallower_model_silently(tmp_path):
    """Keras ignores weights the model has no layer for: no loader can tell, the limit the docs state."""
    path = tmp_path / "deep.weights.h5"
    small_model(num_dense=2).save_weights(path)
    sdt.saving.load_weights(small_model(num_dense=1), path)


def test_legacy_h5_weights_of_another_layer_count(tmp_path):
    path = tmp_path / "model.h5"
    small_model(num_dense=2, width=3).save(path)
    with pytest.raises(WeightsMismatchError, match="Weights of another architecture") as raised:
        sdt.saving.load_weights(small_model(num_dense=1, width=3), path)
    assert str(path) in str(raised.value) and "Layer count mismatch" in str(raised.value)


def edited_config(source: pathlib.Path, path: pathlib.Path, old: bytes, new: bytes) -> pathlib.Path:
    """A copy of the `.keras` archive `source` at `path`, intact, with `old` replaced by `new` in its config."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(path, "w") as edited:
        for item in original.infolist():
            data = original.read(item.filename)
            if item.filename == "config.json":
                assert old in data
                data = data.replace(old, new)
            edited.writestr(item, data)
    return path


def test_keras_file_whose_weights_do_not_fit_its_config(tmp_path):
    """A `.keras` archive, intact, whose config no longer builds the model its weights are for."""
    small_model(width=3).save(tmp_path / "model.keras")
    path = edited_config(tmp_path / "model.keras", tmp_path / "edited.keras", b'"units": 3', b'"units": 5')
    with pytest.raises(WeightsMismatchError, match="Weights that do not fit the model received in the file") as raised:
        sdt.saving.load_model(path)
    assert str(path) in str(raised.value)


def test_config_refused_by_our_layers_is_keras_error_unchanged(tmp_path):
    """An intact archive whose config our layers' checks refuse: our message, through Keras, not a file error."""
    small_model().save(tmp_path / "model.keras")
    path = edited_config(tmp_path / "model.keras", tmp_path / "edited.keras", b'"mode": "batch"', b'"mode": "banana"')
    with pytest.raises((TypeError, ValueError), match="Invalid value received for argument `mode`") as raised:
        sdt.saving.load_model(path)
    assert not isinstance(raised.value, (DamagedFileError, WeightsMismatchError))


def test_errors_pickle_with_their_file():
    for error_class in (DamagedFileError, WeightsMismatchError):
        error = pickle.loads(pickle.dumps(error_class("message", "/tmp/x.keras")))
        assert type(error) is error_class
        assert (str(error), error.filepath) == ("message", "/tmp/x.keras")


@pytest.mark.tensorflow_only
def test_keras_hub_backbone_file_loads_in_a_new_process(tmp_path):
    """`load_model` registers the `sdt.hub` classes a file names; `keras.saving.load_model` alone cannot find them."""
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(16, 16, 3), patch_size=4, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=16
    )
    path = str(tmp_path / "vit.keras")
    sdt.hub.apply_stochastic_depth(backbone, seed=0).save(path)
    code = textwrap.dedent(
        f"""
        import keras
        import stochastic_depth_tf as sdt
        try:
            keras.saving.load_model({path!r})
            print("keras: loaded")
        except Exception as error:
            print("keras:", type(error).__name__)
        print("ours:", type(sdt.saving.load_model({path!r})).__name__)
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    keras_line, ours_line = completed.stdout.strip().splitlines()[-2:]
    assert keras_line != "keras: loaded"
    assert ours_line == "ours: StochasticDepthViTBackbone"
