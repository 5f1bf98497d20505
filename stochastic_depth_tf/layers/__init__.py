"""The package's Keras layers, one public class per module."""

from stochastic_depth_tf.layers.stochastic_depth import StochasticDepth
from stochastic_depth_tf.layers.stochastic_depth_block import StochasticDepthBlock

__all__ = ["StochasticDepth", "StochasticDepthBlock"]
