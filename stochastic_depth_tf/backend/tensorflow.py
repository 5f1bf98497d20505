"""TensorFlow: replicas of `tf.distribute`, host placement, collectives in a branch.

Three facts of TensorFlow the layers depend on, kept in one place:

- Under a `tf.distribute` strategy every replica runs the same step with
  mirrored variables, so a `keras.random.SeedGenerator` gives every replica
  the same draw. That is what batch mode wants (one gate per global batch);
  per-example gates need the replica id folded into the seed.
- The predicate of a conditional (`If` op) is read on the host; on a GPU a
  gate computed on the device would cost a device-to-host copy, which waits
  for the device, in every block of every step. So the block's gate, and the
  variables it reads, live on the host in graph mode.
- `MirroredStrategy` and `MultiWorkerMirroredStrategy` all-reduce through
  `merge_call`, which TensorFlow refuses inside a conditional. A branch with
  a cross-replica collective (Keras' synchronized BatchNormalization) cannot
  be skipped there.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import keras
import tensorflow as tf

from stochastic_depth_tf.backend import tensorflow_xla
from stochastic_depth_tf.backend._interface import Branch, Cache, GradientScope, Layers, Thunk

HOST = "/device:CPU:0"


def num_replicas_in_sync() -> int:
    """How many replicas run the current step together: 1 outside `tf.distribute`."""
    context = tf.distribute.get_replica_context()
    if context is None:  # cross-replica context: the strategy's own count
        return int(tf.distribute.get_strategy().num_replicas_in_sync)
    return int(context.num_replicas_in_sync)


def replica_uniform(shape: Any, seed: Any) -> Any:
    """A float32 uniform draw in `[0, 1)`, independent between replicas.

    With one replica this is `keras.random.uniform(shape, seed=seed)`, so a
    single-device run draws exactly what it always drew. With several, one
    base seed is drawn from `seed` (the same on every replica: the
    generator's state is mirrored) and the replica's id in the sync group,
    which counts across workers, is folded into it with
    `tf.random.experimental.stateless_fold_in`: replica `r` draws from a
    stream of its own, and the streams are reproducible from the seed.
    """
    if num_replicas_in_sync() == 1:
        return keras.random.uniform(shape, dtype="float32", seed=seed)
    base = keras.random.randint((2,), 0, 2**31 - 1, dtype="int32", seed=seed)
    replica = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.int32)
    replica_seed = tf.random.experimental.stateless_fold_in(base, replica)
    return tf.random.stateless_uniform(shape, seed=replica_seed, dtype=tf.float32)


@contextlib.contextmanager
def host_device() -> Iterator[None]:
    """Ops created inside run on the host, when tracing a graph-mode step.

    Used for the gate of a conditional: a scalar drawn and compared on the
    host is a ready predicate for the `If` op, whose GPU kernel reads its
    predicate from host memory. Eagerly there is no graph to place, and
    under XLA (TPU programs included) the whole step is one compiled program
    on the device, where a host placement has no place.
    """
    if tf.executing_eagerly() or tensorflow_xla.under_xla():
        yield
        return
    with tf.device(HOST):
        yield


@contextlib.contextmanager
def host_variables() -> Iterator[None]:
    """Variables created inside live on the host, unless a strategy mirrors them.

    For the small state a gate reads (the seed generator's state, the
    survival probability): on the host, reading them for the gate costs no
    copy from a GPU. Under a `tf.distribute` strategy they must be mirrored
    like every other variable, so that every replica advances the same seed,
    and the strategy places them.
    """
    if tf.distribute.has_strategy() or not tf.executing_eagerly():
        yield
        return
    with tf.device(HOST):
        yield


def static_shapes() -> bool:
    """True when tracing for XLA (`jit_compile=True`), where every shape is fixed when compiling."""
    return tensorflow_xla.under_xla()


def conditional(predicate: Any, kept: Thunk, skipped: Thunk, layers: Layers, owner: str) -> Any:
    """`tf.cond` on the gate; `kept()` updates its layers' variables inside it, as TensorFlow allows.

    A cross-replica collective inside `kept()` is refused by TensorFlow
    (`merge_call` in a conditional); the error then names `owner` and the
    way out, `skip_compute=False`.
    """
    try:
        return keras.ops.cond(predicate, kept, skipped)
    except RuntimeError as error:
        if "merge_call" not in str(error):
            raise
        raise RuntimeError(
            f"The branch of StochasticDepthBlock '{owner}' synchronizes "
            "replicas (it calls `all_reduce` through `merge_call`), which "
            "TensorFlow refuses inside the conditional that skips it. "
            "Expected a branch without cross-replica collectives, or "
            "`skip_compute=False`. Received: a collective inside the branch "
            f"under {type(tf.distribute.get_strategy()).__name__}"
        ) from error


def branch_gradient_scope(function: Branch, inputs: Any, cache: Cache, layers: Layers) -> GradientScope:
    """How the skipped branch is differentiated, or None to compute and multiply it instead.

    Under XLA on CPU the stock gradients of a convolution inside a
    conditional are about 150x slower, so there the branch's `Conv2D` ops get
    a gradient written with forward convolutions only (`tensorflow_xla`); a branch
    with convolutions that cannot be rewritten returns None. `cache` keeps
    that answer per input shape and dtype for the caller (string keys: a
    SavedModel tracks the dict).
    """
    if not (tensorflow_xla.under_xla() and tensorflow_xla.rewrite_applies(tensorflow_xla.device_type(inputs.device))):
        return contextlib.nullcontext()
    key = f"{tuple(inputs.shape)} {inputs.dtype}"
    if key not in cache:
        cache[key] = tensorflow_xla.conditional_is_fast_under_xla(function, tf.TensorSpec(inputs.shape, inputs.dtype))
    return tensorflow_xla.canonical_conv2d_gradient_scope() if cache[key] else None


def branch_synchronizes_replicas(layer: keras.layers.Layer) -> bool:
    """Whether `layer`, or a layer inside it, all-reduces across replicas in training.

    Keras' `BatchNormalization(synchronized=True)` is the one such layer
    Keras ships; a custom layer that calls `all_reduce` itself is not
    detected (TensorFlow then raises inside the conditional, and the block
    says to pass `skip_compute=False`).
    """
    return any(
        isinstance(sublayer, keras.layers.BatchNormalization) and bool(getattr(sublayer, "synchronized", False))
        for sublayer in layer._flatten_layers(include_self=True, recursive=True)
    )


def track_in_checkpoints(layer: keras.layers.Layer, variable: Any, name: str) -> None:
    """Makes `tf.train.Checkpoint` save and restore `variable` as a child of `layer`.

    A `keras.random.SeedGenerator` is not a TensorFlow trackable, so a
    checkpoint of a model would silently drop its state (and a restored run
    would restart every gate sequence). Keras' own saving goes through
    `save_own_variables` instead.
    """
    layer._track_trackable(variable, name=name, overwrite=True)


def hold_state(layer: keras.layers.Layer, variable: Any, name: str) -> None:
    """Nothing to do: Keras' tracking is what TensorFlow needs.

    A `tf.function` step reads the variable by reference, and as one of the
    layer's Keras variables it is in `tf.train.Checkpoint`s, SavedModels and
    `tf.distribute`'s mirrored state.
    """
