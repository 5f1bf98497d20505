"""The stochastic depth maths, written once with `keras.ops` and `keras.random`.

Every layer, block and builder of the package calls these functions; nothing
else in the package computes a gate or a scale. The public functional forms,
`stochastic_depth` and `shake_drop`, check their arguments
(`stochastic_depth_tf._validation`) and call `gated_add` and
`shake_drop_add`, which the layers call directly on the configuration they
checked once; the helpers below them trust their arguments, except the mode
of the two that take only some of the modes (`bernoulli_gate`, `kept_rows`),
which refuse the others through `_validation.validate_choice`.

For a residual block `H = shortcut + f(x)` with survival probability `p` and a
gate `b ~ Bernoulli(p)`:

| phase     | `inverted=False` (paper)  | `inverted=True` (timm, EfficientNet) |
|-----------|---------------------------|--------------------------------------|
| training  | `shortcut + b * residual` | `shortcut + (b / p) * residual`      |
| inference | `shortcut + p * residual` | `shortcut + residual`                |

Both conventions have the same expected output in training and inference.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import keras
import numpy as np

from stochastic_depth_tf import backend

# The mode lists stay importable from here: `sdt.ops.MODES` is public API.
from stochastic_depth_tf._validation import (  # noqa: F401  (re-exported, not used here)
    MODES,
    SHAKE_DROP_MODES,
    SHAKE_MODES,
    SeedLike,
    check_pair,
    static_survival_probability,
    validate_choice,
    validate_inverted,
    validate_mode,
    validate_range,
    validate_seed,
    validate_shake_drop_mode,
    validate_shake_mode,
    validate_training,
)


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
    validate_choice(
        mode,
        ("batch", "sample"),
        name="mode",
        expected="'batch' or 'sample' (a Bernoulli gate; `subset_gate` draws the 'subset' gate)",
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
        return max(count, 1) if float(survival_probability) > 0 else 0
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
    if mode == "subset":
        return subset_gate(residual, survival_probability, seed=seed)
    return bernoulli_gate(residual, survival_probability, mode=mode, seed=seed)


def keep_probability(residual: Any, survival_probability: Any, *, mode: str = "batch") -> Any:
    """The probability that an example keeps the branch: `p`, or `k / batch` for `"subset"`.

    The inverted convention divides by it, so that the training output's
    expectation is exactly the inference output (DINOv2 scales by
    `batch / k`).
    """
    if mode != "subset":
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
) -> Tuple[Any, Any]:
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
    validate_choice(mode, ("sample", "subset"), name="mode", expected="a per-example mode, 'sample' or 'subset'")
    if mode == "sample":
        gate = bernoulli_gate(inputs, survival_probability, mode="sample", seed=seed)
        indices = keras.ops.nonzero(keras.ops.reshape(gate, (-1,)))[0]
        return keras.ops.cast(indices, "int32"), keras.ops.cast(survival_probability, "float32")
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

    x = keras.random.normal((8, 16), seed=1)
    branch = keras.layers.Dense(16)
    generator = keras.random.SeedGenerator(0)
    y = sdt.ops.stochastic_depth(
        x, branch(x), 0.8, training=True, mode="sample", seed=generator
    )
    ```
    """
    settings = {"mode": validate_mode(mode), "inverted": validate_inverted(inverted)}
    return _checked_add(gated_add, shortcut, residual, survival_probability, training, seed, settings)


def gated_add(
    shortcut: Any,
    residual: Any,
    survival_probability: Any,
    *,
    training: bool,
    mode: str,
    inverted: bool,
    seed: SeedLike,
) -> Any:
    """The maths of `stochastic_depth`, on arguments already checked.

    `StochasticDepth` checks its configuration once, when it is made, and
    its inputs with `check_pair` at each call, then calls this directly.
    Arguments and result as for `stochastic_depth`, with `training` a bool
    and no exact-add shortcut for a Python `p == 1`.
    """
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


# ShakeDrop (Yamada et al., "ShakeDrop Regularization for Deep Residual
# Learning", arXiv 1802.02375): the stochastic depth gate generalized to a
# random forward scale and a different random backward scale.


def shake_drop_coefficients(
    residual: Any,
    *,
    alpha_range: Sequence[float] = (-1.0, 1.0),
    beta_range: Sequence[float] = (0.0, 1.0),
    shake_mode: str = "sample",
    seed: SeedLike = None,
) -> Tuple[Any, Any]:
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
    if shake_mode == "sample":
        shape = (keras.ops.shape(residual)[0],) + (1,) * (len(residual.shape) - 1)
    else:
        shape = tuple(keras.ops.shape(residual))
    uniform = backend.replica_uniform((2,) + shape, seed)
    (alpha_low, alpha_high), (beta_low, beta_high) = alpha_range, beta_range
    alpha = alpha_low + (alpha_high - alpha_low) * uniform[0]
    beta = beta_low + (beta_high - beta_low) * uniform[1]
    return alpha, beta


def shake_drop_scales(gate: Any, alpha: Any, beta: Any) -> Tuple[Any, Any]:
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


def shake_drop_expected_scale(survival_probability: Any, alpha_range: Sequence[float]) -> Any:
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
    alpha_range: Sequence[float] = (-1.0, 1.0),
    beta_range: Sequence[float] = (0.0, 1.0),
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
        shortcut: as for `stochastic_depth`.
        residual: as for `stochastic_depth`, same shape as `shortcut`.
        survival_probability: `p` in `[0, 1]`, a Python float or a scalar
            tensor or variable, as for `stochastic_depth`.
        training: as for `stochastic_depth`: True for the stochastic form.
        alpha_range: `(low, high)`, finite, `low <= high`: the forward scale
            of a dropped branch.
        beta_range: `(low, high)`, finite, `low <= high`: the backward scale
            of a dropped branch.
        mode: `"batch"` (one `b` per call) or `"sample"` (one per example).
        shake_mode: `"sample"` (one `alpha`, `beta` per example) or
            `"element"` (one per element).
        seed: as for `stochastic_depth` (an int seed gives the same draws
            at every call).

    Returns:
        A tensor of the shape of `shortcut`, in the dtype of the inputs.

    Example:

    ```python
    import keras
    import stochastic_depth_tf as sdt

    x = keras.random.normal((8, 16), seed=1)
    residual = keras.layers.Dense(16)(x)
    generator = keras.random.SeedGenerator(0)
    y = sdt.ops.shake_drop(x, residual, 0.5, training=True, seed=generator)
    # The paper's other setting: stochastic depth's forward pass, ShakeDrop's backward pass.
    z = sdt.ops.shake_drop(x, residual, 0.5, training=True, alpha_range=(0.0, 0.0), seed=generator)
    ```
    """
    settings = {
        "mode": validate_shake_drop_mode(mode),
        "shake_mode": validate_shake_mode(shake_mode),
        "alpha_range": validate_range(alpha_range, name="alpha_range"),
        "beta_range": validate_range(beta_range, name="beta_range"),
    }
    return _checked_add(shake_drop_add, shortcut, residual, survival_probability, training, seed, settings)


def _checked_add(
    add: Callable[..., Any],
    shortcut: Any,
    residual: Any,
    survival_probability: Any,
    training: Any,
    seed: Any,
    settings: Dict[str, Any],
) -> Any:
    """`add` (`gated_add`, `shake_drop_add`) called by its functional form, with the checks both forms make.

    `settings` are the form's own arguments, already checked; this checks
    `training`, `seed`, the pair and a Python `p` (in `[0, 1]`, above 0
    when inverted), and makes a Python `p == 1` an exact plain add.
    """
    training = validate_training(training)
    seed = validate_seed(seed, generator=True)
    shortcut, residual = check_pair([shortcut, residual])
    if static_survival_probability(survival_probability, inverted=settings.get("inverted", False)) == 1.0:
        return keras.ops.add(shortcut, residual)
    return add(shortcut, residual, survival_probability, training=training, seed=seed, **settings)


def shake_drop_add(
    shortcut: Any,
    residual: Any,
    survival_probability: Any,
    *,
    training: bool,
    alpha_range: Sequence[float],
    beta_range: Sequence[float],
    mode: str,
    shake_mode: str,
    seed: SeedLike,
) -> Any:
    """The maths of `shake_drop`, on arguments already checked (as `ShakeDrop` calls it).

    Arguments and result as for `shake_drop`, with `training` a bool and no
    exact-add shortcut for a Python `p == 1`.
    """
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
    correlated; the coefficients get another int, derived from it, kept
    below 2**31: Keras before 3.11 hands an int seed to PyTorch as int32.
    """
    if isinstance(seed, int):
        return (seed + 0x9E3779B9) % 2**31
    return seed
