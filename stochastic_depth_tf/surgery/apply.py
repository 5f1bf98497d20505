"""`apply_stochastic_depth`: every residual add of a functional model made a `StochasticDepth`."""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict, List, Optional, Sequence

import keras

from stochastic_depth_tf._validation import (
    block_seed,
    validate_bool,
    validate_choice,
    validate_inverted,
    validate_mode,
    validate_seed,
    validate_survival_probability,
)
from stochastic_depth_tf.layers.stochastic_depth import StochasticDepth
from stochastic_depth_tf.schedules import DISTRIBUTIONS, survival_probabilities
from stochastic_depth_tf.surgery.graph import ResidualMerge, check_functional, producer_node, residual_merges
from stochastic_depth_tf.surgery.rebuild import Rebuild, rebuild


def apply_stochastic_depth(
    model: keras.Model,
    final_survival_probability: float = 0.5,
    distribution: str = "linear",
    mode: str = "batch",
    inverted: bool = False,
    seed: Optional[int] = None,
    replace_drop_connect: bool = True,
) -> keras.Model:
    """Returns a copy of a functional model with stochastic depth on every residual add.

    Every residual add of `model` becomes a `stochastic_depth_tf.StochasticDepth`
    called as `[shortcut, residual]`: in training `shortcut + b * residual`
    with `b ~ Bernoulli(p_l)`, at inference `shortcut + p_l * residual` (or,
    with `inverted=True`, `(b / p_l)` in training and a plain add at
    inference); Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016.
    Block `l = 1 .. L`, counted in topological order (the order the blocks are
    applied), gets `p_l = 1 - (l / L) * (1 - p_L)` with
    `distribution="linear"` (the paper's rule: the last block gets `p_L`), or
    `p_L` everywhere with `distribution="uniform"`.

    A residual add is a `keras.layers.Add` with exactly two inputs, or the op
    node that `x + y` / `keras.ops.add(x, y)` leaves in the graph (ConvNeXt
    writes its residuals so), whose two inputs have the same shape and are in
    a residual relation. Which input is the shortcut is read from the graph,
    never from the argument order (keras.applications ResNet adds
    `[shortcut, x]`, EfficientNet `[x, inputs]`): the nearest common ancestor
    of the two inputs is the block input, and the shortcut is the input with
    the shorter path back to it. It is the block input itself in an identity
    block, and one projection (convolution and normalization, or pooling)
    away from it in a projection block. Adds with more than two inputs, of
    inputs with no common ancestor (say, two model inputs), or of two paths of
    equal length are left as they are. Residual adds inside nested functional
    models are replaced too, numbered where the nested model is called.

    Keras' EfficientNet puts a drop-connect `Dropout(noise_shape=(None, 1, 1,
    1))` on the residual just before the add, which is per-example inverted
    stochastic depth already. With `replace_drop_connect=True` that dropout is
    removed (its input becomes the residual) so blocks are not dropped twice;
    with False it is kept. ConvNeXt's own stochastic depth (its private
    `StochasticDepth` layer when built with `drop_path_rate > 0`, a linear
    `Activation` otherwise) is left alone: build it with the default
    `drop_path_rate=0.0` before surgery.

    The new model is a copy: every layer is re-created from its config and
    given a copy of the original's weights (BatchNormalization statistics
    included), so the two models are independent. Layers that cannot be
    re-created from their config and hold no state (a `Lambda` of a Python
    lambda, say) are shared, which is harmless as they hold nothing to train.
    A compiled model's compile config is carried over (not the optimizer's
    state). With `final_survival_probability=1.0` the new model computes
    exactly what the original does.

    Surgery writes merge layers, never `StochasticDepthBlock`s, so the new
    model computes every branch (in any mode). A block needs its branch as
    one layer; moving a keras.applications branch into a nested model would
    change its layers' paths and the order of `get_weights()`, and the
    point of surgery is a model that still loads the original's weight files
    and `set_weights`. To skip compute, build the network on blocks
    (`stochastic_depth_tf.models`, or `StochasticDepthBlock` in your own).

    Args:
        model: a functional `keras.Model` (built with `keras.Model(inputs,
            outputs)`, as every keras.applications model is), with at least
            one residual add.
        final_survival_probability: `p_L` in `[0, 1]`: the last block's
            survival probability with `"linear"`, every block's with
            `"uniform"`. Must be greater than 0 with `inverted=True`.
        distribution: `"linear"` (the paper's decay) or `"uniform"`.
        mode: `"batch"` (one gate per call, the paper), `"sample"` (one gate
            per example, as Keras' EfficientNet drop-connect and timm) or
            `"subset"` (a fixed number of kept examples, DINOv2).
        inverted: False for the paper's scaling at inference, True for the
            inverted scaling in training.
        seed: None or a non-negative int. With an int, the `l`-th layer (from
            0) gets the seed `seed + l`, so runs are reproducible and the
            layers draw different gates; with None every layer is unseeded.
        replace_drop_connect: whether to remove an EfficientNet-style
            drop-connect `Dropout` (noise shape 1 on every axis but the batch)
            found directly on a residual branch.

    Returns:
        A new functional `keras.Model`, with the name of `model`; of
        `model`'s own class when that class is built as `cls(inputs,
        outputs)` (the rule of `keras.models.clone_model`, which rebuilds it).

    Raises:
        TypeError: `model` is not a `keras.Model`; `seed`, `inverted`,
            `replace_drop_connect` or `final_survival_probability` has the
            wrong type; a layer that holds weights cannot be re-created from
            its config.
        ValueError: `model` is Sequential, subclassed, or has no residual
            add; a bad `distribution`, `mode`, `seed` or
            `final_survival_probability`.

    Example:

    ```python
    import keras
    import stochastic_depth_tf as sdt

    base = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=10)
    model = sdt.apply_stochastic_depth(base, final_survival_probability=0.5, seed=0)
    # 16 StochasticDepth layers, 0.96875, 0.9375, ..., 0.5 in block order
    ```
    """
    check_functional(model)
    inverted = validate_inverted(inverted)
    mode = validate_mode(mode)
    final_survival_probability = validate_survival_probability(
        final_survival_probability, inverted=inverted, name="final_survival_probability"
    )
    validate_choice(distribution, tuple(DISTRIBUTIONS), name="distribution")
    seed = validate_seed(seed)
    replace_drop_connect = validate_bool(replace_drop_connect, name="replace_drop_connect")

    return _apply_with_probabilities(
        model,
        lambda adds: survival_probabilities(len(adds), final_survival_probability, distribution),
        mode=mode,
        inverted=inverted,
        seed=seed,
        replace_drop_connect=replace_drop_connect,
    )


def _apply_with_probabilities(
    model: keras.Model,
    probabilities_of: Callable[[List[ResidualMerge]], Sequence[float]],
    *,
    mode: str,
    inverted: bool,
    seed: Optional[int],
    replace_drop_connect: bool,
) -> keras.Model:
    """`apply_stochastic_depth` with validated settings and one survival probability per add.

    `probabilities_of` gets the residual adds in block order and returns their
    survival probabilities (`stochastic_depth_tf.hub` keeps a KerasHub
    EfficientNet's own drop-connect rates with it).
    """
    adds = [merge for merge in residual_merges(model) if merge.is_add]
    if not adds:
        raise ValueError(
            "Invalid value received for argument `model`. Expected a "
            "functional keras.Model with at least one residual add (a "
            "keras.layers.Add or `x + y` of exactly two inputs, a shortcut and "
            "a branch computed from it). Received: model "
            f"'{model.name}' has none"
        )
    probabilities = list(probabilities_of(adds))
    replaced = {id(add.node.operation) for add in adds}
    names: Dict[int, _NameScope] = {}
    replacements = {}
    for index, (add, probability) in enumerate(zip(adds, probabilities)):
        if id(add.model) not in names:
            names[id(add.model)] = _NameScope(layer.name for layer in add.model.layers if id(layer) not in replaced)
        operation = add.node.operation
        # An add's residual is never None (only a block's is): `adds` holds adds.
        residual: Any = add.residual
        if replace_drop_connect:
            residual = _before_drop_connect(residual)
        replacements[id(add.node)] = functools.partial(
            _stochastic_depth,
            add=add,
            residual=residual,
            survival_probability=probability,
            mode=mode,
            inverted=inverted,
            seed=block_seed(seed, index),
            name=names[id(add.model)].unique(operation.name),
            # Keep the Add's dtype policy (mixed precision); an op node has
            # none, so compute in the dtype it added in.
            dtype=(
                operation.dtype_policy
                if isinstance(operation, keras.layers.Layer)
                else keras.backend.standardize_dtype(residual.dtype)
            ),
        )
    return rebuild(model, replacements)


def _stochastic_depth(node: Any, state: Rebuild, *, add: ResidualMerge, residual: Any, **config: Any) -> Any:
    """The `Replacement` of a residual add: a `StochasticDepth` called as `[shortcut, residual]`.

    A scaled merge's `residual_scale` (`x + s * branch`) goes on the residual
    first, as a `keras.layers.Rescaling` named `<name>_residual_scale`.
    """
    residual = state.tensor(residual)
    if add.residual_scale != 1.0:
        residual = keras.layers.Rescaling(
            add.residual_scale, name=f"{config['name']}_residual_scale", dtype=config["dtype"]
        )(residual)
    return StochasticDepth(**config)([state.tensor(add.shortcut), residual])


def _before_drop_connect(residual: keras.KerasTensor) -> keras.KerasTensor:
    """The input of the EfficientNet-style drop-connect `Dropout` producing `residual`, if one does."""
    node = producer_node(residual)
    if _drop_connect(residual) is None:
        return residual
    return node.input_tensors[0]


def _drop_connect(residual: keras.KerasTensor) -> Optional[keras.layers.Dropout]:
    """The EfficientNet-style drop-connect `Dropout` producing `residual`, or None."""
    layer = producer_node(residual).operation
    if type(layer) is not keras.layers.Dropout or layer.noise_shape is None:
        return None
    noise_shape = tuple(layer.noise_shape)
    if len(noise_shape) != len(residual.shape) or any(size != 1 for size in noise_shape[1:]):
        return None
    return layer


def _drop_connect_rate(add: ResidualMerge) -> float:
    """The rate of the drop-connect `Dropout` on a residual add's branch, 0 if it has none."""
    layer = _drop_connect(add.residual) if add.residual is not None else None
    return 0.0 if layer is None else float(layer.rate)


class _NameScope:
    """Hands out layer names unique within one model."""

    def __init__(self, taken: Any) -> None:
        self.taken = set(taken)

    def unique(self, name: str) -> str:
        candidate, suffix = name, 1
        while candidate in self.taken:
            candidate = f"{name}_{suffix}"
            suffix += 1
        self.taken.add(candidate)
        return candidate
