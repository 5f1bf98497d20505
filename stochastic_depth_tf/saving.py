"""Loading saved models and weights with errors that name the file.

`load_model` and `load_weights` call Keras' own loaders
(`keras.saving.load_model`, `model.load_weights`) and change only how they
fail. Keras 3 reports a damaged or mismatched file from deep inside its
loaders, mostly without the file's name: a `.keras` file cut short raises
"File not found" although it exists, one with corrupted bytes raises
`zipfile.BadZipFile` about its inner `model.weights.h5`, a weights file cut
short raises h5py's `OSError`, the weights of another architecture a
`ValueError` naming a layer. Here:

- a path that does not exist raises `FileNotFoundError` naming it, before
  Keras is called;
- when Keras fails, the file is examined on its own (the zip archive's
  CRC-32 checks, every dataset of the HDF5 weights read back): a damaged
  file raises `DamagedFileError`, which names the file and says what is
  damaged;
- an intact weights file that does not fit the model (a layer Keras finds
  no weights for, a variable of another shape, another layer count in a
  legacy `.h5` file) raises `WeightsMismatchError`, naming the file and
  quoting Keras' account of the mismatch;
- every other error (a wrong keyword argument, a tampered config refused
  by our layers' checks, a missing optional package) is Keras' own,
  unchanged.

Both errors are `ValueError`s, carry the path as `filepath`, and chain
Keras' original error (`raise ... from error`), whose traceback Python
prints above theirs. Remote paths (`gs://`, `hf://`) go to Keras unchecked and
unexamined.

The layers of this package are registered with Keras when it is imported,
so their files load without `custom_objects`. `load_model` also registers
the KerasHub backbone classes of `stochastic_depth_tf.hub`
(`register_backbones`) when the file's config names one, which a new
process would otherwise have to do by hand.

What no loader can catch: HDF5 keeps no checksum of the data in a
`.weights.h5` file, so bytes corrupted inside a weight's values (rather
than in the file's structure) load as wrong numbers, silently; a `.keras`
archive's CRC-32 catches the same damage. And Keras ignores weights in a
file that the model has no layer for, so the weights of a deeper model of
the same layers load into a shallower one without an error.

Example:

```python
import os

import keras
import stochastic_depth_tf as sdt

inputs = keras.Input((4,))
model = keras.Model(inputs, sdt.StochasticDepth(0.8)([inputs, keras.layers.Dense(4)(inputs)]))
os.makedirs("checkpoints", exist_ok=True)
model.save("checkpoints/previous.keras")
with open("checkpoints/latest.keras", "wb") as file:
    file.write(b"cut short by a crash")  # a damaged file

try:
    model = sdt.saving.load_model("checkpoints/latest.keras")
except sdt.saving.DamagedFileError as error:
    model = sdt.saving.load_model("checkpoints/previous.keras")  # error.filepath is the damaged one
```
"""

from __future__ import annotations

import io
import os
import re
import zipfile
import zlib
from typing import Any, BinaryIO, Optional, Tuple, Union

import keras

import stochastic_depth_tf.layers  # noqa: F401  (registers our layers with Keras)

__all__ = ["DamagedFileError", "WeightsMismatchError", "load_model", "load_weights"]

PathLike = Union[str, "os.PathLike[str]"]

# The first words of Keras 3.15's errors for weights that do not fit the model:
# the `.keras` / `.weights.h5` loader's summary of the objects it could not
# load, and the legacy `.h5` loader's count and shape checks.
_MISMATCH = re.compile(
    r"A total of \d+ objects could not be loaded|Layer count mismatch|Weight count mismatch|Shape mismatch"
)
# How a KerasHub backbone of `stochastic_depth_tf.hub` is named in a config.
_HUB_BACKBONE = re.compile(r"stochastic_depth_tf>StochasticDepth\w*Backbone")
_WEIGHTS_MEMBER = "model.weights.h5"


class _FileError(ValueError):
    """A `ValueError` about one file, which it names and keeps as `filepath`."""

    def __init__(self, message: str, filepath: str) -> None:
        super().__init__(message)
        self.filepath = filepath

    def __reduce__(self) -> Tuple[Any, Tuple[str, str]]:
        return type(self), (str(self), self.filepath)


class DamagedFileError(_FileError):
    """A file that cannot be read: cut short, corrupted bytes, or not the format its name says.

    Attributes:
        filepath: the path of the damaged file, as a string.
    """


class WeightsMismatchError(_FileError):
    """An intact weights file whose weights do not fit the model: another architecture's.

    Attributes:
        filepath: the path of the file, as a string.
    """


def load_model(filepath: PathLike, **kwargs: Any) -> keras.Model:
    """Loads a model with `keras.saving.load_model`, failing with an error that names the file.

    Takes what `keras.saving.load_model` takes and returns what it returns;
    see the module docstring for how the errors differ.

    Args:
        filepath: a str or `os.PathLike` path of a `.keras` file (or
            anything `keras.saving.load_model` loads).
        **kwargs: passed to `keras.saving.load_model` (`custom_objects`,
            `compile`, `safe_mode`).

    Returns:
        The model.

    Raises:
        TypeError: `filepath` is not a str or `os.PathLike` path.
        FileNotFoundError: nothing exists at `filepath`.
        DamagedFileError: the file is damaged (cut short, corrupted bytes).
        WeightsMismatchError: the file's weights do not fit the model its
            own config describes.

    Example:

    ```python
    import keras
    import stochastic_depth_tf as sdt

    inputs = keras.Input((4,))
    outputs = sdt.StochasticDepth(0.8)([inputs, keras.layers.Dense(4)(inputs)])
    keras.Model(inputs, outputs).save("model.keras")
    model = sdt.saving.load_model("model.keras")  # no custom_objects
    ```
    """
    path = _checked_path(filepath)
    try:
        _register_hub_backbones_if_named(path)
        return keras.saving.load_model(filepath, **kwargs)
    except Exception as error:
        _raise_naming_the_file(
            error,
            path,
            f"Weights that do not fit the model received in the file {path!r}. Expected the weights of "
            f"the model its config describes (the same layers, with variables of the same shapes).",
        )
        raise


def load_weights(model: keras.Model, filepath: PathLike, **kwargs: Any) -> None:
    """Loads weights into `model` with `model.load_weights`, failing with an error that names the file.

    Takes what `model.load_weights` takes; see the module docstring for how
    the errors differ.

    Args:
        model: the `keras.Model` to load into.
        filepath: a str or `os.PathLike` path of a `.weights.h5` file (or
            anything `model.load_weights` loads: a `.keras` file, a legacy
            `.h5` file).
        **kwargs: passed to `model.load_weights` (`skip_mismatch`,
            `objects_to_skip`).

    Raises:
        TypeError: `model` is not a `keras.Model`, or `filepath` not a
            str or `os.PathLike` path.
        FileNotFoundError: nothing exists at `filepath`.
        DamagedFileError: the file is damaged (cut short, corrupted bytes).
        WeightsMismatchError: the file holds the weights of another
            architecture (a layer without weights in the file, a variable
            of another shape, another layer count).

    Example:

    ```python
    import keras
    import stochastic_depth_tf as sdt

    def build():
        inputs = keras.Input((4,))
        return keras.Model(inputs, sdt.StochasticDepth(0.8)([inputs, keras.layers.Dense(4)(inputs)]))

    build().save_weights("model.weights.h5")
    sdt.saving.load_weights(build(), "model.weights.h5")
    ```
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Invalid type received for argument `model`. Expected a keras.Model. "
            f"Received: model of type {type(model).__name__}"
        )
    path = _checked_path(filepath)
    try:
        model.load_weights(filepath, **kwargs)
    except Exception as error:
        _raise_naming_the_file(
            error,
            path,
            f"Weights of another architecture received in the file {path!r}. Expected weights that fit "
            f"`model` ({model.name!r}: the same layers, with variables of the same shapes).",
        )
        raise


def _raise_naming_the_file(error: Exception, path: str, mismatch: str) -> None:
    """Raises `DamagedFileError` if the file is damaged, `WeightsMismatchError` (`mismatch`, then
    Keras' words) if Keras reported a mismatch; returns, for the caller to re-raise `error`, otherwise."""
    damage = _damage(path)
    if damage is not None:
        raise DamagedFileError(_damaged_message(path, damage), path) from error
    if isinstance(error, ValueError) and _MISMATCH.match(str(error)):
        raise WeightsMismatchError(f"{mismatch} Keras reports: {error}", path) from error


def _checked_path(filepath: Any) -> str:
    """`filepath` as a str, checked to be a path and, unless remote, to exist."""
    path = os.fspath(filepath) if isinstance(filepath, (str, os.PathLike)) else None
    if not isinstance(path, str):
        raise TypeError(
            "Invalid type received for argument `filepath`. Expected a str or os.PathLike path. "
            f"Received: filepath={filepath!r} of type {type(filepath).__name__}"
        )
    if not _is_remote(path) and not os.path.exists(path):
        raise FileNotFoundError(
            "Invalid value received for argument `filepath`. Expected the path of an existing file. "
            f"Received: filepath={path!r}, where there is no such file or directory"
        )
    return path


def _is_remote(path: str) -> bool:
    return "://" in path


def _register_hub_backbones_if_named(path: str) -> None:
    """Calls `stochastic_depth_tf.hub.register_backbones()` if the model's config names one of its classes."""
    if _is_remote(path):
        return
    if os.path.isdir(path):
        config_path = os.path.join(path, "config.json")
        if not os.path.isfile(config_path):
            return
        with open(config_path, encoding="utf-8") as file:
            config = file.read()
    elif path.endswith(".keras") and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if "config.json" not in archive.namelist():
                return
            config = archive.read("config.json").decode("utf-8")
    else:
        return
    if _HUB_BACKBONE.search(config):
        from stochastic_depth_tf import hub

        hub.register_backbones()


def _damage(path: str) -> Optional[str]:
    """What is damaged in the file at `path`, or None if nothing is found (or it is not examined)."""
    if _is_remote(path) or not os.path.isfile(path):
        return None
    if path.endswith(".keras") or zipfile.is_zipfile(path):
        return _archive_damage(path)
    if path.endswith((".h5", ".hdf5")):
        with open(path, "rb") as file:
            return _hdf5_damage(file)
    return None


def _archive_damage(path: str) -> Optional[str]:
    """What is damaged in the zip archive of a `.keras` file, its inner weights included."""
    if not zipfile.is_zipfile(path):
        return (
            "It is not a zip archive, which a `.keras` file is: the archive's end (its central "
            "directory) is missing or corrupted, as a write or copy cut short leaves it"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            bad_member = archive.testzip()
            if bad_member is not None:
                return f"Its member {bad_member!r} fails the zip archive's CRC-32 check (corrupted bytes)"
            if _WEIGHTS_MEMBER not in archive.namelist():
                return None
            weights = io.BytesIO(archive.read(_WEIGHTS_MEMBER))
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        return f"Its zip archive cannot be read ({type(error).__name__}: {error})"
    damage = _hdf5_damage(weights)
    return None if damage is None else f"Its member {_WEIGHTS_MEMBER!r}: {damage}"


def _hdf5_damage(file: BinaryIO) -> Optional[str]:
    """What h5py cannot read in an HDF5 file: its structure, an attribute or a dataset's values."""
    import h5py

    def read(name: str, item: Any) -> None:
        dict(item.attrs)
        if isinstance(item, h5py.Dataset):
            item[()]

    try:
        with h5py.File(file, "r") as hdf5:
            dict(hdf5.attrs)
            hdf5.visititems(read)
    # A damaged structure surfaces from h5py as OSError, RuntimeError,
    # KeyError, ValueError or TypeError, depending on which bytes were hit.
    except Exception as error:
        first_line = str(error).splitlines()[0] if str(error) else ""
        return f"Its HDF5 content cannot be read ({type(error).__name__}: {first_line})"
    return None


def _damaged_message(path: str, damage: str) -> str:
    if path.endswith(".keras") or zipfile.is_zipfile(path):
        expected = "an intact `.keras` zip archive, as `model.save` writes it"
    elif path.endswith(".weights.h5"):
        expected = "an intact HDF5 weights file, as `model.save_weights` writes it"
    else:
        expected = "an intact HDF5 file"
    return (
        f"Damaged file received: {path!r}. {damage}. Expected {expected}. "
        "Load an intact copy (an earlier checkpoint or backup) instead."
    )
