"""Per-example compute skipping: training step of ViT- and ConvNeXt-style stacks.

Follows the project's protocol (../shared/BENCHMARKS.md in the team docs):
every contender is built in this one process, warmed up, then timed in
interleaved rounds; the table reports the minimum and median seconds per
step, the ratio of the minima to the baseline, and the median of the
per-round paired ratios (which a load spike cannot fake). Run from the
repository root:

    python -m benchmarks.per_example            # the committed table
    python -m benchmarks.per_example --quick    # a smoke run (about a minute)

The networks (random 32x32x3 images, 10 classes), with the same per-example
drop rate on every residual branch:

- `vit`: a ViT-style stack: 4x4 patch embedding (64 tokens), pre-norm
  transformer blocks, each with an attention branch and an MLP branch
  (`--vit-blocks`, width 96, 4 heads, MLP ratio 4);
- `convnext`: a ConvNeXt-style stack: 2x2 patchify stem (16x16), blocks of
  7x7 depthwise convolution, LayerNormalization and an MLP of ratio 4.

The contenders, all per-example and inverted (timm's DropPath convention),
and the plain network:

- `add`: `keras.layers.Add`, no stochastic depth (the plain network, for
  the ratio to the fastest plain configuration);
- `merge`: `StochasticDepth(mode="sample", inverted=True)`, computing every
  branch for every example (the baseline: what timm and Keras users run);
- `keras_dropout`: Keras' idiom, `Dropout(rate, noise_shape=(None, 1, ...))`
  on the branch before an `Add`;
- `block_sample`: `StochasticDepthBlock(mode="sample")`, the branch run on
  the examples whose Bernoulli gate is open (graph mode only: under XLA a
  Bernoulli count has no static shape and the block multiplies instead);
- `block_subset`: `StochasticDepthBlock(mode="subset")`, exactly
  `round(p * batch)` examples (DINOv2's fixed-size subset), in both modes.
"""

from __future__ import annotations

import argparse
import functools
import os
from typing import Callable, List, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import stochastic_depth_tf as sdt  # noqa: E402
from benchmarks import harness  # noqa: E402

IMAGE_SHAPE = (32, 32, 3)
CONTENDERS = ("add", "merge", "keras_dropout", "block_sample", "block_subset")
Merge = Callable[[keras.KerasTensor, keras.layers.Layer, str], keras.KerasTensor]


def merge_for(contender: str, drop_rate: float, seed: int) -> Merge:
    """How one residual branch `x + branch(x)` is built by a contender."""
    survival_probability = 1.0 - drop_rate
    counter = iter(range(10_000))

    def merge(x: keras.KerasTensor, branch: keras.layers.Layer, name: str) -> keras.KerasTensor:
        index = next(counter)
        if contender.startswith("block_"):
            return sdt.StochasticDepthBlock(
                branch,
                survival_probability=survival_probability,
                mode=contender[len("block_") :],
                inverted=True,
                seed=seed + index,
                name=name,
            )(x)
        residual = branch(x)
        if contender == "add":
            return keras.layers.Add(name=name)([x, residual])
        if contender == "merge":
            return sdt.StochasticDepth(
                survival_probability, mode="sample", inverted=True, seed=seed + index, name=name
            )([x, residual])
        noise_shape = (None,) + (1,) * (len(residual.shape) - 1)
        residual = keras.layers.Dropout(drop_rate, noise_shape=noise_shape, seed=seed + index, name=name + "_drop")(
            residual
        )
        return keras.layers.Add(name=name)([x, residual])

    return merge


def _functional(input_shape: tuple, layers: List[keras.layers.Layer], name: str) -> keras.Model:
    inputs = keras.Input(input_shape)
    x = inputs
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x, name=name)


class _SelfAttention(keras.layers.Layer):
    """Multi-head self-attention of one tensor (a branch needs a one-input layer)."""

    def __init__(self, num_heads: int, key_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.attention = keras.layers.MultiHeadAttention(num_heads, key_dim)

    def build(self, input_shape):
        self.attention.build(input_shape, input_shape)

    def call(self, x):
        return self.attention(x, x)


def vit_network(merge: Merge, blocks: int, width: int = 96, heads: int = 4) -> keras.Model:
    inputs = keras.Input(IMAGE_SHAPE)
    x = keras.layers.Conv2D(width, 4, strides=4)(inputs)
    tokens = (IMAGE_SHAPE[0] // 4) * (IMAGE_SHAPE[1] // 4)
    x = keras.layers.Reshape((tokens, width))(x)
    for index in range(blocks):
        attention = _functional(
            (tokens, width),
            [keras.layers.LayerNormalization(), _SelfAttention(heads, width // heads)],
            f"attention_{index}",
        )
        x = merge(x, attention, f"block{index}_attention")
        mlp = _functional(
            (tokens, width),
            [
                keras.layers.LayerNormalization(),
                keras.layers.Dense(4 * width, activation="gelu"),
                keras.layers.Dense(width),
            ],
            f"mlp_{index}",
        )
        x = merge(x, mlp, f"block{index}_mlp")
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.LayerNormalization()(x))
    return keras.Model(inputs, keras.layers.Dense(10)(x), name="vit")


def convnext_network(merge: Merge, blocks: int, width: int = 64) -> keras.Model:
    inputs = keras.Input(IMAGE_SHAPE)
    x = keras.layers.LayerNormalization()(keras.layers.Conv2D(width, 2, strides=2)(inputs))
    shape = (IMAGE_SHAPE[0] // 2, IMAGE_SHAPE[1] // 2, width)
    for index in range(blocks):
        branch = _functional(
            shape,
            [
                keras.layers.DepthwiseConv2D(7, padding="same"),
                keras.layers.LayerNormalization(),
                keras.layers.Dense(4 * width, activation="gelu"),
                keras.layers.Dense(width),
            ],
            f"convnext_{index}",
        )
        x = merge(x, branch, f"block{index}")
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.LayerNormalization()(x))
    return keras.Model(inputs, keras.layers.Dense(10)(x), name="convnext")


def build(network: str, contender: str, drop_rate: float, blocks: int) -> keras.Model:
    merge = merge_for(contender, drop_rate, seed=0)
    if network == "vit":
        return vit_network(merge, blocks)
    return convnext_network(merge, blocks)


def time_contenders(
    network: str,
    drop_rate: float,
    blocks: int,
    jit_compile: bool,
    x: np.ndarray,
    y: np.ndarray,
    rounds: int,
    steps: int,
    warmup: int,
) -> List[dict]:
    builders = {contender: functools.partial(build, network, contender, drop_rate, blocks) for contender in CONTENDERS}
    steppers = harness.train_steppers(
        builders, x, y, jit_compile, warmup, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    times = harness.interleaved_times(steppers, rounds, steps)
    return harness.timed_rows(
        times, "merge", network=network, drop_rate=drop_rate, compilation=harness.compilation_name(jit_compile)
    )


COLUMNS = [
    ("network", "network", ""),
    ("drop rate", "drop_rate", ""),
    ("compilation", "compilation", ""),
    ("contender", "contender", ""),
    *harness.TIMING_COLUMNS,
]


def markdown(rows: List[dict], command: str, settings: str) -> str:
    return harness.markdown(
        "Per-example compute skipping against the per-example merge layer",
        command,
        [
            settings,
            harness.ratio_note("merge", "network, drop rate and compilation"),
            "kept fraction of the branch compute: 1 - drop rate (the physical limit of skipping is that "
            "fraction of the branch time, plus everything outside the branches)",
        ],
        # `add` is the same network at every drop rate: one fastest plain per network.
        COLUMNS,
        rows,
        plain="add",
        group=("network",),
        configuration=("drop_rate", "compilation"),
    )


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.per_example", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 blocks, small batch, 2 rounds: a smoke run")
    parser.add_argument("--networks", nargs="+", choices=["vit", "convnext"], default=["vit", "convnext"])
    parser.add_argument("--drop-rates", type=float, nargs="+", default=[0.1, 0.2, 0.4])
    parser.add_argument("--compilations", nargs="+", choices=["graph", "xla"], default=["graph", "xla"])
    parser.add_argument("--vit-blocks", type=int, default=8)
    parser.add_argument("--convnext-blocks", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=5, help="steps timed per contender per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--output", default=None, help="write the Markdown table here too")
    args = parser.parse_args(argv)
    if args.quick:
        args.vit_blocks, args.convnext_blocks, args.batch, args.rounds, args.steps, args.warmup = 2, 2, 8, 2, 1, 1
        args.drop_rates = args.drop_rates[-1:]
    command = harness.command_line("python -m benchmarks.per_example", argv)
    x, y = harness.random_batch(args.batch, IMAGE_SHAPE)
    rows: List[dict] = []
    for network in args.networks:
        blocks = args.vit_blocks if network == "vit" else args.convnext_blocks
        for compilation in args.compilations:
            for drop_rate in args.drop_rates:
                rows += time_contenders(
                    network, drop_rate, blocks, compilation == "xla", x, y, args.rounds, args.steps, args.warmup
                )
    settings = (
        f"batch {args.batch}, {args.rounds} rounds of {args.steps} steps, {args.warmup} warm-up steps; "
        f"vit: {args.vit_blocks} blocks (2 branches each), convnext: {args.convnext_blocks} blocks; "
        "the same drop rate on every branch; random 32x32x3 images"
    )
    harness.publish(markdown(rows, command, settings), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
