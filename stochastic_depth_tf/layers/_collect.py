"""The one collector of "our layers": every layer of a model that carries a survival probability."""

from __future__ import annotations

from typing import Any, List

import keras

from stochastic_depth_tf.layers._merge import StochasticMerge
from stochastic_depth_tf.layers.stochastic_depth_block import StochasticDepthBlock

# The merge layers (`StochasticDepth`, `ShakeDrop`) and the block: every layer
# with a `survival_probability`, its variable, and an `inverted` flag.
STOCHASTIC_DEPTH_LAYERS = (StochasticMerge, StochasticDepthBlock)


def stochastic_depth_layers(model: keras.layers.Layer) -> List[keras.layers.Layer]:
    """Every `StochasticDepth`, `ShakeDrop` and `StochasticDepthBlock` of `model`, in order.

    Looks inside nested models and inside the wrapped layers of blocks (a
    block's `branch` and `shortcut`), so a block nested in a block's branch is
    found too, and inside every layer's own sublayers (so the gates a
    `stochastic_depth_tf.hub` backbone keeps for its encoder blocks, which
    are in no graph node, are found as well). Shared layers are listed once.
    """
    found: List[keras.layers.Layer] = []
    seen = set()

    def visit(layer: Any) -> None:
        if layer is None or id(layer) in seen:
            return
        seen.add(id(layer))
        if isinstance(layer, STOCHASTIC_DEPTH_LAYERS):
            found.append(layer)
        if isinstance(layer, StochasticDepthBlock):
            # Its own gate is a StochasticDepth it wraps: only what it wraps
            # of the user's (branch, shortcut) can hold more of our layers.
            for child in (layer.branch, layer.shortcut):
                if isinstance(child, keras.layers.Layer):
                    visit(child)
            return
        for child in getattr(layer, "layers", None) or []:
            visit(child)
        for attribute in ("branch", "shortcut"):
            child = getattr(layer, attribute, None)
            if isinstance(child, keras.layers.Layer):
                visit(child)
        # Keras has no public accessor for a layer's direct sublayers.
        if isinstance(layer, keras.layers.Layer):
            for child in layer._flatten_layers(include_self=False, recursive=False):
                visit(child)

    visit(model)
    return found
