"""The package's Keras layers, one public class per module."""

from stochastic_depth_tf.layers._collect import stochastic_depth_layers
from stochastic_depth_tf.layers.shake_drop import ShakeDrop
from stochastic_depth_tf.layers.stochastic_depth import StochasticDepth
from stochastic_depth_tf.layers.stochastic_depth_block import StochasticDepthBlock
from stochastic_depth_tf.layers.zero_pad_shortcut import ZeroPadShortcut

__all__ = ["ShakeDrop", "StochasticDepth", "StochasticDepthBlock", "ZeroPadShortcut", "stochastic_depth_layers"]
