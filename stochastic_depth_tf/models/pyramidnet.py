"""The CIFAR PyramidNets of Han et al., regularized with ShakeDrop or stochastic depth."""

from __future__ import annotations

import math
import numbers
from typing import Any, List, Optional, Sequence, Tuple

import keras

from stochastic_depth_tf._settings import StochasticDepthSettings
from stochastic_depth_tf._validation import (
    MODES,
    SHAKE_DROP_MODES,
    validate_bool,
    validate_choice,
    validate_depth,
    validate_positive_int,
    validate_range,
    validate_shake_mode,
)
from stochastic_depth_tf.layers import ZeroPadShortcut
from stochastic_depth_tf.models import _residual

BLOCKS = ("basic", "bottleneck")
REGULARIZATIONS = ("shake_drop", "stochastic_depth", None)
STEM_FILTERS = 16


def pyramidnet(
    depth: int,
    alpha: float,
    num_classes: int = 10,
    block: str = "bottleneck",
    regularization: Optional[str] = "shake_drop",
    final_survival_probability: float = 0.5,
    distribution: str = "linear",
    mode: str = "batch",
    alpha_range: Sequence[float] = (-1.0, 1.0),
    beta_range: Sequence[float] = (0.0, 1.0),
    shake_mode: str = "sample",
    skip_compute: bool = True,
    seed: Optional[int] = None,
    input_shape: Sequence[int] = (32, 32, 3),
    classifier_activation: Optional[str] = "softmax",
    name: Optional[str] = None,
    inverted: bool = False,
    zero_init_residual: bool = False,
) -> keras.Model:
    """Builds the CIFAR PyramidNet, with ShakeDrop (the default) or stochastic depth.

    Han et al.'s additive PyramidNet ("Deep Pyramidal Residual Networks",
    CVPR 2017): a 3x3 convolution with 16 filters and BatchNormalization,
    three stages of `n` residual blocks whose branch widens by `alpha / 3n`
    channels at every block (block `k` has `round(16 + k * alpha / 3n)`,
    rounded half up from the running sum as the reference code does; a
    bottleneck block outputs 4 times that), then BatchNormalization, ReLU,
    global average pooling and a dense classifier. The blocks:

    - `"basic"`: BN - conv 3x3 - BN - ReLU - conv 3x3 - BN, `depth = 6n + 2`
      (PyramidNet-110: `n = 18`);
    - `"bottleneck"`: BN - conv 1x1 - BN - ReLU - conv 3x3 - BN - ReLU -
      conv 1x1 (4x) - BN, `depth = 9n + 2` (PyramidNet-272: `n = 30`).

    No ReLU after the addition. The shortcut has no weights: the first block
    of stages 2 and 3 halves the resolution with its strided 3x3 convolution
    and the shortcut with a 2x2 average pooling (the paper's choice; the
    CIFAR ResNets of `cifar_resnet` subsample instead), and every shortcut
    is zero-padded to the branch's channels (`sdt.layers.ZeroPadShortcut`).

    The ShakeDrop paper's network is the default: bottleneck blocks, each
    residual merged by `sdt.ShakeDrop`, with the linear rule `p_l = 1 - (l /
    L) * (1 - p_L)` over the `L = 3n` blocks and `p_L = 0.5` (Yamada et al.,
    arXiv 1802.02375: PyramidNet-272, `alpha=200`). `regularization=
    "stochastic_depth"` puts stochastic depth on the same blocks (a
    `StochasticDepthBlock` that skips dropped branches, or with
    `skip_compute=False` a `StochasticDepth` merge layer), and `None` or
    `final_survival_probability=1.0` gives the plain PyramidNet, with
    `keras.layers.Add`. The three have the same weights.

    Args:
        depth: `6n + 2` for basic blocks (110), `9n + 2` for bottleneck
            blocks (164, 200, 236, 272).
        alpha: the widening factor, the number of channels added over all
            blocks, a non-negative number (48, 84, 200, 270 in the papers).
        num_classes: classes of the classifier.
        block: `"bottleneck"` or `"basic"`.
        regularization: `"shake_drop"`, `"stochastic_depth"` or None.
        final_survival_probability: `p_L` in `[0, 1]`.
        distribution: `"linear"` (the papers' rule) or `"uniform"`.
        mode: `"batch"` or `"sample"`: one gate `b` per call or per example.
        alpha_range: ShakeDrop's forward coefficient range.
        beta_range: ShakeDrop's backward coefficient range.
        shake_mode: ShakeDrop's `"sample"` or `"element"` coefficients.
        skip_compute: with stochastic depth, True builds
            `StochasticDepthBlock`s, False `StochasticDepth` merge layers.
        seed: None, or an int from which block `l`, counted from 0, gets
            seed `seed + l` (as `sdt.apply_stochastic_depth` counts). The
            initial weights come from Keras' global seed
            (`keras.utils.set_random_seed`), as in every Keras model.
        input_shape: channels-last image shape, `(32, 32, 3)` for CIFAR.
        classifier_activation: the activation of the last layer; None for
            logits.
        name: the model's name; `"pyramidnet{depth}_alpha{alpha}"` by default.
        inverted: the scaling convention of stochastic depth: False for the
            paper's (`x + p * f(x)` at inference), True for the inverted one
            (`b / p` in training). ShakeDrop scales its branch at inference
            and has no inverted form: True with ShakeDrop is refused.
        zero_init_residual: start the scale (gamma) of the last
            BatchNormalization of every residual branch at 0, so every block
            starts as its shortcut (Goyal et al., 2017; torchvision's
            `zero_init_residual`).

    Returns:
        A functional `keras.Model` from images to class scores.

    Example:

    ```python
    import stochastic_depth_tf as sdt

    model = sdt.models.pyramidnet(depth=272, alpha=200)            # ShakeDrop, 26.0M parameters
    small = sdt.models.pyramidnet(depth=20, alpha=48, block="basic", input_shape=(16, 16, 3))
    ```
    """
    validate_choice(block, BLOCKS, name="block")
    blocks_per_stage = _validate_depth(depth, block)
    alpha = _validate_alpha(alpha)
    validate_choice(regularization, REGULARIZATIONS, name="regularization")
    zero_init_residual = validate_bool(zero_init_residual, name="zero_init_residual")
    num_classes = validate_positive_int(num_classes, name="num_classes")
    modes = SHAKE_DROP_MODES if regularization == "shake_drop" else MODES
    settings = StochasticDepthSettings(
        final_survival_probability, distribution, mode, inverted, seed, skip_compute, modes=modes
    )
    shake_drop = None
    if regularization == "shake_drop":
        if settings.inverted:
            raise ValueError(
                "Invalid value received for argument `inverted`. Expected False "
                "with regularization='shake_drop' (ShakeDrop scales its branch at "
                "inference, as the paper does, and has no inverted form; inverted=True "
                "is for regularization='stochastic_depth'). Received: inverted=True"
            )
        shake_drop = {
            "alpha_range": validate_range(alpha_range, name="alpha_range"),
            "beta_range": validate_range(beta_range, name="beta_range"),
            "shake_mode": validate_shake_mode(shake_mode),
        }
    num_blocks = 3 * blocks_per_stage
    probabilities = settings.survival_probabilities(num_blocks)
    plain = regularization is None or all(p == 1.0 for p in probabilities)
    expansion = 4 if block == "bottleneck" else 1

    inputs = keras.Input(tuple(input_shape))
    x = _conv(STEM_FILTERS, 3, 1, "stem_conv")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)

    channels = STEM_FILTERS
    for index, width in enumerate(_widths(num_blocks, alpha)):
        stage, position = divmod(index, blocks_per_stage)
        strides = 2 if stage > 0 and position == 0 else 1
        prefix = f"stage{stage + 1}_block{position + 1}_"
        filters = width * expansion
        x = _residual.residual_block(
            x,
            _branch_layers(block, width, filters, strides, prefix, zero_init_residual),
            _shortcut_layers(channels, filters, strides, prefix),
            names=_residual.BlockNames.from_prefix(prefix, merge=regularization or "add"),
            survival_probability=None if plain else probabilities[index],
            settings=settings,
            index=index,
            shake_drop=shake_drop,
        )
        channels = filters

    x = keras.layers.BatchNormalization(name="final_bn")(x)
    x = keras.layers.ReLU(name="final_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, activation=classifier_activation, name="predictions")(x)
    return keras.Model(inputs, outputs, name=name or f"pyramidnet{depth}_alpha{alpha:g}")


def pyramidnet_widths(depth: int, alpha: float, block: str = "bottleneck") -> List[int]:
    """The branch width of every block of a PyramidNet, from the first to the last.

    Block `k = 1 .. 3n` has `16 + k * alpha / 3n` channels, accumulated as a
    running float sum and rounded half up, as the reference implementation
    does (a bottleneck block's output has 4 times that). The last width is
    the network's output feature dimension for basic blocks, a quarter of it
    for bottleneck blocks.

    Example:

    ```python
    import stochastic_depth_tf as sdt

    sdt.models.pyramidnet_widths(110, 48, "basic")[-1]  # 64, the paper's output feature dimension
    ```
    """
    validate_choice(block, BLOCKS, name="block")
    return _widths(3 * _validate_depth(depth, block), _validate_alpha(alpha))


def _widths(num_blocks: int, alpha: float) -> List[int]:
    """`pyramidnet_widths` of a checked block count and `alpha`."""
    step = alpha / num_blocks
    widths, running = [], float(STEM_FILTERS)
    for _ in range(num_blocks):
        running += step
        widths.append(int(math.floor(running + 0.5)))
    return widths


def _validate_depth(depth: Any, block: str) -> int:
    """The blocks per stage of a checked `depth`: `6n + 2` for basic blocks, `9n + 2` for bottleneck ones."""
    multiple, examples = (6, "20, 56, 110") if block == "basic" else (9, "164, 200, 236, 272")
    return validate_depth(depth, multiple=multiple, examples=f"for {block} blocks ({examples})")


def _validate_alpha(alpha: Any) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not math.isfinite(alpha) or alpha < 0:
        raise ValueError(
            "Invalid value received for argument `alpha`. Expected a "
            "non-negative number (the channels added over all blocks, e.g. 48 "
            f"or 200). Received: alpha={alpha!r}"
        )
    return float(alpha)


def _conv(filters: int, kernel_size: int, strides: int, name: str) -> keras.layers.Layer:
    # He et al.'s initialization as the reference code writes it: normal with
    # variance 2 / (kernel area * output channels). A new initializer per
    # layer: an unseeded instance draws its seed once, when made, so one
    # instance shared by every convolution gave same-shape kernels the same
    # values, and (made at import) the same weights whatever the global seed.
    initializer = keras.initializers.VarianceScaling(2.0, mode="fan_out", distribution="untruncated_normal")
    return keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", use_bias=False, kernel_initializer=initializer, name=name
    )


def _branch_layers(
    block: str, width: int, filters: int, strides: int, prefix: str, zero_init_residual: bool
) -> List[keras.layers.Layer]:
    """The pyramidal residual branch: BN first, no ReLU at the end.

    BN, conv, then (BN, ReLU, conv) for each further convolution, then the
    last BN: two 3x3 convolutions (basic, the first strided) or 1x1, 3x3
    (strided), 1x1 to `filters` (bottleneck).
    """
    if block == "basic":
        convolutions = [(width, 3, strides), (width, 3, 1)]
    else:
        convolutions = [(width, 1, 1), (width, 3, strides), (filters, 1, 1)]
    layers: List[keras.layers.Layer] = [keras.layers.BatchNormalization(name=prefix + "bn1")]
    for index, (channels, kernel_size, stride) in enumerate(convolutions, start=1):
        if index > 1:
            layers.append(keras.layers.BatchNormalization(name=f"{prefix}bn{index}"))
            layers.append(keras.layers.ReLU(name=f"{prefix}relu{index - 1}"))
        layers.append(_conv(channels, kernel_size, stride, f"{prefix}conv{index}"))
    last_gamma = _residual.last_gamma_initializer(zero_init_residual)
    layers.append(
        keras.layers.BatchNormalization(gamma_initializer=last_gamma, name=f"{prefix}bn{len(convolutions) + 1}")
    )
    return layers


def _shortcut_layers(channels: int, filters: int, strides: int, prefix: str) -> Tuple[keras.layers.Layer, ...]:
    """Average pooling when the block downsamples, zero channels when it widens; () for identity."""
    layers: List[keras.layers.Layer] = []
    if strides > 1:
        layers.append(keras.layers.AveragePooling2D(strides, padding="same", name=prefix + "shortcut_pool"))
    if filters != channels:
        layers.append(ZeroPadShortcut(filters, strides=1, name=prefix + "shortcut_pad"))
    return tuple(layers)
