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
