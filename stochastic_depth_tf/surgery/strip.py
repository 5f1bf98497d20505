"""`strip_stochastic_depth`: this package's layers made stock Keras adds, for export."""

from __future__ import annotations

from typing import Any

import keras

from stochastic_depth_tf import ops
from stochastic_depth_tf.layers import stochastic_depth_layers
from stochastic_depth_tf.layers.shake_drop import ShakeDrop
from stochastic_depth_tf.layers.stochastic_depth_block import StochasticDepthBlock
from stochastic_depth_tf.surgery.apply import model_kind
from stochastic_depth_tf.surgery.graph import check_functional
from stochastic_depth_tf.surgery.rebuild import Rebuild, rebuild


def strip_stochastic_depth(model: keras.Model) -> keras.Model:
    """Returns a copy of a functional model with every `StochasticDepth` made a plain add.

    For export and serving: the inference output is unchanged and the graph
    holds only stock Keras layers. Each `stochastic_depth_tf.StochasticDepth`
    (called as `[shortcut, residual]`) becomes a `keras.layers.Add` of the
    same name. With `inverted=False` and a survival probability `p < 1` the
    inference scale is folded in exactly: a `keras.layers.Rescaling(p)` named
    `<name>_survival_scale` multiplies the residual before the add, so the
    output is `shortcut + p * residual`, the layer's inference form, with `p`
    the CURRENT value of `layer.survival_probability_variable` (what a
    schedule left there, not the configured value). With `inverted=True` or
    `p == 1` the inference form is already a plain add.

    Each `StochasticDepthBlock` is unrolled the same way: copies of its
    shortcut (if any) and branch called on the block's input, then the
    `Rescaling` and `Add`, named after the block.

    Each `stochastic_depth_tf.ShakeDrop` becomes the same `Rescaling` and
    `Add`, with its inference scale
    `E[b + alpha - b * alpha] = p + (1 - p) * (low + high) / 2`
    (`alpha_range=(low, high)`; `p` for the default
    `(-1, 1)`), from the current `p`; no `Rescaling` when that scale is 1.

    Like `apply_stochastic_depth`, the new model is a copy: new layers with
    copies of the original's weights. `StochasticDepth` layers inside nested
    functional models are stripped too.

    A KerasHub backbone made by `apply_stochastic_depth` is handed to
    `stochastic_depth_tf.hub.strip_stochastic_depth` (the `ModelKind`
    registered for it), which returns a backbone of its original KerasHub
    class (say `ResNetBackbone`) and, as that class has no place for a
    scale, refuses `inverted=False` with a survival probability below 1.

    Args:
        model: a functional `keras.Model` with at least one `StochasticDepth`,
            `StochasticDepthBlock` or `ShakeDrop` layer, or a KerasHub
            backbone made by `apply_stochastic_depth`.

    Returns:
        A new functional `keras.Model`, with the name of `model` (and its
        class, as `apply_stochastic_depth`; a KerasHub backbone's original
        class).

    Raises:
        TypeError: `model` is not a `keras.Model`.
        ValueError: `model` is Sequential, subclassed, or has neither a
            `StochasticDepth`, `StochasticDepthBlock` nor `ShakeDrop` layer;
            a KerasHub backbone with `inverted=False` and a survival
            probability below 1.

    Example:

    ```python
    import keras
    import stochastic_depth_tf as sdt

    base = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=10)
    model = sdt.apply_stochastic_depth(base, final_survival_probability=0.5)
    # ... model.fit(...) ...
    export = sdt.strip_stochastic_depth(model)  # Add + Rescaling, same inference
    ```
    """
    # A KerasHub backbone strips back to its own class, through the kind that
    # `stochastic_depth_tf.hub` registered (surgery sits below hub).
    kind = model_kind(model)
    if kind is not None and kind.has_stochastic_depth(model):
        return kind.strip(model)
    check_functional(model)
    layers = stochastic_depth_layers(model)
    if not layers:
        raise ValueError(
            "Invalid value received for argument `model`. Expected a "
            "functional keras.Model with at least one "
            "stochastic_depth_tf.StochasticDepth, StochasticDepthBlock or ShakeDrop "
            f"layer. Received: model '{model.name}' has none"
        )
    # Calls outside `model`'s graph (in another model) are never reached.
    replacements = {id(node): _inference_form for layer in layers for node in layer._inbound_nodes}
    return rebuild(model, replacements)


def _inference_form(node: Any, state: Rebuild) -> Any:
    """The `Replacement` of one of our layers: its inference output from stock layers.

    `shortcut + scale * residual`, the scale computed from the current value
    of the layer's survival probability variable; a `StochasticDepthBlock`'s
    shortcut and branch are copied and called on the block's input.
    """
    layer = node.operation
    if isinstance(layer, StochasticDepthBlock):
        (tensor,) = (state.tensor(x) for x in node.input_tensors)
        shortcut = tensor if layer.shortcut is None else state.copy(layer.shortcut)(tensor)
        residual = state.copy(layer.branch)(tensor)
    else:
        shortcut, residual = (state.tensor(x) for x in node.input_tensors)
    survival_probability = float(keras.ops.convert_to_numpy(layer.survival_probability_variable))
    if isinstance(layer, ShakeDrop):
        # E[b + alpha - b * alpha]
        scale, suffix = ops.shake_drop_expected_scale(survival_probability, layer.alpha_range), "expected_scale"
    else:
        scale, suffix = (1.0 if layer.inverted else survival_probability), "survival_scale"
    if scale != 1.0:
        residual = keras.layers.Rescaling(scale, name=f"{layer.name}_{suffix}", dtype=layer.dtype_policy)(residual)
    return keras.layers.Add(name=layer.name, dtype=layer.dtype_policy)([shortcut, residual])
