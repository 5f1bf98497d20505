"""What every model builder writes once per residual block: the merge, the seed, the flags.

A residual block ends in one of three merges, `shortcut(x) + branch(x)`:

- a plain `keras.layers.Add` (no regularization, or survival probability 1);
- a `StochasticDepthBlock` around the branch and the shortcut, which skips
  the compute of a dropped branch (`skip_compute=True`);
- a merge layer on the two tensors, `[shortcut, residual]`: `StochasticDepth`
  (`skip_compute=False`), or `ShakeDrop`, which has no block form.

`cifar_resnet`, `pyramidnet` and `efficientnet` all merge through
`residual_block`, with the `StochasticDepthSettings` they validated, so the
three builders cannot drift apart.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import keras

from stochastic_depth_tf._settings import StochasticDepthSettings
from stochastic_depth_tf._validation import block_seed
from stochastic_depth_tf.layers import ShakeDrop, StochasticDepth, StochasticDepthBlock

Branch = Union[List[keras.layers.Layer], Tuple[keras.layers.Layer, ...], Callable[[Any], Any]]


class BlockNames(NamedTuple):
    """The names of the layers `residual_block` makes, one per possible merge."""

    add: str
    merge: str
    block: str
    branch: str
    shortcut: str
    branch_input: str

    @classmethod
    def from_prefix(cls, prefix: str, merge: str = "stochastic_depth") -> BlockNames:
        """`<prefix>add`, `<prefix><merge>`, `<prefix>stochastic_depth_block`, ..."""
        return cls(
            add=prefix + "add",
            merge=prefix + merge,
            block=prefix + "stochastic_depth_block",
            branch=prefix + "branch",
            shortcut=prefix + "shortcut",
            branch_input=prefix + "input",
        )


def residual_block(
    x: Any,
    branch: Branch,
    shortcut: Sequence[keras.layers.Layer] = (),
    *,
    names: BlockNames,
    survival_probability: Optional[float],
    settings: StochasticDepthSettings,
    index: int,
    shake_drop: Optional[Dict[str, Any]] = None,
) -> Any:
    """Applies one residual block to the Keras tensor `x`; returns its output.

    Args:
        x: the block input, a Keras tensor.
        branch: the residual branch, a list of layers applied in order, or a
            function from a Keras tensor to a Keras tensor (made into a
            functional model named `names.branch` for a block).
        shortcut: the layers of the shortcut, applied in order; empty for the
            identity. A block gets None, the one layer, or a `keras.Sequential`
            named `names.shortcut`.
        names: the names of the merge layers (`BlockNames`).
        survival_probability: None for the plain block (`keras.layers.Add`);
            else the block's survival probability.
        settings: the network's validated settings: with stochastic depth,
            `skip_compute=True` builds a `StochasticDepthBlock`, False a
            `StochasticDepth` merge layer; `mode` and `inverted` go to the
            layer, and `seed` as `_validation.block_seed` gives it.
        index: the block's number among the network's stochastic-depth
            blocks, from 0 (its seed's offset).
        shake_drop: None for stochastic depth; the keyword arguments of a
            `ShakeDrop` merge layer (`alpha_range`, ...) for ShakeDrop.

    Returns:
        `shortcut(x)` merged with `branch(x)`.
    """
    mode, inverted, seed = settings.mode, settings.inverted, block_seed(settings.seed, index)
    if survival_probability is not None and shake_drop is None and settings.skip_compute:
        return StochasticDepthBlock(
            _branch_layer(branch, x, names),
            shortcut=_shortcut_layer(shortcut, names),
            survival_probability=survival_probability,
            mode=mode,
            inverted=inverted,
            seed=seed,
            name=names.block,
        )(x)
    # The branch is built before the shortcut, as in the block, so both
    # builds draw the same initial weights under one global seed.
    residual = _apply(branch, x)
    identity = _apply(shortcut, x)
    if survival_probability is None:
        merge: keras.layers.Layer = keras.layers.Add(name=names.add)
    elif shake_drop is not None:
        merge = ShakeDrop(survival_probability, mode=mode, seed=seed, name=names.merge, **shake_drop)
    else:
        merge = StochasticDepth(survival_probability, mode=mode, inverted=inverted, seed=seed, name=names.merge)
    return merge([identity, residual])


def last_gamma_initializer(zero_init_residual: bool) -> str:
    """The `gamma_initializer` of a residual branch's last BatchNormalization.

    `"zeros"` with `zero_init_residual=True`: every block then starts as its
    shortcut (Goyal et al., 2017; torchvision's `zero_init_residual`).
    """
    return "zeros" if zero_init_residual else "ones"


def _apply(layers: Union[Branch, Sequence[keras.layers.Layer]], x: Any) -> Any:
    if callable(layers) and not isinstance(layers, (list, tuple)):
        return layers(x)
    for layer in layers:
        x = layer(x)
    return x


def _branch_layer(branch: Branch, x: Any, names: BlockNames) -> keras.layers.Layer:
    if isinstance(branch, (list, tuple)):
        return keras.Sequential(list(branch), name=names.branch)
    branch_input = keras.Input(tuple(x.shape[1:]), name=names.branch_input)
    return keras.Model(branch_input, branch(branch_input), name=names.branch)


def _shortcut_layer(layers: Sequence[keras.layers.Layer], names: BlockNames) -> Optional[keras.layers.Layer]:
    if not layers:
        return None
    if len(layers) == 1:
        return layers[0]
    return keras.Sequential(list(layers), name=names.shortcut)
