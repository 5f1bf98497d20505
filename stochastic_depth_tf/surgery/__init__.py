"""Model surgery: turn the residual adds of a functional model into stochastic depth, and back.

`apply_stochastic_depth` makes every residual add a `StochasticDepth`;
`strip_stochastic_depth` makes our layers plain adds again, for export. Both
return copies. Two parts serve them, and whatever else rewrites residual
networks: `graph` reads (`graph.residual_merges`: the residual merges of a
model in block order, with their shortcut and residual), `rebuild` rebuilds
through `keras.models.clone_model` with chosen calls replaced."""

from stochastic_depth_tf.surgery.apply import apply_stochastic_depth
from stochastic_depth_tf.surgery.strip import strip_stochastic_depth

__all__ = ["apply_stochastic_depth", "strip_stochastic_depth"]
