"""PyTorch: eager execution, so a skipped branch is simply not called.

Keras runs PyTorch eagerly (`jit_compile=True` hands the step to
`torch.compile`, which breaks its graph at a data-dependent branch and runs
that part eagerly). A gate is a tensor whose value is known when the
conditional is reached, so the block runs the branch or does not, and a
per-example kept count may vary from step to step.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import keras

from stochastic_depth_tf.backend._single_device import (
    branch_gradient_scope,
    branch_synchronizes_replicas,
    host_device,
    host_variables,
    num_replicas_in_sync,
    replica_uniform,
    track_in_checkpoints,
)

__all__ = [
    "branch_gradient_scope",
    "branch_synchronizes_replicas",
    "conditional",
    "host_device",
    "host_variables",
    "num_replicas_in_sync",
    "replica_uniform",
    "static_shapes",
    "track_in_checkpoints",
]


def static_shapes() -> bool:
    """False: eager tensors may change shape from step to step."""
    return False


def conditional(
    predicate: Any,
    kept: Callable[[], Any],
    skipped: Callable[[], Any],
    layers: Sequence[keras.layers.Layer],
    owner: str,
) -> Any:
    """`kept()` if the gate is open, else `skipped()`; `kept()` updates its layers' state itself."""
    return keras.ops.cond(predicate, kept, skipped)
