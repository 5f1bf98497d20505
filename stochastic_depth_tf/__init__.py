"""Stochastic depth for Keras 3 / TensorFlow residual networks."""

from stochastic_depth_tf import callbacks, datasets, hub, layers, models, ops, pruning, recipes, saving, schedules
from stochastic_depth_tf.layers import ShakeDrop, StochasticDepth, StochasticDepthBlock
from stochastic_depth_tf.pruning import prune_blocks
from stochastic_depth_tf.surgery import apply_stochastic_depth, strip_stochastic_depth
from stochastic_depth_tf.version import __version__

__all__ = [
    "ShakeDrop",
    "StochasticDepth",
    "StochasticDepthBlock",
    "apply_stochastic_depth",
    "prune_blocks",
    "strip_stochastic_depth",
    "callbacks",
    "datasets",
    "hub",
    "layers",
    "models",
    "ops",
    "pruning",
    "recipes",
    "saving",
    "schedules",
    "__version__",
]
