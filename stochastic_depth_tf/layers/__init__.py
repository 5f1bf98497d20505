"""The package's Keras layers, one public class per module."""

from stochastic_depth_tf.layers.stochastic_depth import StochasticDepth

__all__ = ["StochasticDepth"]
