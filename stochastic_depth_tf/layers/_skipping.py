"""Per-example compute skipping: what `StochasticDepthBlock` and the KerasHub adapters share.

A merge layer (`StochasticDepth`) of mode `"sample"` or `"subset"` holds the
survival probability, the seed generator and the convention; given a branch
as a function, `skip_dropped_examples` runs it on the kept examples only and
adds the result into their rows of the shortcut, drawing the same gate as
the merge layer would (same seed, same kept rows, same scale).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import keras

from stochastic_depth_tf import backend, ops

# Per-example skipping gathers and scatters rows: below a drop rate of about
# 0.1 that costs more than it saves (DINOv2's remark; measured in
# benchmarks/results/per_example.md), so there the branch is multiplied.
PER_EXAMPLE_SKIP_ABOVE = 0.9


def skips(merge: Any, branch: keras.layers.Layer, *, training: bool, skip_compute: bool) -> bool:
    """Whether a call may skip dropped branches or examples (before static shapes are considered).

    Args:
        merge: the `StochasticDepth` layer whose gate decides.
        branch: the layer holding the branch's variables.
        training: the call's phase.
        skip_compute: the owner's setting.
    """
    if not (training and skip_compute):
        return False
    if merge.mode != "batch" and merge.survival_probability > PER_EXAMPLE_SKIP_ABOVE:
        return False
    # Every replica draws the same batch gate, so skipping is consistent;
    # but TensorFlow's all-reduce cannot sit inside a conditional.
    return backend.num_replicas_in_sync() == 1 or not backend.branch_synchronizes_replicas(branch)


def skip_dropped_examples(
    merge: Any,
    branch: Callable[[Any], Any],
    inputs: Any,
    shortcut: Any,
    *,
    layers: Sequence[keras.layers.Layer],
    owner: str,
) -> Any:
    """Per-example modes: `shortcut + scale * branch(inputs)` with the branch run on the kept rows only.

    The kept rows of `inputs` are gathered, run through `branch`, scaled,
    and added back into their rows of the shortcut; dropped rows are the
    shortcut as is. Where shapes are static (XLA, JAX; subset mode only:
    callers fall back to the merge layer for `"sample"` there) the kept
    count comes from the configured survival probability, a constant when
    tracing.

    Args:
        merge: the `StochasticDepth` layer of mode `"sample"` or `"subset"`.
        branch: maps a batch of rows of `inputs` to as many rows of the
            shortcut's shape (it runs in training).
        inputs: the branch input, batch first.
        shortcut: the tensor the branch output is added to.
        layers: the layers `branch` calls (their state is carried through
            the conditional on the backends that need it).
        owner: the name the conditional's errors give.
    """
    static = backend.static_shapes()
    count = None
    if static:
        if merge.survival_probability == 0.0:
            return shortcut
        count = ops.kept_count(keras.ops.shape(inputs)[0], merge.survival_probability)
    with backend.host_device():
        indices, keep_probability = ops.kept_rows(
            inputs,
            merge.survival_probability_variable,
            mode=merge.mode,
            seed=merge.seed_generator,
            count=count,
        )
        any_kept = keras.ops.greater(keras.ops.size(indices), 0)
    scale = ops.gate_scale(keras.ops.ones(()), keep_probability, inverted=merge.inverted, dtype=shortcut.dtype)

    def kept() -> Any:
        residual = branch(keras.ops.take(inputs, indices, axis=0))
        update = keras.ops.multiply(scale, keras.ops.cast(residual, shortcut.dtype))
        # `shortcut + scatter(update)` rather than writing `shortcut[i] +
        # update` back into the shortcut's rows: the rows are distinct, so
        # the two are equal, but the sum's gradient passes the shortcut's
        # through untouched and needs no gather of its rows, where a
        # scatter-update masks them (one fewer gather and one fewer
        # full-size pass forward and back; 0.85 against 0.93 of the merge
        # layer's step on the ViT-style stack of benchmarks/per_example.py).
        return keras.ops.add(
            shortcut, keras.ops.scatter(keras.ops.expand_dims(indices, -1), update, keras.ops.shape(shortcut))
        )

    if static:  # at least one example is kept whenever p > 0
        return kept()
    # With a varying count no example may be kept: the branch
    # (BatchNormalization in particular) must not see an empty batch.
    return backend.conditional(any_kept, kept, lambda: shortcut, layers, owner)
