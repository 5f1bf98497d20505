"""The CIFAR ResNets of the stochastic depth paper, depth 6n + 2."""

from __future__ import annotations

import numbers
from typing import Any, List, Optional, Sequence

import keras

from stochastic_depth_tf import schedules
from stochastic_depth_tf._validation import (
    validate_bool,
    validate_choice,
    validate_inverted,
    validate_mode,
    validate_seed,
)
from stochastic_depth_tf.layers import StochasticDepth, StochasticDepthBlock, ZeroPadShortcut

SHORTCUTS = ("zero_pad", "projection")
STAGE_FILTERS = (16, 32, 64)


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
        seed: None, or an int from which block `l` gets seed `seed + l`.
        input_shape: channels-last image shape, `(32, 32, 3)` for CIFAR.
        classifier_activation: the activation of the last layer; None for
            logits.
        name: the model's name; `"cifar_resnet{depth}"` by default.

    Returns:
        A functional `keras.Model` from images to class scores.

    Example:

    ```python
    import stochastic_depth_tf as sdt

    model = sdt.models.cifar_resnet(depth=20, final_survival_probability=0.5)
    ```
    """
    blocks_per_stage = _validate_depth(depth)
    mode = validate_mode(mode)
    inverted = validate_inverted(inverted)
    seed = validate_seed(seed)
    validate_choice(shortcut, SHORTCUTS, name="shortcut")
    skip_compute = validate_bool(skip_compute, name="skip_compute")
    num_blocks = 3 * blocks_per_stage
    probabilities = schedules.survival_probabilities(num_blocks, final_survival_probability, distribution)
    plain = all(p == 1.0 for p in probabilities)

    inputs = keras.Input(tuple(input_shape))
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, kernel_initializer="he_normal", name="stem_conv")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)

    index = 0
    for stage, filters in enumerate(STAGE_FILTERS):
        for block in range(blocks_per_stage):
            strides = 2 if stage > 0 and block == 0 else 1
            prefix = f"stage{stage + 1}_block{block + 1}_"
            projection = _shortcut_layer(shortcut, filters, strides, prefix) if strides > 1 else None
            branch = _branch_layers(filters, strides, prefix)
            block_seed = None if seed is None else seed + index + 1
            if plain or not skip_compute:
                residual = x
                for layer in branch:
                    residual = layer(residual)
                identity = x if projection is None else projection(x)
                if plain:
                    x = keras.layers.Add(name=prefix + "add")([identity, residual])
                else:
                    x = StochasticDepth(
                        probabilities[index], mode=mode, inverted=inverted, seed=block_seed,
                        name=prefix + "stochastic_depth",
                    )([identity, residual])
            else:
                x = StochasticDepthBlock(
                    keras.Sequential(branch, name=prefix + "branch"),
                    shortcut=projection,
                    survival_probability=probabilities[index],
                    mode=mode,
                    inverted=inverted,
                    seed=block_seed,
                    name=prefix + "stochastic_depth_block",
                )(x)
            x = keras.layers.ReLU(name=prefix + "out")(x)
            index += 1

    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, activation=classifier_activation, name="predictions")(x)
    return keras.Model(inputs, outputs, name=name or f"cifar_resnet{depth}")


def _validate_depth(depth: Any) -> int:
    if (
        isinstance(depth, bool)
        or not isinstance(depth, numbers.Integral)
        or depth < 8
        or (depth - 2) % 6 != 0
    ):
        raise ValueError(
            "Invalid value received for argument `depth`. Expected an int of "
            "the form 6n + 2 with n >= 1 (20, 32, 44, 56, 110, 1202). "
            f"Received: depth={depth!r}"
        )
    return (int(depth) - 2) // 6


def _branch_layers(filters: int, strides: int, prefix: str) -> List[keras.layers.Layer]:
    """conv 3x3 - BN - ReLU - conv 3x3 - BN, the basic block's residual branch."""
    return [
        keras.layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False,
                            kernel_initializer="he_normal", name=prefix + "conv1"),
        keras.layers.BatchNormalization(name=prefix + "bn1"),
        keras.layers.ReLU(name=prefix + "relu1"),
        keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                            kernel_initializer="he_normal", name=prefix + "conv2"),
        keras.layers.BatchNormalization(name=prefix + "bn2"),
    ]


def _shortcut_layer(kind: str, filters: int, strides: int, prefix: str) -> keras.layers.Layer:
    if kind == "zero_pad":
        return ZeroPadShortcut(filters, strides=strides, name=prefix + "shortcut")
    return keras.Sequential(
        [
            keras.layers.Conv2D(filters, 1, strides=strides, use_bias=False,
                                kernel_initializer="he_normal", name=prefix + "shortcut_conv"),
            keras.layers.BatchNormalization(name=prefix + "shortcut_bn"),
        ],
        name=prefix + "shortcut",
    )
