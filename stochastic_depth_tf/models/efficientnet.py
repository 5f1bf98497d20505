"""EfficientNet B0-B7 on stochastic depth, weight-compatible with keras.applications.

Tan and Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks", ICML 2019, rebuilt layer for layer as `keras.applications`
builds it (same layer names, shapes, initializers and input preprocessing),
with the drop-connect of every residual MBConv block made a stochastic-depth
layer of this package. Copying keras.applications' weights into it is
`efficientnet_weights.py`.

Its signature is keras.applications' (`classes`, `include_top`, `weights`,
...), so it can replace `keras.applications.EfficientNetB*` as is; the
package's own builders say `num_classes`, as KerasHub does.
"""

from __future__ import annotations

import functools
import math
import numbers
import os
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import keras

from stochastic_depth_tf import _distributions
from stochastic_depth_tf._settings import StochasticDepthSettings
from stochastic_depth_tf._validation import (
    validate_bool,
    validate_choice,
    validate_positive_int,
    validate_survival_probability,
)
from stochastic_depth_tf.models import _residual
from stochastic_depth_tf.models.efficientnet_weights import load_keras_applications_weights

DISTRIBUTIONS = ("keras", "linear", "uniform")
POOLINGS = (None, "avg", "max")
MIN_SIZE = 32  # five stride-2 stages


class _Variant(NamedTuple):
    width_coefficient: float
    depth_coefficient: float
    default_size: int
    dropout_rate: float


class _Stage(NamedTuple):
    kernel_size: int
    repeats: int
    filters_in: int
    filters_out: int
    expand_ratio: int
    strides: int


class _Block(NamedTuple):
    prefix: str
    kernel_size: int
    filters_in: int
    filters_out: int
    expand_ratio: int
    strides: int
    # Among all blocks, from 0, as Keras counts for drop-connect (not `index`:
    # that would shadow tuple.index).
    block_index: int

    @property
    def residual(self) -> bool:
        return self.strides == 1 and self.filters_in == self.filters_out


VARIANTS: Dict[str, _Variant] = {
    "b0": _Variant(1.0, 1.0, 224, 0.2),
    "b1": _Variant(1.0, 1.1, 240, 0.2),
    "b2": _Variant(1.1, 1.2, 260, 0.3),
    "b3": _Variant(1.2, 1.4, 300, 0.3),
    "b4": _Variant(1.4, 1.8, 380, 0.4),
    "b5": _Variant(1.6, 2.2, 456, 0.4),
    "b6": _Variant(1.8, 2.6, 528, 0.5),
    "b7": _Variant(2.0, 3.1, 600, 0.5),
}

# The B0 stages (the paper's table 1); every block has squeeze-and-excitation
# with ratio 0.25 and an identity shortcut when its shape allows one.
STAGES = (
    _Stage(kernel_size=3, repeats=1, filters_in=32, filters_out=16, expand_ratio=1, strides=1),
    _Stage(kernel_size=3, repeats=2, filters_in=16, filters_out=24, expand_ratio=6, strides=2),
    _Stage(kernel_size=5, repeats=2, filters_in=24, filters_out=40, expand_ratio=6, strides=2),
    _Stage(kernel_size=3, repeats=3, filters_in=40, filters_out=80, expand_ratio=6, strides=2),
    _Stage(kernel_size=5, repeats=3, filters_in=80, filters_out=112, expand_ratio=6, strides=1),
    _Stage(kernel_size=5, repeats=4, filters_in=112, filters_out=192, expand_ratio=6, strides=2),
    _Stage(kernel_size=3, repeats=1, filters_in=192, filters_out=320, expand_ratio=6, strides=1),
)
SE_RATIO = 0.25
ACTIVATION = "swish"


def efficientnet(
    variant: str = "b0",
    include_top: bool = True,
    weights: Optional[str] = None,
    input_tensor: Optional[keras.KerasTensor] = None,
    input_shape: Optional[Sequence[Optional[int]]] = None,
    pooling: Optional[str] = None,
    classes: int = 1000,
    classifier_activation: Optional[str] = "softmax",
    drop_connect_rate: float = 0.2,
    distribution: str = "keras",
    mode: str = "sample",
    inverted: bool = True,
    skip_compute: bool = False,
    seed: Optional[int] = None,
    name: Optional[str] = None,
    zero_init_residual: bool = False,
) -> keras.Model:
    """Builds EfficientNet-B0 ... B7 with stochastic depth on its residual blocks.

    The network of `keras.applications.EfficientNetB*` (Tan and Le, ICML
    2019), layer for layer: the same input preprocessing (`Rescaling(1 /
    255)` then a `Normalization` whose mean and variance come with the
    weights), stem, MBConv blocks with squeeze-and-excitation, top
    convolution and classifier, the same layer names, shapes and
    initializers. What differs is the stochastic depth: Keras puts a
    drop-connect `Dropout(rate, noise_shape=(None, 1, 1, 1))` before each
    residual `add`; here the add itself is a `StochasticDepth` layer named
    `<block>add` (or, with `skip_compute=True`, the whole block is a
    `StochasticDepthBlock` of that name), configurable and serialized as
    ours. In training a residual block returns `x + b * f(x)` with
    `b ~ Bernoulli(p)`, scaled `b / p` with `inverted=True`; at inference
    `x + f(x)` (inverted) or `x + p * f(x)` (the paper's convention; Huang
    et al., "Deep Networks with Stochastic Depth", ECCV 2016).

    Stochastic depth is on every MBConv block with an identity shortcut
    (stride 1 and as many filters out as in; 9 of the 16 blocks of B0, 48
    of 55 in B7), and only there. Block `b` of all `B` blocks (counted from
    0 over every block, residual or not, as Keras counts) survives with:

    - `distribution="keras"` (default): `p_b = 1 - drop_connect_rate * b / B`,
      exactly Keras' drop-connect rule (that of the original TensorFlow
      implementation), with Keras' float arithmetic. Block 0 would get
      `p = 1` (it has no shortcut in any variant) and no block reaches
      `1 - drop_connect_rate`: in B0 the last residual block is `b = 14` of
      `B = 16`, `p = 0.825` at rate 0.2.
    - `distribution="linear"`: the paper's linear decay over the `L` residual
      blocks only, `p_l = 1 - (l / L) * drop_connect_rate` for `l = 1 .. L`,
      so the last residual block gets exactly `1 - drop_connect_rate`
      (`sdt.schedules.linear_decay(L, 1 - drop_connect_rate)`).
    - `distribution="uniform"`: `1 - drop_connect_rate` for every residual
      block.

    The defaults keep keras.applications' behaviour: per-example gates
    (`mode="sample"`), the inverted convention, rate 0.2, so weights trained
    by Keras (copied with `load_keras_applications_weights`) give Keras'
    predictions, and training draws gates with Keras' distribution.
    `mode="batch"` is the paper's one gate per batch; `inverted=False` is the
    paper's scaling at inference (which changes what Keras-trained weights
    predict, see `load_keras_applications_weights`).

    `skip_compute=True` builds each residual block as a `StochasticDepthBlock`
    around a functional branch model named `<block>branch` whose layers keep
    Keras' names (`block2b_expand_conv`, ...). With `mode="batch"`, in graph
    mode (`jit_compile=False`) a dropped block then costs nothing: no forward,
    no backward, no BatchNormalization update. Under XLA (`jit_compile=True`)
    it saves nothing: the branch holds depthwise convolutions, which the
    package's rewrite of convolution gradients inside a conditional (XLA on
    CPU runs the stock ones very slowly there) does not cover, so under XLA
    the block computes the branch and multiplies by the gate, exactly like
    the merge layer (see `StochasticDepthBlock` and
    `benchmarks/results/efficientnet_step_time.md`). In `mode="sample"` the
    block computes every branch too.

    With `drop_connect_rate=0.0` every residual add is a plain
    `keras.layers.Add` (as Keras' own network without drop-connect).

    Args:
        variant: `"b0"` ... `"b7"`.
        include_top: whether to end with global average pooling, Keras'
            `top_dropout` (rate 0.2 for B0-B1, 0.3 B2-B3, 0.4 B4-B5, 0.5
            B6-B7) and the dense classifier `predictions`.
        weights: None (random initialization, the default), or the path to
            a weights file of the matching keras.applications model (Keras'
            `efficientnetb0.h5` / `efficientnetb0_notop.h5`, or what
            `save_weights` of such a model writes): it is loaded into that
            keras.applications model and copied with
            `load_keras_applications_weights`. `"imagenet"` is refused:
            nothing is downloaded (see the error for how to get them).
        input_tensor: a Keras tensor to use as the image input, or None.
        input_shape: `(height, width, channels)`, channels last, height and
            width None or at least 32. Defaults to `(S, S, 3)` with the
            variant's size `S` (224 for B0, 600 for B7) when `include_top`,
            `(None, None, 3)` otherwise.
        pooling: without the top, None (the 4D feature map), `"avg"` or
            `"max"` global pooling.
        classes: classes of the classifier (keras.applications' name for
            the `num_classes` of the package's other builders).
        classifier_activation: activation of `predictions`; None for logits.
        drop_connect_rate: the drop rate of the rule above, in `[0, 1]`.
            Keras' name for it; `1 - drop_connect_rate` is the paper's final
            survival probability with `distribution="linear"`.
        distribution: `"keras"`, `"linear"` or `"uniform"`, see above.
        mode: `"sample"` (one gate per example, Keras) or `"batch"` (one gate
            per call, the paper).
        inverted: True (Keras) scales by `1 / p` in training; False scales
            by `p` at inference (the paper).
        skip_compute: False puts a `StochasticDepth` merge layer where Keras
            has its `add`; True makes every residual block a
            `StochasticDepthBlock`, which skips dropped branches in batch mode.
        seed: None, or an int from which residual block `l`, counted from 0,
            gets seed `seed + l` (as `sdt.apply_stochastic_depth` counts).
        name: the model's name; `"efficientnet" + variant` by default, as Keras.
        zero_init_residual: start the scale (gamma) of `project_bn`, the last
            BatchNormalization of every residual block's branch, at 0, so
            every residual block starts as the identity (Goyal et al., 2017;
            torchvision's `zero_init_residual`). Blocks without a shortcut
            keep Keras' initialization.

    Returns:
        A functional `keras.Model` from images with pixel values in `[0, 255]`
        (the preprocessing is inside) to class scores, or to features without
        the top.

    Example:

    ```python
    import stochastic_depth_tf as sdt

    model = sdt.models.efficientnet("b0", input_shape=(64, 64, 3), classes=10)
    fast = sdt.models.efficientnet("b0", input_shape=(64, 64, 3), classes=10,
                                   mode="batch", skip_compute=True)
    ```
    """
    spec = _validate_variant(variant)
    weights = _validate_weights(weights)
    validate_choice(pooling, POOLINGS, name="pooling")
    # The per-block probabilities come from `drop_connect_rate`, by Keras' rule or ours.
    settings = StochasticDepthSettings(
        None, distribution, mode, inverted, seed, skip_compute, distributions=DISTRIBUTIONS
    )
    include_top = validate_bool(include_top, name="include_top")
    zero_init_residual = validate_bool(zero_init_residual, name="zero_init_residual")
    classes = validate_positive_int(classes, name="classes")
    if keras.config.image_data_format() != "channels_last":
        raise ValueError(
            "Invalid Keras setting `image_data_format`. Expected "
            "'channels_last' (EfficientNet is built channels last). "
            f"Received: image_data_format={keras.config.image_data_format()!r}"
        )

    blocks = _blocks(spec)
    # `distribution` is checked: the settings are made.
    probabilities = _survival_probabilities(
        blocks, validate_survival_probability(drop_connect_rate, name="drop_connect_rate"), distribution
    )
    if settings.inverted and min(probabilities) == 0.0:
        raise ValueError(
            "Invalid value received for argument `drop_connect_rate`. Expected "
            f"a rate below 1 with inverted=True and distribution={distribution!r} "
            "(a block that always drops has no 1 / p training scale). "
            f"Received: drop_connect_rate={drop_connect_rate!r}"
        )
    plain = all(p == 1.0 for p in probabilities)

    inputs, x = _image_input(input_tensor, input_shape, include_top, spec.default_size)
    image = x
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescaling")(x)
    x = keras.layers.Normalization(axis=-1, name="normalization")(x)
    x = keras.layers.ZeroPadding2D(_strided_padding(x.shape, 3), name="stem_conv_pad")(x)
    x = keras.layers.Conv2D(
        _round_filters(32, spec),
        3,
        strides=2,
        padding="valid",
        use_bias=False,
        kernel_initializer=_conv_initializer(),
        name="stem_conv",
    )(x)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.Activation(ACTIVATION, name="stem_activation")(x)

    residual_index = 0
    for block in blocks:
        if not block.residual:
            x = _mbconv_branch(x, block)
            continue
        # Keras names the merge `<block>add` whatever it is, and so do we.
        add = block.prefix + "add"
        x = _residual.residual_block(
            x,
            functools.partial(_mbconv_branch, block=block, zero_init_residual=zero_init_residual),
            names=_residual.BlockNames.from_prefix(block.prefix)._replace(add=add, merge=add, block=add),
            survival_probability=None if plain else probabilities[residual_index],
            settings=settings,
            index=residual_index,
        )
        residual_index += 1

    x = keras.layers.Conv2D(
        _round_filters(1280, spec),
        1,
        padding="same",
        use_bias=False,
        kernel_initializer=_conv_initializer(),
        name="top_conv",
    )(x)
    x = keras.layers.BatchNormalization(name="top_bn")(x)
    x = keras.layers.Activation(ACTIVATION, name="top_activation")(x)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dropout(spec.dropout_rate, name="top_dropout")(x)
        x = keras.layers.Dense(
            int(classes),
            activation=classifier_activation,
            kernel_initializer=keras.initializers.VarianceScaling(1.0 / 3.0, "fan_out", "uniform"),
            name="predictions",
        )(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    model = keras.Model(inputs, x, name=name or f"efficientnet{variant}")

    if weights is not None:
        keras_builder = getattr(keras.applications, f"EfficientNet{variant.upper()}")
        source = keras_builder(
            include_top=include_top,
            weights=weights,
            input_shape=tuple(image.shape[1:]),
            pooling=pooling,
            classes=int(classes),
            classifier_activation=classifier_activation,
        )
        load_keras_applications_weights(model, source)
    return model


def _variant_docstring(variant: str) -> str:
    spec = VARIANTS[variant]
    return f"""EfficientNet-{variant.upper()} on stochastic depth, as `keras.applications.EfficientNet{variant.upper()}`.

    Width x{spec.width_coefficient}, depth x{spec.depth_coefficient}, default
    input {spec.default_size}x{spec.default_size}x3, top dropout {spec.dropout_rate}.
    Every argument, its default and the block rule are those of
    `stochastic_depth_tf.models.efficientnet` (`variant="{variant}"`):
    Keras' conventions by default (per-example, inverted, drop-connect rate
    0.2 decaying as `0.2 * b / B`), `weights=None` (nothing is downloaded).

    Example:

    ```python
    import stochastic_depth_tf as sdt

    model = sdt.models.EfficientNet{variant.upper()}(input_shape=(64, 64, 3), classes=10)
    ```
    """


def EfficientNetB0(include_top: bool = True, weights: Optional[str] = None, **kwargs: Any) -> keras.Model:
    return efficientnet("b0", include_top=include_top, weights=weights, **kwargs)


def EfficientNetB1(include_top: bool = True, weights: Optional[str] = None, **kwargs: Any) -> keras.Model:
    return efficientnet("b1", include_top=include_top, weights=weights, **kwargs)


def EfficientNetB2(include_top: bool = True, weights: Optional[str] = None, **kwargs: Any) -> keras.Model:
    return efficientnet("b2", include_top=include_top, weights=weights, **kwargs)


def EfficientNetB3(include_top: bool = True, weights: Optional[str] = None, **kwargs: Any) -> keras.Model:
    return efficientnet("b3", include_top=include_top, weights=weights, **kwargs)


def EfficientNetB4(include_top: bool = True, weights: Optional[str] = None, **kwargs: Any) -> keras.Model:
    return efficientnet("b4", include_top=include_top, weights=weights, **kwargs)


def EfficientNetB5(include_top: bool = True, weights: Optional[str] = None, **kwargs: Any) -> keras.Model:
    return efficientnet("b5", include_top=include_top, weights=weights, **kwargs)


def EfficientNetB6(include_top: bool = True, weights: Optional[str] = None, **kwargs: Any) -> keras.Model:
    return efficientnet("b6", include_top=include_top, weights=weights, **kwargs)


def EfficientNetB7(include_top: bool = True, weights: Optional[str] = None, **kwargs: Any) -> keras.Model:
    return efficientnet("b7", include_top=include_top, weights=weights, **kwargs)


# The builders above take their docstrings from the table of variants.
for _variant in VARIANTS:
    globals()[f"EfficientNet{_variant.upper()}"].__doc__ = _variant_docstring(_variant)
del _variant


def efficientnet_survival_probabilities(
    variant: str, drop_connect_rate: float = 0.2, distribution: str = "keras"
) -> List[float]:
    """The survival probability of each residual block of an EfficientNet, in order.

    Args:
        variant: `"b0"` ... `"b7"`.
        drop_connect_rate: the rate in `[0, 1]`.
        distribution: `"keras"`, `"linear"` or `"uniform"`, the rules of
            `efficientnet`.

    Returns:
        One float per residual MBConv block (9 for B0), in the order the
        blocks are applied.

    Example:

    ```python
    import stochastic_depth_tf as sdt

    sdt.models.efficientnet_survival_probabilities("b0")[:2]   # [0.975, 0.95]
    ```
    """
    spec = _validate_variant(variant)
    validate_choice(distribution, DISTRIBUTIONS, name="distribution")
    return _survival_probabilities(
        _blocks(spec), validate_survival_probability(drop_connect_rate, name="drop_connect_rate"), distribution
    )


def _survival_probabilities(blocks: List[_Block], rate: float, distribution: str) -> List[float]:
    """`efficientnet_survival_probabilities` of a variant's blocks, with a checked rate and distribution."""
    residual = [block for block in blocks if block.residual]
    if distribution == "keras":
        # Keras' float arithmetic, so the rates equal its Dropout rates exactly.
        return [1.0 - rate * block.block_index / float(len(blocks)) for block in residual]
    return _distributions.RULES[distribution](len(residual), 1.0 - rate)


def _validate_variant(variant: Any) -> _Variant:
    return VARIANTS[validate_choice(variant, tuple(VARIANTS), name="variant")]


def _validate_weights(weights: Any) -> Optional[str]:
    if weights is None:
        return None
    if isinstance(weights, str) and weights == "imagenet":
        raise ValueError(
            "Invalid value received for argument `weights`. Expected None or "
            "the path to a weights file: stochastic_depth_tf downloads nothing. "
            "To start from Keras' ImageNet weights, build "
            "`keras.applications.EfficientNetB0(weights='imagenet')` (the same "
            "variant, `include_top` and `classes`) on a machine with network "
            "(Keras caches the file in ~/.keras/models, where later builds find "
            "it offline) and copy its weights with "
            "`stochastic_depth_tf.models.load_keras_applications_weights(model, source)`. "
            "Received: weights='imagenet'"
        )
    if isinstance(weights, (str, os.PathLike)) and os.path.isfile(weights):
        return os.fspath(weights)
    raise ValueError(
        "Invalid value received for argument `weights`. Expected None or the "
        "path to an existing weights file of the matching keras.applications "
        f"EfficientNet. Received: weights={weights!r}"
    )


def _image_input(
    input_tensor: Any, input_shape: Any, include_top: bool, default_size: int
) -> Tuple[Any, keras.KerasTensor]:
    """The model's inputs and the image tensor the network starts from."""
    if input_shape is None:
        if input_tensor is not None:
            input_shape = tuple(input_tensor.shape[1:])
        else:
            input_shape = (default_size, default_size, 3) if include_top else (None, None, 3)
    valid = (
        isinstance(input_shape, (tuple, list))
        and len(input_shape) == 3
        and all(d is None or (isinstance(d, numbers.Integral) and int(d) >= MIN_SIZE) for d in input_shape[:2])
        and isinstance(input_shape[2], numbers.Integral)
        and int(input_shape[2]) >= 1
    )
    if not valid:
        raise ValueError(
            "Invalid value received for argument `input_shape`. Expected "
            f"(height, width, channels), channels last, height and width None or at least {MIN_SIZE}. "
            f"Received: input_shape={input_shape!r}"
        )
    input_shape = tuple(None if d is None else int(d) for d in input_shape)
    if input_tensor is None:
        image = keras.Input(input_shape)
        return image, image
    if not isinstance(input_tensor, keras.KerasTensor):
        raise TypeError(
            "Invalid type received for argument `input_tensor`. Expected a Keras "
            "tensor (from keras.Input or a layer) or None. "
            f"Received: input_tensor of type {type(input_tensor).__name__}"
        )
    if tuple(input_tensor.shape[1:]) != input_shape:
        raise ValueError(
            "Invalid value received for argument `input_tensor`. Expected a "
            f"tensor of shape (batch, *{input_shape}) to match `input_shape`. "
            f"Received: input_tensor.shape={tuple(input_tensor.shape)}"
        )
    return keras.utils.get_source_inputs(input_tensor), input_tensor


def _round_filters(filters: int, spec: _Variant, divisor: int = 8) -> int:
    """Keras' width scaling: to a multiple of 8, never more than 10% below."""
    scaled = filters * spec.width_coefficient
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def _round_repeats(repeats: int, spec: _Variant) -> int:
    return int(math.ceil(spec.depth_coefficient * repeats))


def _blocks(spec: _Variant) -> List[_Block]:
    """Every MBConv block of a variant, named as Keras names them (`block2b_`)."""
    blocks: List[_Block] = []
    for stage_index, stage in enumerate(STAGES):
        filters_in = _round_filters(stage.filters_in, spec)
        filters_out = _round_filters(stage.filters_out, spec)
        for repeat in range(_round_repeats(stage.repeats, spec)):
            blocks.append(
                _Block(
                    prefix=f"block{stage_index + 1}{chr(ord('a') + repeat)}_",
                    kernel_size=stage.kernel_size,
                    filters_in=filters_in if repeat == 0 else filters_out,
                    filters_out=filters_out,
                    expand_ratio=stage.expand_ratio,
                    strides=stage.strides if repeat == 0 else 1,
                    block_index=len(blocks),
                )
            )
    return blocks


def _conv_initializer() -> keras.initializers.Initializer:
    # A new instance per layer: an unseeded initializer instance draws the
    # same values each time it is called.
    return keras.initializers.VarianceScaling(2.0, "fan_out", "truncated_normal")


def _strided_padding(shape: Sequence[Optional[int]], kernel_size: int) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """Keras' padding before a stride-2 `valid` convolution (one less on top and left for even sizes)."""
    height, width = shape[1], shape[2]
    adjust = (1, 1) if height is None or width is None else (1 - height % 2, 1 - width % 2)
    half = kernel_size // 2
    return (half - adjust[0], half), (half - adjust[1], half)


def _mbconv_branch(x: Any, block: _Block, zero_init_residual: bool = False) -> Any:
    """The MBConv residual branch: expand, depthwise, squeeze-and-excite, project.

    `zero_init_residual` zeroes the initial gamma of `project_bn` (residual
    blocks only).
    """
    prefix = block.prefix
    filters = block.filters_in * block.expand_ratio
    if block.expand_ratio != 1:
        x = keras.layers.Conv2D(
            filters,
            1,
            padding="same",
            use_bias=False,
            kernel_initializer=_conv_initializer(),
            name=prefix + "expand_conv",
        )(x)
        x = keras.layers.BatchNormalization(name=prefix + "expand_bn")(x)
        x = keras.layers.Activation(ACTIVATION, name=prefix + "expand_activation")(x)
    padding = "same"
    if block.strides == 2:
        x = keras.layers.ZeroPadding2D(_strided_padding(x.shape, block.kernel_size), name=prefix + "dwconv_pad")(x)
        padding = "valid"
    x = keras.layers.DepthwiseConv2D(
        block.kernel_size,
        strides=block.strides,
        padding=padding,
        use_bias=False,
        depthwise_initializer=_conv_initializer(),
        name=prefix + "dwconv",
    )(x)
    x = keras.layers.BatchNormalization(name=prefix + "bn")(x)
    x = keras.layers.Activation(ACTIVATION, name=prefix + "activation")(x)

    squeezed = max(1, int(block.filters_in * SE_RATIO))
    se = keras.layers.GlobalAveragePooling2D(name=prefix + "se_squeeze")(x)
    se = keras.layers.Reshape((1, 1, filters), name=prefix + "se_reshape")(se)
    se = keras.layers.Conv2D(
        squeezed,
        1,
        padding="same",
        activation=ACTIVATION,
        kernel_initializer=_conv_initializer(),
        name=prefix + "se_reduce",
    )(se)
    se = keras.layers.Conv2D(
        filters,
        1,
        padding="same",
        activation="sigmoid",
        kernel_initializer=_conv_initializer(),
        name=prefix + "se_expand",
    )(se)
    x = keras.layers.Multiply(name=prefix + "se_excite")([x, se])

    x = keras.layers.Conv2D(
        block.filters_out,
        1,
        padding="same",
        use_bias=False,
        kernel_initializer=_conv_initializer(),
        name=prefix + "project_conv",
    )(x)
    gamma = _residual.last_gamma_initializer(zero_init_residual and block.residual)
    return keras.layers.BatchNormalization(gamma_initializer=gamma, name=prefix + "project_bn")(x)
