"""What differs by backend, behind one small interface.

The layers and `ops.py` call these functions and never ask which backend
runs; the module of Keras' backend (`tensorflow.py`, `jax.py` or `torch.py`)
provides them:

- `num_replicas_in_sync()`, `replica_uniform(shape, seed)`: replicas of a
  distributed step, and per-example draws that differ between them.
- `host_device()`, `host_variables()`: where a gate and its state live.
- `static_shapes()`: whether the step being traced needs static shapes (XLA
  under TensorFlow, always under JAX), so a varying kept count cannot be.
- `conditional(predicate, kept, skipped, layers, owner)`: runs `kept()` or
  `skipped()`, with the state updates `kept()` makes to `layers` (moving
  statistics) applied only when it ran.
- `branch_gradient_scope(function, inputs, cache, layers)`: how a skipped
  branch (`function` of `layers`) is differentiated inside the conditional,
  or None when skipping it would be slower than multiplying (convolutions
  under XLA on the CPU, TensorFlow's or JAX's).
- `branch_synchronizes_replicas(layer)`, `track_in_checkpoints(...)`.
"""

import importlib

from stochastic_depth_tf._requirements import check_backend

NAME = check_backend()
_implementation = importlib.import_module(f"stochastic_depth_tf.backend.{NAME}")

branch_gradient_scope = _implementation.branch_gradient_scope
branch_synchronizes_replicas = _implementation.branch_synchronizes_replicas
conditional = _implementation.conditional
host_device = _implementation.host_device
host_variables = _implementation.host_variables
num_replicas_in_sync = _implementation.num_replicas_in_sync
replica_uniform = _implementation.replica_uniform
static_shapes = _implementation.static_shapes
track_in_checkpoints = _implementation.track_in_checkpoints

__all__ = [
    "NAME",
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
