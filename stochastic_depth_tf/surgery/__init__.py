"""Model surgery: turn the residual adds of a model into stochastic depth, and back.

`apply_stochastic_depth` makes every residual add a `StochasticDepth` (at
given per-add probabilities: `apply_survival_probabilities`);
`strip_stochastic_depth` makes our layers plain adds again, for export. Both
return copies, and both are the front door for every kind of model: a kind
that surgery does not rewrite itself registers its own apply and strip
(`apply.register_model_kind`; `stochastic_depth_tf.hub` does for KerasHub
backbones). Two parts serve them, and whatever else rewrites residual
networks: `graph` reads (`graph.residual_merges`: the residual merges of a
model in block order, with their shortcut and residual), `rebuild` rebuilds
through `keras.models.clone_model` with chosen calls replaced."""

from stochastic_depth_tf.surgery.apply import apply_stochastic_depth, apply_survival_probabilities
from stochastic_depth_tf.surgery.strip import strip_stochastic_depth

__all__ = ["apply_stochastic_depth", "apply_survival_probabilities", "strip_stochastic_depth"]
