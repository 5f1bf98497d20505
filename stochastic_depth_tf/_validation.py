"""Argument checks, written once for the whole package.

Every public function, layer, builder and callback checks its arguments with
these, once, where the argument comes in; the maths in `ops.py` then trusts
them. Every error has the house's three parts: what is invalid (naming the
argument), what was expected, what was received. The settings that model
surgery, the KerasHub backbones and the model builders share are checked
together, once, by `_settings.StochasticDepthSettings`, through these.

The seed policy follows `keras.random.draw_seed`, in two tiers:

- A function that draws (`ops.stochastic_depth`, `ops.shake_drop`) takes
  what `keras.random`'s functions take: None (Keras' global generator), an
  int (a stateless draw: the same values at every call) or a
  `keras.random.SeedGenerator` (fresh values at every call, reproducible).
  `validate_seed(seed, generator=True)`.
- A layer, a model builder or model surgery takes None or an int: it makes
  its own `SeedGenerator` from the int (one per layer, `seed + index` in a
  model), and `get_config` records the int. A generator would be shared
  state that no config can record. `validate_seed(seed)`, then
  `block_seed(seed, index)` for each block.

`block_seed` lives here, below both the model builders and model surgery,
so that the builders, `apply_stochastic_depth` and the KerasHub backbones
count block seeds the one way.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional, Sequence, Tuple, TypeVar, Union

import keras
import numpy as np

MODES = ("batch", "sample", "subset")
# ShakeDrop's own list rather than `MODES`: the modes that skip compute for a
# subset of the rows have no meaning for a branch that is always computed.
SHAKE_DROP_MODES = ("batch", "sample")
SHAKE_MODES = ("sample", "element")

_Choice = TypeVar("_Choice")

SeedLike = Union[None, int, keras.random.SeedGenerator]
# A static shape: None for a size not known when tracing (the batch, say).
Shape = Tuple[Optional[int], ...]


def validate_choice(value: Any, choices: Sequence[_Choice], *, name: str, expected: Optional[str] = None) -> _Choice:
    """Checks that `value` is one of `choices` and returns it.

    A string matches a string choice by equality, anything else (None) only
    by identity, so `1 == True` cannot sneak a bool in.

    Args:
        value: the argument received.
        choices: the accepted values.
        name: the argument's name in error messages.
        expected: what the error says was expected, when a sentence says
            more than the default `one of (...)`.

    Raises:
        ValueError: `value` is not one of `choices`.
    """
    if not any(value is choice or (isinstance(value, str) and value == choice) for choice in choices):
        if expected is None:
            expected = f"one of {tuple(choices)}"
        raise ValueError(
            f"Invalid value received for argument `{name}`. Expected {expected}. Received: {name}={value!r}"
        )
    # Checked above: `value` is one of `choices`.
    chosen: _Choice = value
    return chosen


def validate_bool(value: Any, *, name: str) -> bool:
    """Checks a flag (a Python or NumPy bool) and returns it as a Python bool.

    Raises:
        TypeError: `value` is not a bool (`1` and `"yes"` are refused).
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"Invalid type received for argument `{name}`. Expected a bool. "
            f"Received: {name}={value!r} of type {type(value).__name__}"
        )
    return bool(value)


def validate_positive_int(value: Any, *, name: str, expected: str = "a positive int") -> int:
    """Checks a count, a positive int (a NumPy int too, never a bool), and returns it as a Python int.

    Every caller has always raised a ValueError for a value of the wrong
    type too (`2.0`, `"3"`), so this one does (the schedules' block count,
    `validate_num_blocks`, keeps its own TypeError/ValueError split).

    Args:
        value: the argument received.
        name: the argument's name in error messages.
        expected: what the error says was expected, when a sentence says
            more than the default.

    Raises:
        ValueError: `value` is not an int, is a bool, or is below 1.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(
            f"Invalid value received for argument `{name}`. Expected {expected}. Received: {name}={value!r}"
        )
    return int(value)


def validate_num_blocks(num_blocks: Any) -> int:
    """Checks a block count for a schedule, a positive int (not a bool), and returns it as a Python int.

    Raises:
        TypeError: `num_blocks` is not an int, or is a bool.
        ValueError: `num_blocks` is below 1.
    """
    if isinstance(num_blocks, (bool, np.bool_)) or not isinstance(num_blocks, numbers.Integral):
        raise TypeError(
            "Invalid type received for argument `num_blocks`. Expected a "
            f"positive int. Received: num_blocks={num_blocks!r} of type "
            f"{type(num_blocks).__name__}"
        )
    if num_blocks < 1:
        raise ValueError(
            "Invalid value received for argument `num_blocks`. Expected a "
            f"positive int. Received: num_blocks={num_blocks!r}"
        )
    return int(num_blocks)


def validate_non_negative(value: Any, *, name: str) -> float:
    """Checks a time or a rate, a finite number `>= 0` (not a bool), and returns it as a float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"Invalid type received for argument `{name}`. Expected a non-negative "
            f"number. Received: {name}={value!r} of type {type(value).__name__}"
        )
    number = float(value)
    if not (math.isfinite(number) and number >= 0):
        raise ValueError(
            f"Invalid value received for argument `{name}`. Expected a non-negative "
            f"finite number. Received: {name}={value!r}"
        )
    return number


def validate_depth(depth: Any, *, multiple: int, examples: str) -> int:
    """Checks the depth of a CIFAR-style residual network, `multiple * n + 2` with `n >= 1`, and returns `n`.

    Three stages of `n` blocks of `multiple / 3` layers each, plus the stem
    convolution and the classifier: `6n + 2` for basic blocks, `9n + 2` for
    bottleneck blocks.

    Args:
        depth: the argument received.
        multiple: the layers per block times the three stages.
        examples: what the error adds after the form, say
            `"(20, 32, 44, 56, 110, 1202)"`.

    Raises:
        ValueError: `depth` is not an int (a bool is refused) of that form.
    """
    if (
        isinstance(depth, (bool, np.bool_))
        or not isinstance(depth, numbers.Integral)
        or int(depth) < multiple + 2
        or (int(depth) - 2) % multiple != 0
    ):
        raise ValueError(
            "Invalid value received for argument `depth`. Expected an int of "
            f"the form {multiple}n + 2 with n >= 1 {examples}. Received: depth={depth!r}"
        )
    return (int(depth) - 2) // multiple


def validate_survival_probability(value: Any, *, inverted: bool = False, name: str = "survival_probability") -> float:
    """Checks a Python survival probability and returns it as a float.

    Args:
        value: the survival probability, a real number in `[0, 1]`.
        inverted: whether the inverted convention is used, in which case `0`
            is refused (the training scale `b / p` is undefined).
        name: the argument's name in error messages.

    Returns:
        `value` as a Python float.

    Raises:
        TypeError: `value` is a bool or not a real number.
        ValueError: `value` is outside `[0, 1]` (or NaN), or `0` with
            `inverted=True`.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"Invalid type received for argument `{name}`. "
            "Expected a float between 0 and 1. "
            f"Received: {name}={value!r} of type {type(value).__name__}"
        )
    value = float(value)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(
            f"Invalid value received for argument `{name}`. "
            "Expected a float between 0 and 1. "
            f"Received: {name}={value!r}"
        )
    if inverted and value == 0.0:
        raise ValueError(
            f"Invalid value received for argument `{name}`. "
            f"Expected a value greater than 0 with `inverted=True` (the training "
            f"scale is b / {name}). "
            f"Received: {name}={value!r}, inverted=True"
        )
    return float(value)


def static_survival_probability(value: Any, *, inverted: bool) -> Optional[float]:
    """Checks the survival probability of a functional op: a number, or a scalar floating tensor.

    Returns:
        The Python float of a Python or NumPy scalar (validated as
        `validate_survival_probability` does), None for a tensor or variable
        (its value is not known when tracing, so it is not checked).

    Raises:
        TypeError: a tensor that is not a floating scalar, or neither a
            number nor a tensor.
        ValueError: a number outside `[0, 1]`.
    """
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if isinstance(value, (numbers.Number, np.bool_, str)) or shape is None or dtype is None:
        return validate_survival_probability(value, inverted=inverted)
    if len(shape) != 0 or not is_floating(dtype):
        raise TypeError(
            "Invalid value received for argument `survival_probability`. "
            "Expected a float or a scalar floating tensor or variable. "
            f"Received: survival_probability with shape={tuple(shape)} and "
            f"dtype={dtype_name(dtype)}"
        )
    return None


def validate_mode(mode: Any) -> str:
    """Checks the gating mode, `"batch"`, `"sample"` or `"subset"`, and returns it."""
    return validate_choice(mode, MODES, name="mode")


def validate_shake_drop_mode(mode: Any) -> str:
    """Checks ShakeDrop's gate mode, `"batch"` or `"sample"`, and returns it."""
    return validate_choice(mode, SHAKE_DROP_MODES, name="mode")


def validate_shake_mode(shake_mode: Any) -> str:
    """Checks how many ShakeDrop `alpha` and `beta` are drawn, `"sample"` or `"element"`."""
    return validate_choice(shake_mode, SHAKE_MODES, name="shake_mode")


def validate_inverted(inverted: Any) -> bool:
    """Checks the scaling convention flag and returns it as a bool."""
    return validate_bool(inverted, name="inverted")


def validate_training(training: Any) -> bool:
    """Turns Keras' `training` argument (a bool or None) into a bool."""
    if training is None:
        return False
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(
            "Invalid type received for argument `training`. Expected a Python "
            "bool or None (a tensor would hide the phase from the graph). "
            f"Received: training={training!r} of type {type(training).__name__}"
        )
    return bool(training)


def validate_seed(seed: Any, *, generator: bool = False) -> SeedLike:
    """Checks a seed against the package's seed policy (see the module docstring).

    Args:
        seed: None, a non-negative int, or (with `generator=True`) a
            `keras.random.SeedGenerator`.
        generator: True for a function that draws with the seed as given
            (as `keras.random.draw_seed` does); False (default) for a layer,
            builder or surgery, which makes its own generators from an int.

    Returns:
        `seed`, an int as a Python int.

    Raises:
        TypeError: not None or an int (nor a generator where accepted).
        ValueError: a negative int.
    """
    if seed is None or (generator and isinstance(seed, keras.random.SeedGenerator)):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        expected = (
            "None, an int or a `keras.random.SeedGenerator`"
            if generator
            else "None or an int (each layer makes its own `keras.random.SeedGenerator` from it)"
        )
        raise TypeError(
            f"Invalid type received for argument `seed`. Expected {expected}. "
            f"Received: seed={seed!r} of type {type(seed).__name__}"
        )
    if seed < 0:
        raise ValueError(
            f"Invalid value received for argument `seed`. Expected a non-negative int. Received: seed={seed!r}"
        )
    return int(seed)


def block_seed(seed: Optional[int], index: int) -> Optional[int]:
    """The seed of block `index` of a model seeded with `seed` (checked by `validate_seed`).

    Block `l`, counted from 0 in the order the blocks are applied, gets
    `seed + l`: the builders and `apply_stochastic_depth` count alike, so a
    built model and the same model made by surgery draw the same gates.
    None stays None (Keras' global generator).
    """
    return None if seed is None else seed + index


def validate_range(value: Any, *, name: str) -> Tuple[float, float]:
    """Checks a `(low, high)` pair of finite reals with `low <= high`; returns it as floats.

    Raises:
        TypeError: `value` is not a list or tuple of two real numbers.
        ValueError: a bound is NaN or infinite, or `low > high`.
    """
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or any(isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real) for v in value)
    ):
        raise TypeError(
            f"Invalid type received for argument `{name}`. Expected a pair "
            f"(low, high) of floats. Received: {name}={value!r}"
        )
    low, high = float(value[0]), float(value[1])
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ValueError(
            f"Invalid value received for argument `{name}`. Expected a pair "
            f"(low, high) of finite floats with low <= high. Received: {name}={value!r}"
        )
    return (low, high)


def check_pair(inputs: Any) -> Tuple[Any, Any]:
    """Checks `[shortcut, residual]`: two floating tensors of the same shape.

    Args:
        inputs: a list or tuple of exactly two tensors (eager, symbolic or
            `keras.KerasTensor`).

    Returns:
        `(shortcut, residual)`.

    Raises:
        ValueError: not a list/tuple of two, or shapes that differ.
        TypeError: a tensor that is not floating point.
    """
    if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
        received = (
            f"a {type(inputs).__name__} of length {len(inputs)}"
            if isinstance(inputs, (list, tuple))
            else f"an object of type {type(inputs).__name__}"
        )
        raise ValueError(
            "Invalid value received for argument `inputs`. Expected a list or "
            f"tuple of exactly two tensors [shortcut, residual]. Received: {received}"
        )
    shortcut, residual = inputs
    for name, tensor in (("shortcut", shortcut), ("residual", residual)):
        dtype = getattr(tensor, "dtype", None)
        if dtype is None or not is_floating(dtype):
            raise TypeError(
                f"Invalid dtype received for `inputs` ({name}). Expected a "
                "floating point tensor (float16, bfloat16, float32, float64). "
                f"Received: {name} with dtype={dtype_name(dtype)}"
            )
    check_same_shape(shortcut.shape, residual.shape)
    return shortcut, residual


def check_pair_shapes(input_shape: Any) -> Optional[Shape]:
    """Checks the `input_shape` of a `[shortcut, residual]` merge; returns the output shape."""
    if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2:
        raise ValueError(
            "Invalid value received for argument `input_shape`. Expected "
            "the shapes of exactly two tensors [shortcut, residual]. "
            f"Received: input_shape={input_shape!r}"
        )
    return check_same_shape(input_shape[0], input_shape[1])


def check_same_shape(shortcut_shape: Any, residual_shape: Any) -> Optional[Shape]:
    """Checks two static shapes for equality (None matches any size).

    The residual is never broadcast onto the shortcut: a shape that differs
    almost always means a missing projection on the shortcut.

    Returns:
        The merged shape, with each None replaced by the other's size.
    """
    shortcut = _as_shape_tuple(shortcut_shape)
    residual = _as_shape_tuple(residual_shape)
    compatible = (
        shortcut is None
        or residual is None
        or (
            len(shortcut) == len(residual) and all(a is None or b is None or a == b for a, b in zip(shortcut, residual))
        )
    )
    if not compatible:
        raise ValueError(
            "Invalid shapes received for `inputs`. Expected shortcut and "
            "residual of the same shape (no broadcasting; project the shortcut "
            "when the block changes shape). Received: "
            f"shortcut.shape={shortcut}, residual.shape={residual}"
        )
    if shortcut is None:
        return residual
    if residual is None:
        return shortcut
    return tuple(a if a is not None else b for a, b in zip(shortcut, residual))


def is_floating(dtype: Any) -> bool:
    """Whether `dtype` (any spelling Keras understands) is a floating dtype."""
    try:
        return bool(keras.backend.is_float_dtype(keras.backend.standardize_dtype(dtype)))
    except ValueError:
        return False


def dtype_name(dtype: Any) -> str:
    """Keras' name of `dtype`, for error messages."""
    try:
        return str(keras.backend.standardize_dtype(dtype))
    except ValueError:
        return repr(dtype)


def _as_shape_tuple(shape: Any) -> Optional[Shape]:
    """A static shape as a tuple of ints, with None for every size not known when tracing.

    A symbolic size (JAX's shape polymorphism, as when Keras exports a
    model with a variable batch size) is unknown: `int()` of one raises.
    """
    if shape is None:
        return None
    if hasattr(shape, "as_list"):
        if shape.rank is None:
            return None
        shape = shape.as_list()
    return tuple(int(d) if isinstance(d, numbers.Integral) else None for d in shape)
