"""What differs by backend, behind one small interface.

The layers and `ops.py` call these functions and never ask which backend
runs; the module of Keras' backend (`tensorflow.py`, `jax.py` or `torch.py`)
provides them:

- `num_replicas_in_sync()`, `replica_uniform(shape, seed)`: replicas of a
  distributed step (`tf.distribute` replicas, PyTorch DDP ranks), and
  per-example draws that differ between them.
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
- `hold_state(layer, variable, name)`: keeps a variable that is state, not
  a weight (the survival probability), where the backend's own tools look
  for such state, and out of its parameters.

The types these functions take (`Thunk`, `Branch`, `Layers`, ...) are
named once, in `_interface.py`, for every backend's module.
"""

import importlib
from typing import Any

from stochastic_depth_tf._requirements import check_backend

NAME = check_backend()
INTERFACE = (
    "branch_gradient_scope",
    "branch_synchronizes_replicas",
    "conditional",
    "hold_state",
    "host_device",
    "host_variables",
    "num_replicas_in_sync",
    "replica_uniform",
    "static_shapes",
    "track_in_checkpoints",
)
_implementation = importlib.import_module(f"stochastic_depth_tf.backend.{NAME}")
# JAX and PyTorch share what a single program over the whole batch does the
# same way (`_single_device.py`); their own modules hold only what differs.
_shared = None if NAME == "tensorflow" else importlib.import_module("stochastic_depth_tf.backend._single_device")


def _function(name: str) -> Any:
    return getattr(_implementation, name) if hasattr(_implementation, name) else getattr(_shared, name)


branch_gradient_scope = _function("branch_gradient_scope")
branch_synchronizes_replicas = _function("branch_synchronizes_replicas")
conditional = _function("conditional")
hold_state = _function("hold_state")
host_device = _function("host_device")
host_variables = _function("host_variables")
num_replicas_in_sync = _function("num_replicas_in_sync")
replica_uniform = _function("replica_uniform")
static_shapes = _function("static_shapes")
track_in_checkpoints = _function("track_in_checkpoints")

__all__ = ["NAME", "INTERFACE", *INTERFACE]
