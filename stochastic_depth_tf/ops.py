"""The stochastic depth maths, written once with `keras.ops` and `keras.random`.

Every layer, block and builder of the package calls these functions; nothing
else in the package computes a gate or a scale.

For a residual block `H = shortcut + f(x)` with survival probability `p` and a
gate `b ~ Bernoulli(p)`:

| phase     | `inverted=False` (paper)  | `inverted=True` (timm, EfficientNet) |
|-----------|---------------------------|--------------------------------------|
| training  | `shortcut + b * residual` | `shortcut + (b / p) * residual`      |
| inference | `shortcut + p * residual` | `shortcut + residual`                |

Both conventions have the same expected output in training and inference.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional, Union

import keras
import numpy as np

from stochastic_depth_tf import backend

MODES = ("batch", "sample", "subset")

SeedLike = Union[None, int, keras.random.SeedGenerator]


def validate_survival_probability(
    value: Any, *, inverted: bool = False, name: str = "survival_probability"
) -> float:
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
            "Expected a value greater than 0 with `inverted=True` (the training "
            "scale is b / survival_probability). "
            f"Received: {name}={value!r}, inverted=True"
        )
    return value


def validate_mode(mode: Any) -> str:
    """Checks the gating mode, `"batch"`, `"sample"` or `"subset"`, and returns it."""
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(
            "Invalid value received for argument `mode`. "
            f"Expected one of {MODES}. Received: mode={mode!r}"
        )
    return mode


def validate_inverted(inverted: Any) -> bool:
    """Checks the scaling convention flag and returns it as a bool."""
    if not isinstance(inverted, (bool, np.bool_)):
        raise TypeError(
            "Invalid type received for argument `inverted`. Expected a bool. "
            f"Received: inverted={inverted!r} of type {type(inverted).__name__}"
        )
    return bool(inverted)


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


def validate_seed(seed: Any) -> SeedLike:
    """Checks a seed: None, a non-negative int, or a `keras.random.SeedGenerator`."""
    if seed is None or isinstance(seed, keras.random.SeedGenerator):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            "Invalid type received for argument `seed`. Expected None, an int "
            "or a `keras.random.SeedGenerator`. "
            f"Received: seed={seed!r} of type {type(seed).__name__}"
        )
    if seed < 0:
        raise ValueError(
            "Invalid value received for argument `seed`. Expected a "
            f"non-negative int. Received: seed={seed!r}"
        )
    return int(seed)


def check_pair(inputs: Any) -> tuple:
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
        if dtype is None or not _is_floating(dtype):
            raise TypeError(
                f"Invalid dtype received for `inputs` ({name}). Expected a "
                "floating point tensor (float16, bfloat16, float32, float64). "
                f"Received: {name} with dtype={_dtype_name(dtype)}"
            )
    check_same_shape(shortcut.shape, residual.shape)
    return shortcut, residual


def check_same_shape(shortcut_shape: Any, residual_shape: Any) -> tuple:
    """Checks two static shapes for equality (None matches any size).

    The residual is never broadcast onto the shortcut: a shape that differs
    almost always means a missing projection on the shortcut.

    Returns:
        The merged shape, with each None replaced by the other's size.
    """
    shortcut_shape = _as_shape_tuple(shortcut_shape)
    residual_shape = _as_shape_tuple(residual_shape)
    compatible = shortcut_shape is None or residual_shape is None or (
        len(shortcut_shape) == len(residual_shape)
        and all(
            a is None or b is None or a == b
            for a, b in zip(shortcut_shape, residual_shape)
        )
    )
    if not compatible:
        raise ValueError(
            "Invalid shapes received for `inputs`. Expected shortcut and "
            "residual of the same shape (no broadcasting; project the shortcut "
            "when the block changes shape). Received: "
            f"shortcut.shape={shortcut_shape}, residual.shape={residual_shape}"
        )
    if shortcut_shape is None:
        return residual_shape
    if residual_shape is None:
        return shortcut_shape
    return tuple(a if a is not None else b for a, b in zip(shortcut_shape, residual_shape))


def bernoulli_gate(
    residual: Any,
    survival_probability: Any,
    *,
    mode: str = "batch",
    seed: SeedLike = None,
) -> Any:
    """Draws the keep gate `b ~ Bernoulli(p)` in the graph, as float32 0/1.

    The uniform draw and the comparison are made in float32 whatever the
    compute dtype, so the keep rate is `p` to float32 precision (a bfloat16
    uniform has only 256 levels).

    Under `tf.distribute` with several replicas, a batch-mode gate is the
    same on every replica at a step (one gate per global batch, so every
    replica takes the same branch of a skipping block), while per-example
    gates are independent across the whole global batch: the replica id is
    folded into their seed (`backend.replica_uniform`).

    Args:
        residual: the tensor to be gated; only its shape is used.
        survival_probability: `p`, a float or a scalar tensor or variable.
        mode: `"batch"`, one scalar gate for the whole batch, or `"sample"`,
            one gate per example of shape `[batch, 1, ..., 1]`.
        seed: None (Keras' global generator), an int (a stateless draw: the
            same gate at every call), or a `keras.random.SeedGenerator` (a
            fresh gate at every call, reproducible from its seed).

    Returns:
        A float32 tensor of zeros and ones, shape `()` or `[batch, 1, ..., 1]`.
    """
    mode = validate_mode(mode)
    if mode == "subset":
        raise ValueError(
            "Invalid value received for argument `mode`. Expected 'batch' or "
            "'sample' (a Bernoulli gate; `subset_gate` draws the 'subset' gate). "
            f"Received: mode={mode!r}"
        )
    if mode == "batch":
        uniform = keras.random.uniform((), dtype="float32", seed=seed)
    else:
        rank = len(residual.shape)
        shape = (keras.ops.shape(residual)[0],) + (1,) * (rank - 1)
        uniform = backend.replica_uniform(shape, seed)
    keep = keras.ops.less(uniform, keras.ops.cast(survival_probability, "float32"))
    return keras.ops.cast(keep, "float32")


def kept_count(batch_size: Any, survival_probability: Any) -> Any:
    """How many examples keep the branch in `mode="subset"`: `k = round(p * batch)`.

    At least one when `p > 0` (as DINOv2), none when `p == 0`. With a Python
    `p` and a batch size known when compiling, `k` is a compile-time
    constant, which XLA needs for the static shape of the kept rows; with a
    Python `p` and batch size it is a Python int (JAX needs one to trace).
    """
    if isinstance(batch_size, numbers.Integral) and isinstance(survival_probability, numbers.Real):
        # float32 as below, so both paths round the same product.
        count = int(np.round(np.float32(survival_probability) * np.float32(batch_size)))
        return max(count, 1) if survival_probability > 0 else 0
    probability = keras.ops.cast(survival_probability, "float32")
    count = keras.ops.cast(keras.ops.round(probability * keras.ops.cast(batch_size, "float32")), "int32")
    return keras.ops.where(probability > 0, keras.ops.maximum(count, 1), 0)


def subset_gate(residual: Any, survival_probability: Any, *, seed: SeedLike = None) -> Any:
    """Draws the gate of `mode="subset"`: exactly `kept_count(batch, p)` ones, as float32.

    The kept examples are a uniformly random subset of that size, drawn
    without replacement: the `k` examples with the smallest uniform draws
    (the same draws and the same rows as `kept_rows`). Shape
    `[batch, 1, ..., 1]`; across replicas, each replica keeps its own
    subset of its batch (the replica id is folded into the draw).
    """
    batch = keras.ops.shape(residual)[0]
    uniform = backend.replica_uniform((batch,), seed)
    ranks = keras.ops.argsort(keras.ops.argsort(uniform))
    keep = keras.ops.less(ranks, kept_count(batch, survival_probability))
    return keras.ops.reshape(keras.ops.cast(keep, "float32"), (batch,) + (1,) * (len(residual.shape) - 1))


def draw_gate(residual: Any, survival_probability: Any, *, mode: str = "batch", seed: SeedLike = None) -> Any:
    """The training gate of any mode: `bernoulli_gate` or, for `"subset"`, `subset_gate`."""
    if validate_mode(mode) == "subset":
        return subset_gate(residual, survival_probability, seed=seed)
    return bernoulli_gate(residual, survival_probability, mode=mode, seed=seed)


def keep_probability(residual: Any, survival_probability: Any, *, mode: str = "batch") -> Any:
    """The probability that an example keeps the branch: `p`, or `k / batch` for `"subset"`.

    The inverted convention divides by it, so that the training output's
    expectation is exactly the inference output (DINOv2 scales by
    `batch / k`).
    """
    if validate_mode(mode) != "subset":
        return survival_probability
    batch = keras.ops.shape(residual)[0]
    return keras.ops.cast(kept_count(batch, survival_probability), "float32") / keras.ops.cast(batch, "float32")


def kept_rows(
    inputs: Any,
    survival_probability: Any,
    *,
    mode: str,
    seed: SeedLike = None,
    count: Any = None,
) -> tuple:
    """The examples that keep the branch, for per-example compute skipping.

    Draws the same gate as the merge layer of the same mode and seed and
    returns its kept rows: in `"sample"` mode the examples whose Bernoulli
    gate is open (their number varies, so the result has a dynamic shape),
    in `"subset"` mode the `k` examples with the smallest uniform draws.

    Args:
        inputs: the block input; only its batch size is used.
        survival_probability: `p`, a float or a scalar tensor or variable.
        mode: `"sample"` or `"subset"`.
        seed: as for `bernoulli_gate`.
        count: `"subset"` only: the number kept, if it must be fixed when
            compiling (XLA); default `kept_count(batch, p)`.

    Returns:
        `(indices, keep_probability)`: int32 row indices, and the float32
        probability that an example is kept (`p`, or `k / batch`).
    """
    if mode == "sample":
        gate = bernoulli_gate(inputs, survival_probability, mode="sample", seed=seed)
        indices = keras.ops.nonzero(keras.ops.reshape(gate, (-1,)))[0]
        return keras.ops.cast(indices, "int32"), keras.ops.cast(survival_probability, "float32")
    if mode != "subset":
        raise ValueError(
            "Invalid value received for argument `mode`. Expected a per-example "
            f"mode, 'sample' or 'subset'. Received: mode={mode!r}"
        )
    batch = keras.ops.shape(inputs)[0]
    if count is None:
        count = kept_count(batch, survival_probability)
    uniform = backend.replica_uniform((batch,), seed)
    _, indices = keras.ops.top_k(keras.ops.negative(uniform), count, sorted=False)
    probability = keras.ops.cast(count, "float32") / keras.ops.cast(batch, "float32")
    return keras.ops.cast(indices, "int32"), probability


def gate_scale(gate: Any, survival_probability: Any, *, inverted: bool, dtype: Any) -> Any:
    """The training multiplier of the residual: `b`, or `b / p` when inverted.

    Computed in float32 and cast to `dtype` once. With a tensor `p == 0` and
    `inverted=True` the scale is 0, not NaN (the gate is closed anyway).
    """
    if inverted:
        gate = keras.ops.divide_no_nan(gate, keras.ops.cast(survival_probability, "float32"))
    return keras.ops.cast(gate, dtype)


def inference_scale(survival_probability: Any, *, inverted: bool, dtype: Any) -> Any:
    """The inference multiplier of the residual: `p`, or `1` when inverted."""
    if inverted:
        return keras.ops.ones((), dtype=dtype)
    return keras.ops.cast(survival_probability, dtype)


def stochastic_depth(
    shortcut: Any,
    residual: Any,
    survival_probability: Any,
    *,
    training: Optional[bool] = False,
    mode: str = "batch",
    inverted: bool = False,
    seed: SeedLike = None,
) -> Any:
    """Adds a residual to its shortcut, gated by stochastic depth.

    Training computes `shortcut + b * residual` (or `shortcut + (b / p) *
    residual` with `inverted=True`), `b ~ Bernoulli(p)` drawn in the graph;
    inference computes `shortcut + p * residual` (or `shortcut + residual`).
    Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016.

    The gate is one scalar per call in `mode="batch"` (the paper, TensorFlow
    Addons, KerasCV), one per example in `mode="sample"` (timm's DropPath),
    or, in `mode="subset"`, one per example with exactly `k = round(p *
    batch)` examples kept (at least one when `p > 0`), a uniformly random
    subset without replacement, and `b / (k / batch)` in the inverted
    convention (DINOv2's fixed-size subset). Subset mode's keep rate is
    `k / batch`, which is `p` up to the rounding. A Python `p == 1` is an
    exact plain add in both phases.

    Args:
        shortcut: the identity or projected input of the block.
        residual: the output of the residual branch, same shape as `shortcut`.
        survival_probability: `p` in `[0, 1]`: a Python float (validated), or
            a scalar tensor or variable (a schedule can change it without a
            retrace; its value is not checked in the graph).
        training: True for the stochastic training form; False or None for
            the deterministic inference form.
        mode: `"batch"`, `"sample"` or `"subset"`.
        inverted: False for the paper's convention (scale at inference), True
            for the inverted one (scale by `1 / p` in training).
        seed: None, an int or a `keras.random.SeedGenerator`. Inside a
            compiled custom training loop pass a `SeedGenerator`: an int seed
            is a stateless draw and gives the same gate at every call.

    Returns:
        A tensor of the shape of `shortcut`, in the dtype of the inputs.

    Example:

    ```python
    import keras
    import stochastic_depth_tf as sdt

    generator = keras.random.SeedGenerator(0)
    y = sdt.ops.stochastic_depth(
        x, branch(x), 0.8, training=True, mode="sample", seed=generator
    )
    ```
    """
    mode = validate_mode(mode)
    inverted = validate_inverted(inverted)
    training = validate_training(training)
    seed = validate_seed(seed)
    shortcut, residual = check_pair([shortcut, residual])
    static_p = _static_survival_probability(survival_probability, inverted=inverted)
    if static_p == 1.0:
        return keras.ops.add(shortcut, residual)
    dtype = residual.dtype
    if not training:
        if inverted:
            return keras.ops.add(shortcut, residual)
        scale = inference_scale(survival_probability, inverted=False, dtype=dtype)
        return keras.ops.add(shortcut, keras.ops.multiply(scale, residual))
    gate = draw_gate(residual, survival_probability, mode=mode, seed=seed)
    kept = keep_probability(residual, survival_probability, mode=mode)
    scale = gate_scale(gate, kept, inverted=inverted, dtype=dtype)
    return keras.ops.add(shortcut, keras.ops.multiply(scale, residual))


def _static_survival_probability(value: Any, *, inverted: bool) -> Optional[float]:
    """Validates a Python or NumPy scalar `p`; returns None for a tensor."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (numbers.Number, np.bool_, str, type(None))):
        return validate_survival_probability(value, inverted=inverted)
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is None or dtype is None:
        validate_survival_probability(value, inverted=inverted)
    if len(shape) != 0 or not _is_floating(dtype):
        raise TypeError(
            "Invalid value received for argument `survival_probability`. "
            "Expected a float or a scalar floating tensor or variable. "
            f"Received: survival_probability with shape={tuple(shape)} and "
            f"dtype={_dtype_name(dtype)}"
        )
    return None


def _is_floating(dtype: Any) -> bool:
    try:
        return keras.backend.is_float_dtype(keras.backend.standardize_dtype(dtype))
    except ValueError:
        return False


def _dtype_name(dtype: Any) -> str:
    try:
        return keras.backend.standardize_dtype(dtype)
    except ValueError:
        return repr(dtype)


def _as_shape_tuple(shape: Any) -> Optional[tuple]:
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


# ShakeDrop (Yamada et al., "ShakeDrop Regularization for Deep Residual
# Learning", arXiv 1802.02375): the stochastic depth gate generalized to a
# random forward scale and a different random backward scale.

SHAKE_DROP_MODES = ("batch", "sample")
SHAKE_MODES = ("sample", "element")


def validate_shake_drop_mode(mode: Any) -> str:
    """Checks ShakeDrop's gate mode, `"batch"` or `"sample"`, and returns it.

    Its own list rather than `MODES`: the modes that skip compute for a
    subset of the rows have no meaning for a branch that is always computed.
    """
    if not isinstance(mode, str) or mode not in SHAKE_DROP_MODES:
        raise ValueError(
            "Invalid value received for argument `mode`. "
            f"Expected one of {SHAKE_DROP_MODES}. Received: mode={mode!r}"
        )
    return mode


def validate_shake_mode(shake_mode: Any) -> str:
    """Checks how many `alpha` and `beta` are drawn, `"sample"` or `"element"`."""
    if not isinstance(shake_mode, str) or shake_mode not in SHAKE_MODES:
        raise ValueError(
            "Invalid value received for argument `shake_mode`. "
            f"Expected one of {SHAKE_MODES}. Received: shake_mode={shake_mode!r}"
        )
    return shake_mode


def validate_range(value: Any, *, name: str) -> tuple:
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


def shake_drop_coefficients(
    residual: Any,
    *,
    alpha_range: tuple = (-1.0, 1.0),
    beta_range: tuple = (0.0, 1.0),
    shake_mode: str = "sample",
    seed: SeedLike = None,
) -> tuple:
    """Draws ShakeDrop's `alpha ~ U(alpha_range)` and `beta ~ U(beta_range)`, as float32.

    One uniform draw holds both, so they are independent for any seed. Under
    `tf.distribute` the replica id is folded into the draw, as for
    per-example gates (`backend.replica_uniform`).

    Args:
        residual: the tensor to be scaled; only its shape is used.
        alpha_range: `(low, high)` of the forward coefficient.
        beta_range: `(low, high)` of the backward coefficient.
        shake_mode: `"sample"`, one `alpha` and one `beta` per example, shape
            `[batch, 1, ..., 1]`; or `"element"`, one per element, the shape
            of `residual` (slow under XLA on CPU: Keras' uniform, TensorFlow's
            `alg="auto_select"`, took 1.3 s for 2M floats there, 15 ms in
            graph mode).
        seed: None, an int or a `keras.random.SeedGenerator`.

    Returns:
        `(alpha, beta)`, two float32 tensors of the same shape.
    """
    shake_mode = validate_shake_mode(shake_mode)
    if shake_mode == "sample":
        shape = (keras.ops.shape(residual)[0],) + (1,) * (len(residual.shape) - 1)
    else:
        shape = tuple(keras.ops.shape(residual))
    uniform = backend.replica_uniform((2,) + shape, seed)
    (alpha_low, alpha_high), (beta_low, beta_high) = alpha_range, beta_range
    alpha = alpha_low + (alpha_high - alpha_low) * uniform[0]
    beta = beta_low + (beta_high - beta_low) * uniform[1]
    return alpha, beta


def shake_drop_scales(gate: Any, alpha: Any, beta: Any) -> tuple:
    """ShakeDrop's training scales of the residual: `(b + alpha - b * alpha, b + beta - b * beta)`.

    The first multiplies the residual in the forward pass, the second its
    gradient in the backward pass (see `scale_with_gradient`). As `b` is 0
    or 1 they are selected, `1` where `b = 1` and `alpha` (`beta`) where
    `b = 0`, rather than computed: in floating point `1 + alpha - alpha` is
    not always 1, and a kept branch must be exactly a plain add.
    """
    kept = keras.ops.equal(gate, 1.0)
    forward = keras.ops.where(kept, 1.0, alpha)
    backward = keras.ops.where(kept, 1.0, beta)
    return forward, backward


def shake_drop_expected_scale(survival_probability: Any, alpha_range: tuple) -> Any:
    """ShakeDrop's inference scale, `E[b + alpha - b * alpha] = p + (1 - p) * E[alpha]`.

    `E[alpha] = (low + high) / 2`, so the scale is `p` for the default
    `alpha_range=(-1, 1)`. Works on a Python float (surgery folds it into a
    `Rescaling`) and on a scalar tensor or variable.
    """
    low, high = alpha_range
    mean_alpha = 0.5 * (low + high)
    return survival_probability + (1.0 - survival_probability) * mean_alpha


def scale_with_gradient(residual: Any, forward_scale: Any, backward_scale: Any) -> Any:
    """`forward_scale * residual`, whose gradient is `backward_scale` times the upstream one.

    Written as `forward * stop_gradient(r) + backward * (r - stop_gradient(r))`:
    the second term is exactly zero in the forward pass, so the value is
    exactly `forward * r`, and the gradient with respect to `r` is
    `backward` times the upstream gradient. Plain `keras.ops`, no custom
    gradient: it compiles with XLA, keeps the compute dtype (float16,
    bfloat16) and runs on every backend. The scales carry no gradient.
    """
    # PyTorch's `stop_gradient` takes tensors only (NumPy arrays are refused).
    residual, forward_scale, backward_scale = (
        keras.ops.convert_to_tensor(t) for t in (residual, forward_scale, backward_scale)
    )
    frozen = keras.ops.stop_gradient(residual)
    moving = keras.ops.subtract(residual, frozen)
    return keras.ops.add(
        keras.ops.multiply(keras.ops.stop_gradient(forward_scale), frozen),
        keras.ops.multiply(keras.ops.stop_gradient(backward_scale), moving),
    )


def shake_drop(
    shortcut: Any,
    residual: Any,
    survival_probability: Any,
    *,
    training: Optional[bool] = False,
    alpha_range: tuple = (-1.0, 1.0),
    beta_range: tuple = (0.0, 1.0),
    mode: str = "batch",
    shake_mode: str = "sample",
    seed: SeedLike = None,
) -> Any:
    """Adds a residual to its shortcut, scaled by ShakeDrop.

    Training computes `shortcut + (b + alpha - b * alpha) * residual` in the
    forward pass, and scales the residual's gradient by `b + beta - b * beta`
    in the backward pass; inference computes `shortcut + E[b + alpha - b *
    alpha] * residual = shortcut + (p + (1 - p) * E[alpha]) * residual`.
    `b ~ Bernoulli(p)`, `alpha ~ U(alpha_range)`, `beta ~ U(beta_range)`, all
    drawn in the graph. A kept branch (`b = 1`) is a plain residual add; a
    dropped one is multiplied by `alpha` (possibly negative) forward and its
    gradient by `beta` backward. Yamada et al., "ShakeDrop Regularization for
    Deep Residual Learning", arXiv 1802.02375.

    The defaults follow the reference implementation of the paper's PyramidNet
    (and its common PyTorch port): one `b` per call (`mode="batch"`) and one
    `alpha` and one `beta` per example (`shake_mode="sample"`).
    `mode="sample"` draws `b` per example; `shake_mode="element"` draws
    `alpha` and `beta` per element. A Python `p == 1` is an exact plain add
    in both phases. With `alpha_range=(0, 0)` the forward pass is stochastic
    depth's `b * residual` while the backward pass still lets a dropped
    branch learn, scaled by `beta` (the paper's other good setting).

    Args:
        shortcut: the identity or projected input of the block.
        residual: the output of the residual branch, same shape as `shortcut`.
        survival_probability: `p` in `[0, 1]`: a Python float (validated), or
            a scalar tensor or variable (a schedule can change it without a
            retrace; its value is not checked in the graph).
        training: True for the stochastic training form; False or None for
            the deterministic inference form.
        alpha_range: `(low, high)`, finite, `low <= high`: the forward scale
            of a dropped branch.
        beta_range: `(low, high)`, finite, `low <= high`: the backward scale
            of a dropped branch.
        mode: `"batch"` (one `b` per call) or `"sample"` (one per example).
        shake_mode: `"sample"` (one `alpha`, `beta` per example) or
            `"element"` (one per element).
        seed: None, an int or a `keras.random.SeedGenerator`. Inside a
            compiled custom training loop pass a `SeedGenerator`: an int seed
            is a stateless draw and gives the same draws at every call.

    Returns:
        A tensor of the shape of `shortcut`, in the dtype of the inputs.

    Example:

    ```python
    import keras
    import stochastic_depth_tf as sdt

    generator = keras.random.SeedGenerator(0)
    y = sdt.ops.shake_drop(x, branch(x), 0.5, training=True, seed=generator)
    ```
    """
    mode = validate_shake_drop_mode(mode)
    shake_mode = validate_shake_mode(shake_mode)
    alpha_range = validate_range(alpha_range, name="alpha_range")
    beta_range = validate_range(beta_range, name="beta_range")
    training = validate_training(training)
    seed = validate_seed(seed)
    shortcut, residual = check_pair([shortcut, residual])
    if _static_survival_probability(survival_probability, inverted=False) == 1.0:
        return keras.ops.add(shortcut, residual)
    dtype = residual.dtype
    if not training:
        probability = keras.ops.cast(survival_probability, "float32")
        scale = keras.ops.cast(shake_drop_expected_scale(probability, alpha_range), dtype)
        return keras.ops.add(shortcut, keras.ops.multiply(scale, residual))
    gate = bernoulli_gate(residual, survival_probability, mode=mode, seed=seed)
    alpha, beta = shake_drop_coefficients(
        residual,
        alpha_range=alpha_range,
        beta_range=beta_range,
        shake_mode=shake_mode,
        seed=_coefficient_seed(seed),
    )
    forward, backward = shake_drop_scales(gate, alpha, beta)
    scaled = scale_with_gradient(residual, keras.ops.cast(forward, dtype), keras.ops.cast(backward, dtype))
    return keras.ops.add(shortcut, scaled)


def _coefficient_seed(seed: SeedLike) -> SeedLike:
    """The seed of the `alpha`, `beta` draw, given the seed of the gate `b`.

    A generator (or None, Keras' global one) advances between the two draws.
    An int seed is stateless: with the same int the gate's uniform would be
    the first of the coefficients' uniforms, so `b` and `alpha` would be
    correlated; the coefficients get another int, derived from it.
    """
    if isinstance(seed, int):
        return (seed + 0x9E3779B9) % 2**32
    return seed
