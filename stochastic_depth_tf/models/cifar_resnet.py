"""The CIFAR ResNets of the stochastic depth paper, depth 6n + 2."""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple, Type

import keras

from stochastic_depth_tf._settings import StochasticDepthSettings
from stochastic_depth_tf._validation import validate_bool, validate_choice, validate_depth, validate_positive_int
from stochastic_depth_tf.layers import ZeroPadShortcut
from stochastic_depth_tf.models import _residual

SHORTCUTS = ("zero_pad", "projection")
STAGE_FILTERS = (16, 32, 64)
# The rank of `input_shape` (spatial axes and channels) picks the convolution
# and the pooling: 2 for sequences such as MNIST-1D, 3 for images.
_LAYERS_BY_INPUT_RANK = {
    2: (keras.layers.Conv1D, keras.layers.GlobalAveragePooling1D),
    3: (keras.layers.Conv2D, keras.layers.GlobalAveragePooling2D),
}


def cifar_resnet(
    depth: int = 110,
    num_classes: int = 10,
    final_survival_probability: float = 0.5,
    distribution: str = "linear",
    mode: str = "batch",
    skip_compute: bool = True,
    shortcut: str = "zero_pad",
    inverted: bool = False,
    seed: Optional[int] = None,
    input_shape: Sequence[int] = (32, 32, 3),
    classifier_activation: Optional[str] = "softmax",
    name: Optional[str] = None,
    zero_init_residual: bool = False,
) -> keras.Model:
    """Builds the paper's CIFAR ResNet with stochastic depth.

    He et al.'s CIFAR ResNet as the stochastic depth paper trains it (Huang
    et al., 2016, section 4): a 3x3 convolution with 16 filters, three stages
    of `n = (depth - 2) / 6` basic blocks with 16, 32 and 64 filters (conv
    3x3 - BN - ReLU - conv 3x3 - BN, added to the shortcut, then ReLU), global
    average pooling and a dense classifier. ResNet-110 has 54 blocks.

    Block `l` of `L = 3n` gets its survival probability from `distribution`:
    `"linear"` is the paper's rule `p_l = 1 - (l / L) * (1 - p_L)`,
    `"uniform"` gives every block `p_L`. With `final_survival_probability=1.0`
    the network is the plain ResNet, with `keras.layers.Add`.

    The same network in one dimension, for sequences (MNIST-1D: Greydanus,
    "Scaling down deep learning with MNIST-1D", ICML 2024), comes from a
    rank-2 `input_shape` `(length, channels)`: every 3x3 convolution becomes
    a `Conv1D` of width 3, the 1x1 projections width 1, the zero-padded
    shortcut subsamples the one axis, and the pooling is
    `GlobalAveragePooling1D`. Depth, stages, widths and blocks are unchanged.

    Args:
        depth: `6n + 2`: 20, 32, 44, 56, 110, 1202, ...
        num_classes: classes of the classifier.
        final_survival_probability: `p_L` in `[0, 1]`.
        distribution: `"linear"` or `"uniform"`.
        mode: `"batch"` or `"sample"` gates.
        skip_compute: True builds the blocks with `StochasticDepthBlock`,
            which skips the compute of dropped blocks in batch-mode training;
            False puts a `StochasticDepth` merge layer where the `Add` was.
        shortcut: at the two stage transitions (stride 2, channels doubled),
            `"zero_pad"` for the paper's parameter-free subsampling with
            zero-padded channels (option A of He et al.), or `"projection"`
            for a 1x1 strided convolution with BatchNormalization (option B).
        inverted: the scaling convention of every stochastic-depth layer.
        seed: None, or an int from which block `l`, counted from 0, gets
            seed `seed + l` (as `sdt.apply_stochastic_depth` counts).
        input_shape: channels-last input shape: `(height, width, channels)`
            for images (`(32, 32, 3)` for CIFAR), or `(length, channels)` for
            the one-dimensional network (`(40, 1)` for MNIST-1D).
        classifier_activation: the activation of the last layer; None for
            logits.
        name: the model's name; `"cifar_resnet{depth}"` by default
            (`"cifar_resnet{depth}_1d"` in one dimension).
        zero_init_residual: start the scale (gamma) of the last
            BatchNormalization of every residual branch at 0, so every block
            starts as its shortcut (Goyal et al., 2017; torchvision's
            `zero_init_residual`).

    Returns:
        A functional `keras.Model` from images (or sequences) to class scores.

    Example:

    ```python
    import stochastic_depth_tf as sdt

    model = sdt.models.cifar_resnet(depth=20, final_survival_probability=0.5)
    sequences = sdt.models.cifar_resnet(depth=20, input_shape=(40, 1))  # MNIST-1D
    ```
    """
    blocks_per_stage = validate_depth(depth, multiple=6, examples="(20, 32, 44, 56, 110, 1202)")
    settings = StochasticDepthSettings(final_survival_probability, distribution, mode, inverted, seed, skip_compute)
    zero_init_residual = validate_bool(zero_init_residual, name="zero_init_residual")
    num_classes = validate_positive_int(num_classes, name="num_classes")
    conv, pooling = _layers_for(input_shape)
    validate_choice(shortcut, SHORTCUTS, name="shortcut")
    probabilities = settings.survival_probabilities(3 * blocks_per_stage)
    plain = all(p == 1.0 for p in probabilities)

    inputs = keras.Input(tuple(input_shape))
    x = conv(16, 3, padding="same", use_bias=False, kernel_initializer="he_normal", name="stem_conv")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)

    index = 0
    for stage, filters in enumerate(STAGE_FILTERS):
        for block in range(blocks_per_stage):
            strides = 2 if stage > 0 and block == 0 else 1
            prefix = f"stage{stage + 1}_block{block + 1}_"
            # The shortcut's layers are made first: an unseeded initializer
            # draws its seed when made, so the order fixes the initial weights.
            projection = [_shortcut_layer(shortcut, conv, filters, strides, prefix)] if strides > 1 else []
            x = _residual.residual_block(
                x,
                _branch_layers(conv, filters, strides, prefix, zero_init_residual),
                projection,
                names=_residual.BlockNames.from_prefix(prefix),
                survival_probability=None if plain else probabilities[index],
                settings=settings,
                index=index,
            )
            x = keras.layers.ReLU(name=prefix + "out")(x)
            index += 1

    x = pooling(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, activation=classifier_activation, name="predictions")(x)
    default_name = f"cifar_resnet{depth}" if conv is keras.layers.Conv2D else f"cifar_resnet{depth}_1d"
    return keras.Model(inputs, outputs, name=name or default_name)


def _layers_for(input_shape: Any) -> Tuple[Type[keras.layers.Layer], Type[keras.layers.Layer]]:
    """The convolution and pooling classes for a channels-last `input_shape` of rank 2 or 3."""
    try:
        rank = len(input_shape)
    except TypeError:
        rank = None
    if rank not in _LAYERS_BY_INPUT_RANK:
        raise ValueError(
            "Invalid value received for argument `input_shape`. Expected a "
            "channels-last shape of rank 2, (length, channels), or 3, "
            f"(height, width, channels). Received: input_shape={input_shape!r}"
        )
    return _LAYERS_BY_INPUT_RANK[rank]


def _branch_layers(
    conv: Type[keras.layers.Layer], filters: int, strides: int, prefix: str, zero_init_residual: bool
) -> List[keras.layers.Layer]:
    """conv 3x3 - BN - ReLU - conv 3x3 - BN (width 3 in 1D), the basic block's residual branch."""
    return [
        conv(
            filters,
            3,
            strides=strides,
            padding="same",
            use_bias=False,
            kernel_initializer="he_normal",
            name=prefix + "conv1",
        ),
        keras.layers.BatchNormalization(name=prefix + "bn1"),
        keras.layers.ReLU(name=prefix + "relu1"),
        conv(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal", name=prefix + "conv2"),
        keras.layers.BatchNormalization(
            gamma_initializer=_residual.last_gamma_initializer(zero_init_residual), name=prefix + "bn2"
        ),
    ]


def _shortcut_layer(
    kind: str, conv: Type[keras.layers.Layer], filters: int, strides: int, prefix: str
) -> keras.layers.Layer:
    if kind == "zero_pad":
        return ZeroPadShortcut(filters, strides=strides, name=prefix + "shortcut")
    return keras.Sequential(
        [
            conv(
                filters,
                1,
                strides=strides,
                use_bias=False,
                kernel_initializer="he_normal",
                name=prefix + "shortcut_conv",
            ),
            keras.layers.BatchNormalization(name=prefix + "shortcut_bn"),
        ],
        name=prefix + "shortcut",
    )
