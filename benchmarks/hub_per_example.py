"""Per-example compute skipping inside a KerasHub ViTBackbone: training step against the merge layer.

`stochastic_depth_tf.hub.apply_stochastic_depth` gates the attention and MLP
branches of every `ViTEncoderBlock`; with `skip_compute=True` (and a
per-example mode) each branch runs on the kept examples only. This table
times one training step of the same backbone (a pooled dense head of 10
classes on top, random images) in interleaved rounds, in one process:

- `plain`: the KerasHub `ViTBackbone` as built, no stochastic depth;
- `merge`: `apply_stochastic_depth(..., skip_compute=False)`: every branch
  computed for every example, then gated (the baseline);
- `skip`: `apply_stochastic_depth(..., skip_compute=True)`: the branches
  run on the kept rows only (the same gates: same seed, same kept rows).

Both use `mode="subset"` (the one per-example mode that skips under XLA),
`inverted=True`, a uniform survival probability `1 - drop rate` on every
branch. Run from the repository root:

    python -m benchmarks.hub_per_example            # the full table
    python -m benchmarks.hub_per_example --quick    # a smaller ViT, fewer rounds: a smoke run (about a minute)
"""

from __future__ import annotations

import argparse
import functools
import os
from typing import List, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from benchmarks import harness, per_example  # noqa: E402
from stochastic_depth_tf import hub  # noqa: E402

CONTENDERS = ("plain", "merge", "skip")


def build(contender: str, drop_rate: float, layers: int, hidden: int, image: int, patch: int) -> keras.Model:
    """The classifier of one contender: a ViTBackbone, mean-pooled tokens, a dense head."""
    import keras_hub

    backbone = keras_hub.models.ViTBackbone(
        image_shape=(image, image, 3),
        patch_size=patch,
        num_layers=layers,
        num_heads=3,
        hidden_dim=hidden,
        mlp_dim=4 * hidden,
    )
    if contender != "plain":
        backbone = hub.apply_stochastic_depth(
            backbone,
            final_survival_probability=1.0 - drop_rate,
            distribution="uniform",
            mode="subset",
            seed=0,
            skip_compute=contender == "skip",
        )
    inputs = keras.Input((image, image, 3))
    features = keras.layers.GlobalAveragePooling1D()(backbone(inputs))
    return keras.Model(inputs, keras.layers.Dense(10)(features), name=f"vit_{contender}")


# per_example.py's columns but the network (there is one here).
COLUMNS = [column for column in per_example.COLUMNS if column[1] != "network"]


def markdown(rows: List[dict], command: str, settings: str) -> str:
    return harness.markdown(
        "Per-example compute skipping in a KerasHub ViTBackbone against the merge layer",
        command,
        [
            settings,
            "`merge` is the same backbone with `skip_compute=False`",
            harness.ratio_note("merge", "drop rate and compilation", COLUMNS),
            "kept fraction of the branch compute: 1 - drop rate (patch embedding, head and optimizer do not shrink)",
        ],
        COLUMNS,
        rows,
        plain="plain",
        configuration=("drop_rate", "compilation"),
    )


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hub_per_example", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="2 layers of width 96, 3 rounds of 2 steps, 1 warm-up step: a smoke run"
    )
    parser.add_argument("--drop-rates", type=float, nargs="+", default=[0.4])
    parser.add_argument("--compilations", nargs="+", choices=["graph", "xla"], default=["graph", "xla"])
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--hidden", type=int, default=192)
    parser.add_argument("--image", type=int, default=64)
    parser.add_argument("--patch", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=5, help="steps timed per contender per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--output", default=None, help="write the Markdown table here too")
    args = parser.parse_args(argv)
    if args.quick:
        args.layers, args.hidden, args.rounds, args.steps, args.warmup = 2, 96, 3, 2, 1
    command = harness.command_line("python -m benchmarks.hub_per_example", argv)
    x, y = harness.random_batch(args.batch, (args.image, args.image, 3))
    rows: List[dict] = []
    for compilation in args.compilations:
        for drop_rate in args.drop_rates:
            builders = {
                contender: functools.partial(
                    build, contender, drop_rate, args.layers, args.hidden, args.image, args.patch
                )
                for contender in CONTENDERS
            }
            steppers = harness.train_steppers(
                builders,
                x,
                y,
                compilation == "xla",
                args.warmup,
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            )
            times = harness.interleaved_times(steppers, args.rounds, args.steps)
            rows += harness.timed_rows(
                times, "merge", drop_rate=drop_rate, compilation=harness.compilation_name(compilation == "xla")
            )
    settings = (
        f"KerasHub ViTBackbone: {args.layers} layers (2 gated branches each), hidden {args.hidden}, 3 heads, "
        f"MLP {4 * args.hidden}, image {args.image}, patch {args.patch} ({(args.image // args.patch) ** 2 + 1} "
        f"tokens); mode subset, inverted, the same drop rate on every branch; batch {args.batch}, "
        f"{args.rounds} rounds of {args.steps} steps, {args.warmup} warm-up steps; random images"
    )
    harness.publish(markdown(rows, command, settings), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
