"""What JAX and PyTorch share: one program sees the whole batch.

Neither backend runs a step as several replicas of one program: JAX's
`keras.distribution` shards one global program (a gate drawn for the global
batch is one gate, and per-example gates differ per example), and PyTorch
runs eagerly. So there is no host placement to choose and no collective
that a conditional refuses; and under JAX no replica id to fold into a
draw. PyTorch's DDP ranks are processes of their own: `torch.py` folds the
rank in.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import keras

from stochastic_depth_tf.backend._interface import Branch, Cache, GradientScope, Layers


def num_replicas_in_sync() -> int:
    """1: the program sees the global batch."""
    return 1


def replica_uniform(shape: Any, seed: Any) -> Any:
    """`keras.random.uniform(shape, seed=seed)` in float32."""
    return keras.random.uniform(shape, dtype="float32", seed=seed)


@contextlib.contextmanager
def host_device() -> Iterator[None]:
    """No placement: the whole step is one program (JAX) or runs eagerly (PyTorch)."""
    yield


@contextlib.contextmanager
def host_variables() -> Iterator[None]:
    """No placement: variables live where Keras puts them."""
    yield


def branch_synchronizes_replicas(layer: keras.layers.Layer) -> bool:
    """False: no collective runs inside a layer's call on these backends."""
    return False


def branch_gradient_scope(function: Branch, inputs: Any, cache: Cache, layers: Layers) -> GradientScope:
    """The backend's own gradients: no rewrite is needed to skip fast."""
    return contextlib.nullcontext()


def track_in_checkpoints(layer: keras.layers.Layer, variable: Any, name: str) -> None:
    """Nothing to do: Keras' own saving (`save_own_variables`) is the only checkpoint."""


def hold_state(layer: keras.layers.Layer, variable: Any, name: str) -> None:
    """Nothing to do: Keras' tracking is what JAX needs.

    JAX's jitted step takes every variable of `layer.variables` as an
    argument and returns their new values; a variable it did not take would
    be a constant of the compiled step, and a schedule's assignment would
    not reach the step until it is traced again.
    """
