"""`stochastic_depth_tf.saving`: Keras' loaders, with errors that name the file.

The four faults of issue #21 (a `.keras` file cut short or with corrupted
bytes, a weights file cut short, the weights of another architecture) are
tested end to end, beside Keras' own errors, in a subprocess by
`tests/test_faults.py::test_damaged_or_mismatched_files_fail_at_load_naming_the_file`;
these are the argument checks, the pass-through of what is not a damaged
file, every kind of damage and mismatch, and (issue #33) that each is
judged from the file, never from the words of Keras' error: with Keras'
loader replaced by one raising unrelated words, the error still names the
damage or the layer, and Keras' own words on an intact file make no error
of ours.
"""

from __future__ import annotations

import json
import os
import pathlib
import pickle
import struct
import subprocess
import sys
import textwrap
import zipfile

import h5py
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
    model = small_model(num_dense=2)
    with pytest.raises(WeightsMismatchError, match="Weights of another architecture received in the file") as raised:
        sdt.saving.load_weights(model, path)
    second_dense = model.layers[2].name  # Keras files it under layers/dense_1
    assert str(path) in str(raised.value)
    assert (
        f"Received: no variables for layer {second_dense!r} (nothing at 'layers/dense_1/vars' in the file), "
        "where it expects 2 variables of shapes (4, 4), (4,)."
    ) in str(raised.value)
    assert raised.value.filepath == str(path)
    assert isinstance(raised.value.__cause__, ValueError)  # Keras' error, chained


def test_weights_of_a_model_with_other_shapes_name_the_layer_and_both_shapes(tmp_path):
    path = tmp_path / "narrow.weights.h5"
    small_model(width=3).save_weights(path)
    model = small_model(width=5)
    with pytest.raises(WeightsMismatchError, match="Weights of another architecture received in the file") as raised:
        sdt.saving.load_weights(model, path)
    message = str(raised.value)
    first, second = model.layers[1].name, model.layers[2].name  # filed as layers/dense, layers/dense_1
    assert (
        f"Received: 2 variables of shapes (4, 3), (3,) for layer {first!r} (at 'layers/dense/vars' in the "
        "file), where it expects 2 variables of shapes (4, 5), (5,); 1 more layer not fitting either: "
        f"{second!r}."
    ) in message


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
    assert str(path) in str(raised.value)
    assert "Received: weights for 3 layers (" in str(raised.value)
    assert "where the model has 2 layers with weights (" in str(raised.value)


def test_legacy_h5_weights_of_other_shapes_name_the_layer(tmp_path):
    path = tmp_path / "model.h5"
    small_model(width=3).save(path)
    model = small_model(width=5)
    with pytest.raises(WeightsMismatchError, match="Weights of another architecture") as raised:
        sdt.saving.load_weights(model, path)
    assert f"for layer {model.layers[1].name!r} (layer " in str(raised.value)
    assert "2 variables of shapes (4, 3), (3,)" in str(raised.value)
    assert "where it expects 2 variables of shapes (4, 5), (5,)" in str(raised.value)


def test_legacy_h5_model_whose_weights_do_not_fit_its_config(tmp_path):
    path = tmp_path / "model.h5"
    small_model(width=3).save(path)
    with h5py.File(path, "a") as legacy:
        legacy.attrs["model_config"] = legacy.attrs["model_config"].replace('"units": 3', '"units": 5')
    with pytest.raises(WeightsMismatchError, match="Weights that do not fit the model received in the file") as raised:
        sdt.saving.load_model(path)
    assert "where it expects 2 variables of shapes (4, 5), (5,)" in str(raised.value)


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
    model = small_model(width=3)
    model.save(tmp_path / "model.keras")
    path = edited_config(tmp_path / "model.keras", tmp_path / "edited.keras", b'"units": 3', b'"units": 5')
    with pytest.raises(WeightsMismatchError, match="Weights that do not fit the model received in the file") as raised:
        sdt.saving.load_model(path)
    assert str(path) in str(raised.value)
    assert (
        f"Received: 2 variables of shapes (4, 3), (3,) for layer {model.layers[1].name!r} (at 'layers/dense/vars' "
        "in the file), where it expects 2 variables of shapes (4, 5), (5,)"
    ) in str(raised.value)


def test_config_refused_by_our_layers_is_keras_error_unchanged(tmp_path):
    """An intact archive whose config our layers' checks refuse: our message, through Keras, not a file error."""
    small_model().save(tmp_path / "model.keras")
    path = edited_config(tmp_path / "model.keras", tmp_path / "edited.keras", b'"mode": "batch"', b'"mode": "banana"')
    with pytest.raises((TypeError, ValueError), match="Invalid value received for argument `mode`") as raised:
        sdt.saving.load_model(path)
    assert not isinstance(raised.value, (DamagedFileError, WeightsMismatchError))


# ---- Every kind of damage, judged from the file (issue #33) -----------------


def rewritten_archive(source: pathlib.Path, path: pathlib.Path, members: dict) -> pathlib.Path:
    """A copy of the `.keras` archive `source` at `path`, intact as a zip, each member of `members`
    replaced by its bytes there (None: left out)."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(path, "w") as rewritten:
        for item in original.infolist():
            data = members.get(item.filename, original.read(item.filename))
            if data is not None:
                rewritten.writestr(item, data)
    return path


def flipped_weights_byte(source: pathlib.Path, path: pathlib.Path) -> pathlib.Path:
    """A copy of `source` with one bit flipped in the middle of its `model.weights.h5` member's bytes."""
    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as archive:
        member = archive.getinfo("model.weights.h5")
    name_length, extra_length = struct.unpack("<HH", data[member.header_offset + 26 : member.header_offset + 30])
    data[member.header_offset + 30 + name_length + extra_length + member.compress_size // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return path


def unreadable_hdf5(source: pathlib.Path, path: pathlib.Path) -> pathlib.Path:
    """A copy of the HDF5 file `source`, as long, whose root group's address (bytes 64-71 of a version 0
    superblock, the format h5py writes by default) is the undefined address: its structure is gone."""
    data = bytearray(source.read_bytes())
    assert data[:8] == b"\x89HDF\r\n\x1a\n" and data[8] == 0 and data[13] == 8  # superblock 0, 8-byte offsets
    data[64:72] = b"\xff" * 8
    path.write_bytes(bytes(data))
    return path


def keras_damage(kind: str, directory: pathlib.Path) -> pathlib.Path:
    """A damaged `.keras` file of `small_model()`, of the kind named."""
    intact = directory / "model.keras"
    small_model().save(intact)
    damaged = directory / f"{kind}.keras"
    if kind == "empty":
        damaged.write_bytes(b"")
    elif kind == "truncated":
        damaged.write_bytes(intact.read_bytes()[: intact.stat().st_size // 2])
    elif kind == "flipped_byte":
        flipped_weights_byte(intact, damaged)
    elif kind == "hdf5_renamed":
        small_model().save_weights(directory / "model.weights.h5")
        damaged.write_bytes((directory / "model.weights.h5").read_bytes())
    elif kind == "no_config":
        rewritten_archive(intact, damaged, {"config.json": None})
    elif kind == "no_weights":
        rewritten_archive(intact, damaged, {"model.weights.h5": None})
    elif kind == "config_not_json":
        rewritten_archive(intact, damaged, {"config.json": b'{"class_name": "Functional", "config": '})
    elif kind == "config_not_an_object":
        rewritten_archive(intact, damaged, {"config.json": b'["Functional"]'})
    elif kind == "weights_not_hdf5":
        rewritten_archive(intact, damaged, {"model.weights.h5": b"<html>404</html>"})
    elif kind == "weights_truncated":
        with zipfile.ZipFile(intact) as archive:
            weights = archive.read("model.weights.h5")
        rewritten_archive(intact, damaged, {"model.weights.h5": weights[: len(weights) // 2]})
    return damaged


KERAS_DAMAGE = {
    "empty": "It is empty (0 bytes)",
    "truncated": "It is not a zip archive, which a `.keras` file is, but the start of one: its end (the central "
    "directory) is missing",
    "flipped_byte": "Its member 'model.weights.h5' fails the zip archive's CRC-32 check (corrupted bytes)",
    "hdf5_renamed": "It is not a zip archive, which a `.keras` file is, but an HDF5 file",
    "no_config": "It has no member 'config.json' (the model's config)",
    "no_weights": "It has no member 'model.weights.h5' (the model's weights)",
    "config_not_json": "Its member 'config.json' is not JSON: invalid at line 1, column 40",
    "config_not_an_object": "Its member 'config.json' holds a JSON list, where a model's config is a JSON object",
    "weights_not_hdf5": "Its member 'model.weights.h5' is not an HDF5 file: it has no HDF5 signature, and its "
    "first bytes are b'<html>40'",
    "weights_truncated": "Its member 'model.weights.h5' is cut short (a truncated file): ",
}


def weights_damage(kind: str, directory: pathlib.Path) -> pathlib.Path:
    """A damaged `.weights.h5` file of `small_model()`, of the kind named."""
    intact = directory / "model.weights.h5"
    small_model().save_weights(intact)
    damaged = directory / f"{kind}.weights.h5"
    if kind == "empty":
        damaged.write_bytes(b"")
    elif kind == "truncated":
        damaged.write_bytes(intact.read_bytes()[: intact.stat().st_size // 2])
    elif kind == "not_hdf5":
        damaged.write_bytes(b"<html>404</html>")
    elif kind == "zip_renamed":
        small_model().save(directory / "model.keras")
        damaged.write_bytes((directory / "model.keras").read_bytes())
    elif kind == "structure":
        unreadable_hdf5(intact, damaged)
    return damaged


WEIGHTS_DAMAGE = {
    "empty": "It is empty (0 bytes)",
    "truncated": "It is cut short (a truncated file): ",
    "not_hdf5": "It is not an HDF5 file: it has no HDF5 signature, and its first bytes are b'<html>40'",
    "zip_renamed": "It is not an HDF5 file: it has no HDF5 signature, and its first bytes are b'PK\\x03\\x04",
    "structure": "It has HDF5 content that cannot be read (",
}


def raise_unrelated_words(*args, **kwargs):
    raise RuntimeError("the loader failed for reasons of its own")


@pytest.mark.parametrize("keras_loader", ["keras", "unrelated_words"])
@pytest.mark.parametrize("kind", sorted(KERAS_DAMAGE))
def test_damaged_keras_file_is_named_from_its_bytes(tmp_path, monkeypatch, kind, keras_loader):
    """Each kind of damage to a `.keras` file, named the same whatever words Keras' loader fails with."""
    path = keras_damage(kind, tmp_path)
    if keras_loader == "unrelated_words":
        monkeypatch.setattr(keras.saving, "load_model", raise_unrelated_words)
    with pytest.raises(DamagedFileError, match="Damaged file received: ") as raised:
        sdt.saving.load_model(path)
    message = str(raised.value)
    assert f"Damaged file received: {str(path)!r}. {KERAS_DAMAGE[kind]}" in message
    assert "Expected an intact `.keras` zip archive, as `model.save` writes it." in message
    assert raised.value.filepath == str(path)
    assert raised.value.__cause__ is not None  # Keras' error (or the stand-in's), chained
    if keras_loader == "unrelated_words":
        assert isinstance(raised.value.__cause__, RuntimeError)


@pytest.mark.parametrize("keras_loader", ["keras", "unrelated_words"])
@pytest.mark.parametrize("kind", sorted(WEIGHTS_DAMAGE))
def test_damaged_weights_file_is_named_from_its_bytes(tmp_path, monkeypatch, kind, keras_loader):
    """Each kind of damage to a `.weights.h5` file, named the same whatever words Keras' loader fails with."""
    path = weights_damage(kind, tmp_path)
    model = small_model()
    if keras_loader == "unrelated_words":
        monkeypatch.setattr(keras.Model, "load_weights", raise_unrelated_words)
    with pytest.raises(DamagedFileError, match="Damaged file received: ") as raised:
        sdt.saving.load_weights(model, path)
    message = str(raised.value)
    assert f"Damaged file received: {str(path)!r}. {WEIGHTS_DAMAGE[kind]}" in message
    assert "Expected an intact HDF5 weights file, as `model.save_weights` writes it." in message
    assert raised.value.__cause__ is not None
    if keras_loader == "unrelated_words":
        assert isinstance(raised.value.__cause__, RuntimeError)


def test_truncated_weights_file_states_both_lengths(tmp_path):
    path = weights_damage("truncated", tmp_path)
    size, recorded = path.stat().st_size, (tmp_path / "model.weights.h5").stat().st_size
    with pytest.raises(DamagedFileError) as raised:
        sdt.saving.load_weights(small_model(), path)
    assert f"{size} bytes, of the {recorded} its HDF5 superblock records" in str(raised.value)


def test_mismatch_is_named_from_the_file_whatever_keras_says(tmp_path, monkeypatch):
    """Keras' loader replaced by one failing with unrelated words: the layer that does not fit is still named."""
    path = tmp_path / "narrow.weights.h5"
    small_model(width=3).save_weights(path)
    model = small_model(width=5)
    monkeypatch.setattr(keras.Model, "load_weights", raise_unrelated_words)
    with pytest.raises(WeightsMismatchError, match="Weights of another architecture received in the file") as raised:
        sdt.saving.load_weights(model, path)
    assert (
        f"Received: 2 variables of shapes (4, 3), (3,) for layer {model.layers[1].name!r} (at 'layers/dense/vars' "
        "in the file), where it expects 2 variables of shapes (4, 5), (5,)"
    ) in str(raised.value)
    assert isinstance(raised.value.__cause__, RuntimeError)


def test_model_file_mismatch_is_named_from_the_file_whatever_keras_says(tmp_path, monkeypatch):
    model = small_model(width=3)
    model.save(tmp_path / "model.keras")
    path = edited_config(tmp_path / "model.keras", tmp_path / "edited.keras", b'"units": 3', b'"units": 5')
    monkeypatch.setattr(keras.saving, "load_model", raise_unrelated_words)
    with pytest.raises(WeightsMismatchError, match="Weights that do not fit the model received in the file") as raised:
        sdt.saving.load_model(path)
    assert f"for layer {model.layers[1].name!r} (at 'layers/dense/vars' in the file)" in str(raised.value)
    assert isinstance(raised.value.__cause__, RuntimeError)


# Keras 3.15's words for the faults, which the loaders used to look for.
KERAS_WORDS = [
    "A total of 1 objects could not be loaded. Example error message for object <Dense name=dense>",
    "Layer count mismatch when loading weights from file. Model expected 2 layers, found 3 saved layers.",
    "Bad CRC-32 for file 'model.weights.h5'",
    "Unable to synchronously open file (truncated file: eof = 8172, sblock->base_addr = 0, stored_eof = 16344)",
]


@pytest.mark.parametrize("words", KERAS_WORDS)
def test_keras_words_on_an_intact_file_are_keras_error_unchanged(tmp_path, monkeypatch, words):
    """An intact file that fits: whatever Keras says, its error is re-raised as it is, never ours."""
    small_model().save(tmp_path / "model.keras")
    small_model().save_weights(tmp_path / "model.weights.h5")
    keras_error = ValueError(words)

    def fail(*args, **kwargs):
        raise keras_error

    monkeypatch.setattr(keras.saving, "load_model", fail)
    monkeypatch.setattr(keras.Model, "load_weights", fail)
    for load in (
        lambda: sdt.saving.load_model(tmp_path / "model.keras"),
        lambda: sdt.saving.load_weights(small_model(), tmp_path / "model.weights.h5"),
        lambda: sdt.saving.load_weights(small_model(), tmp_path / "model.keras"),
    ):
        with pytest.raises(ValueError) as raised:
            load()
        assert raised.value is keras_error


def test_skip_mismatch_leaves_keras_error_unchanged(tmp_path, monkeypatch):
    """With `skip_mismatch=True` Keras loads what fits, so a failure is never called a mismatch."""
    path = tmp_path / "narrow.weights.h5"
    small_model(width=3).save_weights(path)
    with pytest.warns(UserWarning):
        sdt.saving.load_weights(small_model(width=5), path, skip_mismatch=True)
    monkeypatch.setattr(keras.Model, "load_weights", raise_unrelated_words)
    with pytest.raises(RuntimeError, match="reasons of its own"):
        sdt.saving.load_weights(small_model(width=5), path, skip_mismatch=True)


def test_damage_is_named_without_h5py(tmp_path, monkeypatch):
    """h5py hidden (Keras 3 requires it, so only a test can): the byte-level checks still name the damage."""
    path = weights_damage("truncated", tmp_path)
    narrow = tmp_path / "narrow.weights.h5"
    small_model(width=3).save_weights(narrow)
    wide = small_model(width=5)
    monkeypatch.setitem(sys.modules, "h5py", None)  # `import h5py` now raises ImportError
    monkeypatch.setattr(keras.Model, "load_weights", raise_unrelated_words)
    with pytest.raises(DamagedFileError, match="It is cut short"):
        sdt.saving.load_weights(small_model(), path)
    with pytest.raises(RuntimeError, match="reasons of its own"):  # no misfit can be read: Keras' error stands
        sdt.saving.load_weights(wide, narrow)


def test_unzipped_model_directory_is_examined(tmp_path):
    """A model saved with `zipped=False`: it loads; its `config.json` damaged, the directory is named."""
    path = tmp_path / "model"
    small_model().save(path, zipped=False)
    sdt.saving.load_model(path)
    (path / "config.json").write_text('{"class_name": ')
    with pytest.raises(DamagedFileError, match="Damaged file received: ") as raised:
        sdt.saving.load_model(path)
    assert "Its file 'config.json' is not JSON: invalid at line 1, column 16" in str(raised.value)
    assert "Expected an intact model directory" in str(raised.value)


def test_saved_model_directory_is_keras_error_unchanged(tmp_path):
    """A TensorFlow SavedModel directory is no damaged file: Keras' error, pointing to TFSMLayer, stands."""
    path = tmp_path / "saved_model"
    path.mkdir()
    (path / "saved_model.pb").write_bytes(b"")
    with pytest.raises(ValueError, match="File format not supported") as raised:
        sdt.saving.load_model(path)
    assert not isinstance(raised.value, (DamagedFileError, WeightsMismatchError))


def test_hub_backbone_names_are_read_from_the_parsed_config(tmp_path, monkeypatch):
    """`load_model` asks `sdt.hub` to register its backbones when a config value names one, else not."""
    from stochastic_depth_tf import hub

    calls = []
    monkeypatch.setattr(hub, "register_backbones", lambda: calls.append(True))
    small_model().save(tmp_path / "model.keras")
    sdt.saving.load_model(tmp_path / "model.keras")
    assert calls == []
    config = json.loads(zipfile.ZipFile(tmp_path / "model.keras").read("config.json"))
    config["config"]["name"] = "stochastic_depth_tf>StochasticDepthViTBackbone"
    path = rewritten_archive(tmp_path / "model.keras", tmp_path / "named.keras", {"config.json": json.dumps(config)})
    sdt.saving.load_model(path)
    assert calls == [True]


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
