"""PyTorch: eager execution, so a skipped branch is simply not called; ranks of `torch.distributed`.

Keras runs PyTorch eagerly (`jit_compile=True` hands the step to
`torch.compile`, which breaks its graph at a data-dependent branch and runs
that part eagerly). A gate is a tensor whose value is known when the
conditional is reached, so the block runs the branch or does not, and a
per-example kept count may vary from step to step.

Under `torch.nn.parallel.DistributedDataParallel` every rank is a process
of its own running the same model, and DDP broadcasts rank 0's module
state when it wraps the model: the seed generators' states included (Keras
tracks them as parameters). So every rank draws the same gates, which is
what batch mode wants (one gate per global step, and every rank takes the
same branch of a skipping block); per-example draws fold the rank in, as
`tensorflow.py` folds the replica id.

Keras makes every variable a layer tracks a `torch.nn.Parameter` of the
layer's module (`layer.torch_params`, built from `layer.variables`). State
that is not a weight, the survival probability, is a buffer instead.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import torch

from stochastic_depth_tf.backend._interface import Layers, Thunk


def _ranks() -> int:
    """The world size of `torch.distributed`, 1 when it is not initialized."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


def num_replicas_in_sync() -> int:
    """How many ranks train together: `torch.distributed`'s world size, 1 outside it."""
    return _ranks()


def replica_uniform(shape: Any, seed: Any) -> Any:
    """A float32 uniform draw in `[0, 1)`, independent between ranks.

    With one rank this is `keras.random.uniform(shape, seed=seed)`, so a
    single-process run draws exactly what it always drew. With several, one
    base seed is drawn from `seed` (the same on every rank: DDP broadcast
    the generator's state) and the rank is mixed into it with NumPy's
    `SeedSequence`: rank `r` draws from a stream of its own, reproducible
    from the seed. PyTorch seeds a generator from a Python int at every
    Keras draw anyway, so reading the base seed on the host costs nothing
    more.
    """
    if _ranks() == 1:
        return keras.random.uniform(shape, dtype="float32", seed=seed)
    base = keras.ops.convert_to_numpy(keras.random.randint((2,), 0, 2**31 - 1, dtype="int32", seed=seed))
    entropy = [int(value) for value in base] + [torch.distributed.get_rank()]
    rank_seed = int(np.random.SeedSequence(entropy).generate_state(1)[0])
    return keras.random.uniform(shape, dtype="float32", seed=rank_seed)


def static_shapes() -> bool:
    """False: eager tensors may change shape from step to step."""
    return False


def conditional(predicate: Any, kept: Thunk, skipped: Thunk, layers: Layers, owner: str) -> Any:
    """`kept()` if the gate is open, else `skipped()`; `kept()` updates its layers' state itself.

    A skipped branch's weights get zero gradients, not none: TensorFlow's
    and JAX's conditionals give the untaken arm zeros, and the optimizer
    then treats the weights alike on every backend (momentum and weight
    decay go on; Keras does not warn of missing gradients at every step).
    """
    if bool(keras.ops.convert_to_numpy(predicate)):
        return kept()
    output = skipped()
    weights = [variable for layer in layers for variable in layer.trainable_variables]
    if not weights:
        return output
    zero = keras.ops.multiply(sum(keras.ops.sum(weight) for weight in weights), 0.0)
    return keras.ops.add(output, keras.ops.cast(zero, output.dtype))


def hold_state(layer: keras.layers.Layer, variable: Any, name: str) -> None:
    """Makes `variable` a buffer of `layer`'s module, not one of its Keras variables or torch parameters.

    Keras turns each variable a layer tracks into a parameter of the
    module, and its layer contract (`keras.src.testing.TestCase.run_layer_test`)
    holds those to the layer's weights plus its seed generators' states.
    The survival probability is neither: it is state, and PyTorch keeps a
    module's state in buffers (as `BatchNorm2d` keeps its running
    statistics): in `state_dict()`, restored by `load_state_dict()`,
    broadcast from rank 0 by DDP, not in `parameters()`. The buffer is the
    variable's own tensor, so an `assign` is what the next step reads (steps
    run eagerly and read the current value; no Keras tracking is needed),
    and Keras' saving reaches it through the layer's `save_own_variables`.
    Like every Keras variable it lives on the device Keras chose when it
    was made (a later `module.to(device)` would move a copy of the buffer).
    """
    layer._untrack_variable(variable)
    layer.register_buffer(name, variable.value)
