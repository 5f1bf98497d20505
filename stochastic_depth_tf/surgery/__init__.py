"""Model surgery: turn the residual adds of a functional model into stochastic depth, and back.

`apply_stochastic_depth` returns a new functional model in which every residual
add (`keras.layers.Add` or the `x + y` op node, with one input the block's
shortcut and the other a branch computed from it) is a
`stochastic_depth_tf.StochasticDepth` called as `[shortcut, residual]`, with a
survival probability per block. `strip_stochastic_depth` is the inverse for
export: every `StochasticDepth` (and `ShakeDrop`, and `StochasticDepthBlock`)
becomes a plain `Add`, with the inference scale folded in front of it as a
`keras.layers.Rescaling`.

Both copy: the new model has new layers holding copies of the original's
weights, so training one never changes the other.

Two parts, for these two functions and whatever else rewrites residual
networks: `graph` reads (the calls of a graph in order, and its residual
merges with their shortcut and residual: `graph.residual_merges`), `rebuild`
rebuilds through `keras.models.clone_model` with chosen calls replaced.
"""

from stochastic_depth_tf.surgery.apply import apply_stochastic_depth
from stochastic_depth_tf.surgery.strip import strip_stochastic_depth

__all__ = ["apply_stochastic_depth", "strip_stochastic_depth"]
