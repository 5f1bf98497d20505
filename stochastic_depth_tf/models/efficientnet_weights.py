"""Copying the weights of a keras.applications EfficientNet into ours.

`load_keras_applications_weights` matches layers by name, checks everything
before it assigns anything, and folds Keras' ImageNet input rescaling into
the copied variance. The architecture is in `efficientnet.py`.
"""

from __future__ import annotations

from typing import Any, Dict, List

import keras
import numpy as np

from stochastic_depth_tf._validation import validate_bool
from stochastic_depth_tf.layers import StochasticDepth, StochasticDepthBlock, stochastic_depth_layers

# The input `Normalization`, whose name Keras generates, is matched under this key.
_NORMALIZATION = "<input normalization>"


def load_keras_applications_weights(
    model: keras.Model, source: keras.Model, *, allow_convention_change: bool = False
) -> None:
    """Copies every weight of a keras.applications EfficientNet into one of ours.

    Layer by layer and by name (the `Normalization` of the input
    preprocessing, whose name Keras generates, is matched as the only one
    of each model): convolution kernels and biases, BatchNormalization
    gammas, betas and moving statistics, the preprocessing mean and
    variance, the classifier. Layers inside the branches of
    `StochasticDepthBlock`s are found by the same names. Everything is checked
    before anything is assigned, so on any error `model` is unchanged.

    Keras built with `weights="imagenet"` adds a third preprocessing layer,
    `Rescaling(1 / sqrt(stddev))`, after its `Normalization` (its ImageNet
    file stores the standard deviation where the variance belongs). Ours has
    no such layer: the scale is folded into the copied variance, exactly
    (`variance / scale**2`), so the predictions are Keras' all the same.

    Keras' EfficientNets are trained with inverted drop-connect, a plain add
    at inference. A `model` with the paper's convention (`inverted=False`)
    scales each residual branch by its survival probability at inference, so
    the copied weights would predict something else. That is refused unless
    `allow_convention_change=True` (for fine-tuning under the paper's
    convention, say).

    Args:
        model: an EfficientNet of `stochastic_depth_tf.models`.
        source: the keras.applications EfficientNet of the same variant and
            configuration (`include_top`, `classes`; with the top, the same
            `input_shape`), for instance built with `weights="imagenet"`.
        allow_convention_change: copy even though `model` uses the paper's
            convention and `source` the inverted one.

    Raises:
        TypeError: `model` or `source` is not a functional EfficientNet;
            `allow_convention_change` is not a bool.
        ValueError: a layer missing on either side, of another type, or with
            weights of other shapes (another variant, `classes`); with the
            top, another `input_shape`; the convention change above.

    Example:

    ```python
    import keras
    import stochastic_depth_tf as sdt

    source = keras.applications.EfficientNetB0(weights=None, input_shape=(64, 64, 3), classes=10)
    model = sdt.models.EfficientNetB0(input_shape=(64, 64, 3), classes=10)
    sdt.models.load_keras_applications_weights(model, source)
    ```
    """
    for argument, value in (("model", model), ("source", source)):
        if not isinstance(value, keras.Model) or not hasattr(value, "inputs") or not _has_stem_and_top(value):
            raise TypeError(
                f"Invalid type received for argument `{argument}`. Expected a "
                "functional EfficientNet (keras.applications.EfficientNetB* or "
                "stochastic_depth_tf.models.EfficientNetB*). "
                f"Received: {argument}={_describe(value)}"
            )
    allow_convention_change = validate_bool(allow_convention_change, name="allow_convention_change")
    paper_blocks = _paper_convention_blocks(model)
    if paper_blocks and not _paper_convention_blocks(source) and not allow_convention_change:
        raise ValueError(
            "Invalid value received for argument `model`. Expected the inverted "
            "convention of `source` (keras.applications EfficientNets are trained "
            "with inverted drop-connect, a plain add at inference), or "
            "`allow_convention_change=True`: with inverted=False each residual "
            "branch is scaled by its survival probability at inference, so the "
            "copied weights predict differently. Received: model "
            f"'{model.name}' with inverted=False on {len(paper_blocks)} blocks "
            f"({paper_blocks[0]}, ...)"
        )

    targets = _weighted_layers(model, "model")
    origins = _weighted_layers(source, "source")
    missing = [layer for layer in origins if layer not in targets]
    extra = [layer for layer in targets if layer not in origins]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"source '{source.name}' has {_names(missing)} that model '{model.name}' lacks")
        if extra:
            parts.append(f"model '{model.name}' has {_names(extra)} that source '{source.name}' lacks")
        raise ValueError(
            "Invalid value received for argument `source`. Expected a "
            "keras.applications EfficientNet of the variant and configuration "
            "of `model` (`include_top`, `classes`), with the same weighted "
            f"layers. Received: {'; '.join(parts)}"
        )
    if "predictions" in targets and tuple(model.input_shape[1:]) != tuple(source.input_shape[1:]):
        raise ValueError(
            "Invalid value received for argument `source`. Expected the "
            "input_shape of `model` (the classifier of a model with the top was "
            "trained at one resolution). Received: source input_shape="
            f"{tuple(source.input_shape[1:])}, model input_shape={tuple(model.input_shape[1:])}"
        )

    assignments = []
    for key, target in targets.items():
        origin = origins[key]
        if type(target) is not type(origin):
            raise ValueError(
                f"Invalid value received for argument `source`. Expected layer "
                f"'{origin.name}' of type {type(target).__name__}, as in `model`. "
                f"Received: {type(origin).__name__}"
            )
        if [w.name for w in target.weights] != [w.name for w in origin.weights]:
            raise ValueError(
                f"Invalid value received for argument `source`. Expected layer "
                f"'{origin.name}' with the weights {[w.name for w in target.weights]}. "
                f"Received: {[w.name for w in origin.weights]}"
            )
        for variable, weight in zip(target.weights, origin.weights):
            if tuple(variable.shape) != tuple(weight.shape):
                raise ValueError(
                    f"Invalid value received for argument `source`. Expected layer "
                    f"'{origin.name}' with {weight.name} of shape "
                    f"{tuple(variable.shape)}, as in `model` (another variant, "
                    f"or other `classes`?). Received: shape {tuple(weight.shape)}"
                )
            assignments.append((variable, keras.ops.convert_to_numpy(weight.value)))

    # (x - mean) / sqrt(variance) * scale == (x - mean) / sqrt(variance / scale**2)
    scale = _input_scale(source) / _input_scale(model)
    normalization = targets[_NORMALIZATION]
    for index, (variable, value) in enumerate(assignments):
        if variable is normalization.adapt_variance:
            assignments[index] = (variable, (value / scale**2).astype(value.dtype))
    for variable, value in assignments:
        variable.assign(value)
    # Normalization reads its statistics through tensors made from the
    # variables; rebuild those, and drop functions that captured the old ones.
    normalization.finalize_state()
    for attribute in ("train_function", "test_function", "predict_function"):
        if getattr(model, attribute, None) is not None:
            setattr(model, attribute, None)


def _has_stem_and_top(model: keras.Model) -> bool:
    names = {layer.name for layer in model.layers}
    return {"stem_conv_pad", "stem_conv", "top_conv"} <= names


def _describe(value: Any) -> str:
    name = getattr(value, "name", None)
    return f"{type(value).__name__} '{name}'" if name else repr(value)


def _names(layers: List[str], shown: int = 3) -> str:
    listed = ", ".join(repr(name) for name in layers[:shown])
    more = f" and {len(layers) - shown} more" if len(layers) > shown else ""
    return f"{'layer' if len(layers) == 1 else 'layers'} {listed}{more}"


def _leaf_layers(layer: keras.layers.Layer) -> List[keras.layers.Layer]:
    """The layers of a model, looking inside nested models and our blocks."""
    if isinstance(layer, StochasticDepthBlock):
        nested = [layer.branch] + ([] if layer.shortcut is None else [layer.shortcut])
        return [leaf for inner in nested for leaf in _leaf_layers(inner)]
    if isinstance(layer, keras.Model):
        return [leaf for inner in layer.layers for leaf in _leaf_layers(inner)]
    return [layer]


def _weighted_layers(model: keras.Model, argument: str) -> Dict[str, keras.layers.Layer]:
    """The layers holding weights, by name; the input `Normalization` under one key."""
    layers: Dict[str, keras.layers.Layer] = {}
    normalizations = []
    for layer in _leaf_layers(model):
        if isinstance(layer, keras.layers.Normalization):
            normalizations.append(layer)
        elif layer.weights:
            if layer.name in layers:
                raise ValueError(
                    f"Invalid value received for argument `{argument}`. Expected "
                    "unique layer names (weights are matched by name). "
                    f"Received: two layers named '{layer.name}' in '{model.name}'"
                )
            layers[layer.name] = layer
    if len(normalizations) != 1:
        raise ValueError(
            f"Invalid value received for argument `{argument}`. Expected an "
            "EfficientNet with exactly one input `Normalization` layer. "
            f"Received: {len(normalizations)} in '{model.name}'"
        )
    layers[_NORMALIZATION] = normalizations[0]
    return layers


def _input_scale(model: keras.Model) -> np.ndarray:
    """The product of the `Rescaling`s after the input `Normalization` (Keras' ImageNet fix), per channel."""
    scale = np.ones((), "float64")
    after_normalization = False
    for layer in model.layers:
        if layer.name == "stem_conv_pad":
            break
        if isinstance(layer, keras.layers.Normalization):
            after_normalization = True
        elif after_normalization and isinstance(layer, keras.layers.Rescaling):
            scale = scale * np.asarray(layer.scale, "float64")
    return scale


def _paper_convention_blocks(model: keras.Model) -> List[str]:
    """Names of the stochastic-depth layers that scale their branch at inference."""
    names = []
    for layer in stochastic_depth_layers(model):
        if isinstance(layer, (StochasticDepth, StochasticDepthBlock)) and not layer.inverted:
            if float(keras.ops.convert_to_numpy(layer.survival_probability_variable)) < 1.0:
                names.append(layer.name)
    return names
