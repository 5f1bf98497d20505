"""Stochastic depth for Keras 3 / TensorFlow residual networks."""

from stochastic_depth_tf import callbacks, layers, models, ops, schedules
from stochastic_depth_tf.layers import StochasticDepth, StochasticDepthBlock
from stochastic_depth_tf.version import __version__

__all__ = ["StochasticDepth", "StochasticDepthBlock", "callbacks", "layers", "models", "ops", "schedules", "__version__"]
