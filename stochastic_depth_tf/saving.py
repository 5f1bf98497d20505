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
- when Keras fails, whatever it raised, the file is examined on its own,
  and what is wrong is decided from its bytes, never from the words of
  Keras' error (which another Keras release may change); damage raises
  `DamagedFileError`, which names the file and says what is damaged;
- damage in a `.keras` zip archive: empty, not a zip archive (or the start
  of one cut short), a member failing the archive's CRC-32 check, no
  `config.json` or no `model.weights.h5` member, a `config.json` that is
  not a JSON object, or damaged weights inside;
- damage in an HDF5 file (`.weights.h5`, `.h5`, `.hdf5`, and the weights
  inside a `.keras` archive): no HDF5 signature, fewer bytes than its
  superblock records (cut short), or content h5py cannot read back (every
  attribute and dataset is read);
- damage in a directory in Keras' unzipped format (a `config.json` beside
  the weights): the same checks on its two files;
- an intact file whose weights do not fit the model raises
  `WeightsMismatchError`, naming the file, the first layer that does not
  fit, and the variables' shapes expected and received. The model's side
  is what Keras itself writes for it (`model.save_weights`, or for
  `load_model` the model the file's own config builds), compared group by
  group with the file; in a legacy `.h5` file, the layers with weights in
  order (or by name with `by_name=True`), as Keras matches them;
- every other error (a wrong keyword argument, a tampered config refused
  by our layers' checks, a missing optional package) is Keras' own,
  unchanged.

Both errors are `ValueError`s, carry the path as `filepath`, and chain
Keras' original error (`raise ... from error`), whose traceback Python
prints above theirs. Remote paths (`gs://`, `hf://`), sharded
`.weights.json` files and directories of other formats (a TensorFlow
SavedModel, which Keras 3 does not load, or an Orbax checkpoint) go to
Keras unchecked and unexamined. h5py, which Keras 3 requires, reads the
HDF5 content and the variables' shapes; were it missing, only the
signature and length checks would run, and no mismatch would be named.
With `skip_mismatch=True`, Keras loads what fits and warns about the rest,
so no error is a `WeightsMismatchError`.

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
import json
import os
import tempfile
import zipfile
import zlib
from types import ModuleType
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import keras

import stochastic_depth_tf.layers  # noqa: F401  (registers our layers with Keras)
from stochastic_depth_tf._file_checks import (
    CONFIG_MEMBER,
    WEIGHTS_MEMBER,
    damage,
    import_h5py,
    is_keras_directory,
    is_remote,
)

__all__ = ["DamagedFileError", "WeightsMismatchError", "load_model", "load_weights"]

PathLike = Union[str, "os.PathLike[str]"]
Shape = Tuple[int, ...]

# How a KerasHub backbone class of `stochastic_depth_tf.hub` is named in a config.
_HUB_BACKBONE_PREFIX, _HUB_BACKBONE_SUFFIX = "stochastic_depth_tf>StochasticDepth", "Backbone"
# How many names a message lists before "...".
_NAMES_LISTED = 5


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
        DamagedFileError: the file is damaged (cut short, corrupted bytes,
            a member missing).
        WeightsMismatchError: the file's weights do not fit the model its
            own config describes; the message names the first layer that
            does not fit, with the shapes expected and received.

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
            lambda: _config_model_misfits(path, kwargs),
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
            `objects_to_skip`, `by_name`).

    Raises:
        TypeError: `model` is not a `keras.Model`, or `filepath` not a
            str or `os.PathLike` path.
        FileNotFoundError: nothing exists at `filepath`.
        DamagedFileError: the file is damaged (cut short, corrupted bytes,
            a member missing).
        WeightsMismatchError: the file holds the weights of another
            architecture (a layer without weights in the file, a variable
            of another shape, another layer count); the message names the
            first layer that does not fit, with the shapes expected and
            received.

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
            lambda: _model_misfits(model, path, kwargs),
            f"Weights of another architecture received in the file {path!r}. Expected weights that fit "
            f"`model` ({model.name!r}: the same layers, with variables of the same shapes).",
        )
        raise


class _Misfit(NamedTuple):
    """A layer whose weights in the file do not fit: its name, and what was received against what was expected."""

    layer: str
    account: str


def _raise_naming_the_file(
    error: Exception, path: str, find_misfits: Callable[[], List[_Misfit]], mismatch: str
) -> None:
    """Raises `DamagedFileError` if the file is damaged, `WeightsMismatchError` (`mismatch`, then the
    layers that do not fit) if `find_misfits` finds any; returns, for the caller to re-raise `error`,
    otherwise. Decided from the file alone: what `error` says is not read."""
    damaged = damage(path)
    if damaged is not None:
        raise DamagedFileError(damaged, path) from error
    try:
        misfits = find_misfits()
    # Finding them builds a model and reads and writes weights files; where
    # any of that fails, no misfit can be shown and Keras' error stands.
    except Exception:
        misfits = []
    if misfits:
        others = [misfit.layer for misfit in misfits[1:]]
        more = f"; {_counted(len(others), 'more layer')} not fitting either: {_listed(others)}" if others else ""
        raise WeightsMismatchError(f"{mismatch} Received: {misfits[0].account}{more}.", path) from error


def _checked_path(filepath: Any) -> str:
    """`filepath` as a str, checked to be a path and, unless remote, to exist."""
    path = os.fspath(filepath) if isinstance(filepath, (str, os.PathLike)) else None
    if not isinstance(path, str):
        raise TypeError(
            "Invalid type received for argument `filepath`. Expected a str or os.PathLike path. "
            f"Received: filepath={filepath!r} of type {type(filepath).__name__}"
        )
    if not is_remote(path) and not os.path.exists(path):
        raise FileNotFoundError(
            "Invalid value received for argument `filepath`. Expected the path of an existing file. "
            f"Received: filepath={path!r}, where there is no such file or directory"
        )
    return path


# ---- The KerasHub backbones a config names ----------------------------------


def _register_hub_backbones_if_named(path: str) -> None:
    """Calls `stochastic_depth_tf.hub.register_backbones()` if the model's config names one of its classes."""
    if _names_hub_backbone(_keras_config(path)):
        from stochastic_depth_tf import hub

        hub.register_backbones()


def _keras_config(path: str) -> Any:
    """The parsed `config.json` of a `.keras` archive or model directory; None where there is none to
    read (what is wrong with it is examined if Keras fails)."""
    if is_remote(path):
        return None
    try:
        if is_keras_directory(path):
            with open(os.path.join(path, CONFIG_MEMBER), "rb") as file:
                data = file.read()
        elif path.endswith(".keras") and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                data = archive.read(CONFIG_MEMBER)
        else:
            return None
        return json.loads(data)
    except (OSError, KeyError, EOFError, zlib.error, zipfile.BadZipFile, ValueError):
        return None


def _names_hub_backbone(config: Any) -> bool:
    if isinstance(config, dict):
        return any(_names_hub_backbone(value) for value in config.values())
    if isinstance(config, list):
        return any(_names_hub_backbone(value) for value in config)
    return isinstance(config, str) and config.startswith(_HUB_BACKBONE_PREFIX) and config.endswith(_HUB_BACKBONE_SUFFIX)


# ---- Mismatch: which layers' weights in the file do not fit -----------------


def _model_misfits(model: keras.Model, path: str, kwargs: Dict[str, Any]) -> List[_Misfit]:
    """The layers of `model` whose weights in the file do not fit, matched as `model.load_weights` matches them."""
    h5py = import_h5py()
    if h5py is None or kwargs.get("skip_mismatch") or is_remote(path) or not os.path.isfile(path):
        return []
    if path.endswith(".weights.h5"):
        with h5py.File(path, "r") as weights:
            return _misfits(h5py, model, weights, kwargs.get("objects_to_skip"))
    if path.endswith(".keras"):
        with h5py.File(_archived_weights(path), "r") as weights:
            return _misfits(h5py, model, weights, None)
    if path.endswith((".h5", ".hdf5")):
        with h5py.File(path, "r") as weights:
            if "layer_names" not in weights.attrs and "model_weights" in weights:
                return _legacy_misfits(model, weights["model_weights"], by_name=bool(kwargs.get("by_name")))
            return _legacy_misfits(model, weights, by_name=bool(kwargs.get("by_name")))
    return []


def _config_model_misfits(path: str, kwargs: Dict[str, Any]) -> List[_Misfit]:
    """The layers of the model the file's config describes whose weights in the file do not fit."""
    h5py = import_h5py()
    if h5py is None or is_remote(path):
        return []
    custom_objects = kwargs.get("custom_objects")
    safe_mode = kwargs.get("safe_mode", True)
    if path.endswith((".h5", ".hdf5")) and os.path.isfile(path):
        with h5py.File(path, "r") as legacy:
            config = legacy.attrs["model_config"]
            config = json.loads(config.decode("utf-8") if isinstance(config, bytes) else config)
            # A legacy config names Keras' model classes by their old names.
            models = {"Functional": keras.Model, "Model": keras.Model, "Sequential": keras.Sequential}
            model = keras.saving.deserialize_keras_object(
                config, custom_objects={**models, **(custom_objects or {})}, safe_mode=safe_mode
            )
            return _legacy_misfits(model, legacy["model_weights"], by_name=False)
    config = _keras_config(path)
    if not isinstance(config, dict):
        return []
    # Built as Keras builds it, uncompiled: Keras loads an optimizer's state only where it fits.
    model = keras.saving.deserialize_keras_object(
        {**config, "compile_config": None}, custom_objects=custom_objects, safe_mode=safe_mode
    )
    weights_file = os.path.join(path, WEIGHTS_MEMBER) if os.path.isdir(path) else _archived_weights(path)
    with h5py.File(weights_file, "r") as weights:
        return _misfits(h5py, model, weights, None)


def _archived_weights(path: str) -> io.BytesIO:
    """The `model.weights.h5` member of the `.keras` archive at `path`, read into memory."""
    with zipfile.ZipFile(path) as archive:
        return io.BytesIO(archive.read(WEIGHTS_MEMBER))


def _misfits(
    h5py: ModuleType, model: keras.Model, weights: Any, objects_to_skip: Optional[Sequence[Any]]
) -> List[_Misfit]:
    """The layers of `model` whose variables in the open weights file `weights` do not fit.

    What `model` expects is what Keras itself writes for it
    (`model.save_weights`), so the two files are laid out alike: every
    object's variables in a group `<path>/vars`, keyed `0`, `1`, ..., with
    the object's name as the group's `name` attribute. Keras ignores groups
    the model has no object for, and loads an optimizer's variables only
    where they fit, so neither is a misfit; nor is an object of
    `objects_to_skip`, or anything inside it.
    """
    with tempfile.TemporaryDirectory() as directory:
        reference_path = os.path.join(directory, WEIGHTS_MEMBER)
        model.save_weights(reference_path)
        with h5py.File(reference_path, "r") as reference:
            expected = _variable_groups(h5py, reference)
    received = _variable_groups(h5py, weights)
    skipped = [getattr(item, "name", None) for item in objects_to_skip or ()]
    skipped.append(getattr(getattr(model, "optimizer", None), "name", None))
    skipped_paths = [group[: -len("vars")] for group, (name, _) in expected.items() if name in skipped]
    misfits = []
    for group, (name, shapes) in expected.items():
        if not shapes or any(group.startswith(prefix) for prefix in skipped_paths):
            continue
        if group not in received:
            misfits.append(_misfit(name, f"nothing at {group!r} in the file", list(shapes.values()), []))
        elif received[group][1] != shapes:
            found = received[group][1]
            misfits.append(_misfit(name, f"at {group!r} in the file", list(shapes.values()), list(found.values())))
    return misfits


def _variable_groups(h5py: ModuleType, weights: Any) -> Dict[str, Tuple[str, Dict[str, Shape]]]:
    """Every group of variables in an open Keras weights file: its path, its object's name, and its
    variables' keys and shapes (in the order of the keys, numbers first)."""
    groups: Dict[str, Tuple[str, Dict[str, Shape]]] = {}

    def visit(path: str, item: Any) -> None:
        if isinstance(item, h5py.Group) and path.rsplit("/", 1)[-1] == "vars":
            keys = sorted(item, key=lambda key: (not key.isdigit(), int(key) if key.isdigit() else 0, key))
            shapes = {key: tuple(item[key].shape) for key in keys if isinstance(item[key], h5py.Dataset)}
            groups[path] = (str(item.attrs.get("name", path)), shapes)

    weights.visititems(visit)
    return groups


def _legacy_misfits(model: keras.Model, group: Any, by_name: bool) -> List[_Misfit]:
    """The layers of `model` whose weights in a legacy `.h5` group do not fit, matched as Keras matches
    them: the layers with weights in order, or by name."""
    expected = [
        (layer.name, [tuple(w.shape) for w in layer.trainable_weights + layer.non_trainable_weights])
        for layer in model.layers
        if layer.weights
    ]
    saved = {
        name: [tuple(group[name][weight].shape) for weight in _attribute_strings(group[name], "weight_names")]
        for name in _attribute_strings(group, "layer_names")
    }
    if by_name:
        pairs = [(name, shapes, name) for name, shapes in expected if name in saved]
    else:
        received = [name for name, shapes in saved.items() if shapes]
        if len(received) != len(expected):
            account = (
                f"weights for {_counted(len(received), 'layer')} ({_listed(received)}), where the model "
                f"has {_counted(len(expected), 'layer')} with weights ({_listed([name for name, _ in expected])}), "
                "matched in order"
            )
            return [_Misfit(model.name, account)]
        pairs = [(name, shapes, saved_name) for (name, shapes), saved_name in zip(expected, received)]
    return [
        _misfit(name, f"layer {saved_name!r} of the file", shapes, saved[saved_name])
        for name, shapes, saved_name in pairs
        if saved[saved_name] != shapes
    ]


def _attribute_strings(group: Any, name: str) -> List[str]:
    """A legacy `.h5` group's list of names, whole or (when long) split over `name0`, `name1`, ..."""
    if name in group.attrs:
        chunks = [group.attrs[name]]
    else:
        chunks = []
        while f"{name}{len(chunks)}" in group.attrs:
            chunks.append(group.attrs[f"{name}{len(chunks)}"])
    return [item.decode("utf-8") if isinstance(item, bytes) else str(item) for chunk in chunks for item in chunk]


def _misfit(layer: str, where: str, expected: Sequence[Shape], received: Sequence[Shape]) -> _Misfit:
    return _Misfit(
        layer, f"{_variables(received)} for layer {layer!r} ({where}), where it expects {_variables(expected)}"
    )


def _variables(shapes: Sequence[Shape]) -> str:
    if not shapes:
        return "no variables"
    return f"{_counted(len(shapes), 'variable')} of shape{'s' if len(shapes) > 1 else ''} " + ", ".join(
        str(shape) for shape in shapes
    )


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _listed(names: Sequence[str]) -> str:
    listed = ", ".join(repr(name) for name in names[:_NAMES_LISTED])
    return listed + (", ..." if len(names) > _NAMES_LISTED else "")
