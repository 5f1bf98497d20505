"""Expected time per epoch of the paper's CIFAR-10 setting on this machine, from a few timed steps.

The README's CIFAR-10 command (`python -m stochastic_depth_tf --dataset
cifar10 --depth 110`) trains a plain and a stochastic-depth ResNet-110 with
`sdt.recipes.PAPER` (batch 128, SGD with Nesterov momentum, 4-pixel shifts
and flips). An epoch takes too long to time whole on a CPU, and the machine
may be offline, so this script times steps of the same training and
multiplies: the model and compiled step of `recipes.Trainer`, fed by
`recipes.training_dataset` (shuffle, batch, augmentation, prefetch), on
random arrays of CIFAR-10's shape (32x32x3 in [0, 1), 10 classes) instead of
the download. Run from the repository root:

    python -m benchmarks.cifar10_epoch_time --output benchmarks/results/cifar10_epoch_time.md  # 6 to 15 min
    python -m benchmarks.cifar10_epoch_time --quick   # ResNet-8, a smoke run (about 1 min)

Protocol: each model is built and traced, warmed up for `--warmup` steps,
then timed in `--rounds` interleaved rounds (plain, stochastic, plain, ...)
of `--steps` steps, each round one `fit` call. The first step of a `fit`
call waits for the shuffle buffer (all training images) to fill; it is
reported apart as "pass start" and counted once per epoch. The validation
pass the demo runs after every epoch (5,000 images at Keras' default batch
32) is timed on `--validation-images` images and scaled. The estimate is

    epoch = steps per epoch * mean step + (mean pass start - mean step) + validation

with the mean step, not the minimum: an epoch is a sum of steps, and the
random gates of stochastic depth make its steps vary in length. On a machine
shared with other jobs the seconds are those of that load: the table records
the load average at the start and end.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from typing import Dict, List, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import harness  # noqa: E402
from benchmarks._machine import load_average  # noqa: E402
from stochastic_depth_tf import recipes  # noqa: E402

# CIFAR-10: 50,000 training images, of which the demo holds out 5,000 for validation as the paper does.
CIFAR10_TRAIN = 50_000
CIFAR10_VALIDATION = 5_000
CIFAR10_SHAPE = (32, 32, 3)
# Keras' batch size for `fit(validation_data=(x, y))` when none is given.
VALIDATION_BATCH_SIZE = 32


def random_cifar10(num_train: int, num_validation: int, seed: int = 0) -> Dict[str, tuple]:
    """Random arrays of CIFAR-10's shape, split as `stochastic_depth_tf.__main__.load_data` splits it."""
    rng = np.random.default_rng(seed)

    def split(n: int) -> tuple:
        return rng.random((n, *CIFAR10_SHAPE), dtype=np.float32), rng.integers(0, 10, n).astype("int64")

    return {"train": split(num_train), "validation": split(num_validation)}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cifar10_epoch_time", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="ResNet-8, 1 round of 3 steps: a smoke run")
    parser.add_argument("--depth", type=int, default=110)
    parser.add_argument("--batch-size", type=int, default=recipes.PAPER.batch_size)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="steps timed per model per round")
    parser.add_argument("--warmup", type=int, default=3, help="steps after tracing, before any timing")
    parser.add_argument(
        "--validation-images",
        type=int,
        default=1024,
        help="validation images timed per model per round, scaled to 5,000",
    )
    parser.add_argument("--output", default=None, help="write the Markdown table here too")
    args = parser.parse_args(argv)
    if args.quick:
        args.depth, args.rounds, args.steps, args.warmup, args.validation_images = 8, 1, 3, 1, 256
    command = harness.command_line("python -m benchmarks.cifar10_epoch_time", argv)
    load_at_start = load_average()

    recipe = recipes.PAPER.replace(batch_size=args.batch_size)
    num_train = CIFAR10_TRAIN - CIFAR10_VALIDATION
    data = random_cifar10(num_train, CIFAR10_VALIDATION)
    x_val, y_val = data["validation"][0][: args.validation_images], data["validation"][1][: args.validation_images]
    # The demo's default p_L, which `Trainer` builds its stochastic model with.
    survival = {"plain": 1.0, "stochastic depth": 0.5}
    trainers: Dict[str, recipes.Trainer] = {}
    first_call: Dict[str, float] = {}
    for name, p in survival.items():
        started = time.perf_counter()
        trainers[name] = recipes.Trainer(data, recipe, depth=args.depth, plain=p == 1.0, validation=False)
        keras.utils.set_random_seed(0)
        # The first step traces the training function; the evaluation on 64 images traces the test function.
        harness.fit_step_seconds(
            trainers[name].model, recipes.training_dataset(recipe, *data["train"], seed=0), 1 + args.warmup
        )
        trainers[name].model.evaluate(x_val[:64], y_val[:64], batch_size=VALIDATION_BATCH_SIZE, verbose=0)
        first_call[name] = time.perf_counter() - started
        print(
            f"{name}: built, traced and warmed up in {first_call[name]:.0f} s (load average {load_average()})",
            flush=True,
        )

    steps: Dict[str, List[float]] = {name: [] for name in survival}
    pass_starts: Dict[str, List[float]] = {name: [] for name in survival}
    validation: Dict[str, List[float]] = {name: [] for name in survival}
    for round_ in range(args.rounds):
        for name, trainer in trainers.items():
            seconds = harness.fit_step_seconds(
                trainer.model, recipes.training_dataset(recipe, *data["train"], seed=round_), 1 + args.steps
            )
            pass_starts[name].append(seconds[0])
            steps[name] += seconds[1:]
            started = time.perf_counter()
            trainer.model.evaluate(x_val, y_val, batch_size=VALIDATION_BATCH_SIZE, verbose=0)
            validation[name].append((time.perf_counter() - started) / len(x_val))
        print(
            f"round {round_ + 1} of {args.rounds}: "
            + ", ".join(f"{name} {statistics.mean(steps[name][-args.steps :]):.3f} s / step" for name in trainers)
            + f" (load average {load_average()})",
            flush=True,
        )
    load_at_end = load_average()

    steps_45k = math.ceil(num_train / recipe.batch_size)
    steps_50k = math.ceil(CIFAR10_TRAIN / recipe.batch_size)
    rows = []
    for name in trainers:
        mean_step = statistics.mean(steps[name])
        pass_start_extra = max(0.0, statistics.mean(pass_starts[name]) - mean_step)
        validation_seconds = statistics.mean(validation[name]) * CIFAR10_VALIDATION
        epoch_45k = steps_45k * mean_step + pass_start_extra + validation_seconds
        rows.append(
            {
                "contender": name,
                "min": min(steps[name]),
                "median": statistics.median(steps[name]),
                "mean": mean_step,
                "pass_start": pass_start_extra,
                "validation": validation_seconds,
                "epoch_50k": steps_50k * mean_step,
                "epoch_45k": epoch_45k,
                "hours": recipe.epochs * epoch_45k / 3600,
                "first_call": first_call[name],
            }
        )
    compilation = harness.compilation_name(bool(trainers["plain"].model.jit_compile))
    for row in rows:
        row["compilation"] = compilation
        row["ratio_to_plain"] = row["epoch_45k"] / rows[0]["epoch_45k"]
    notes = harness.add_fastest_plain(rows, "plain", key="epoch_45k")
    columns = [
        ("model", "contender", ""),
        ("compilation", "compilation", ""),
        *harness.timing_columns(("min", "median", "mean"), per=" / step", spec=".3f"),
        ("pass start s", "pass_start", ".1f"),
        ("validation s", "validation", ".1f"),
        ("epoch, 50,000 images, s", "epoch_50k", ".0f"),
        ("epoch, demo, s", "epoch_45k", ".0f"),
        ("ratio to plain", "ratio_to_plain", ".2f"),
        ("ratio to fastest plain (demo epoch)", harness.FASTEST_PLAIN, ".2f"),
        (f"{recipe.epochs} epochs, h", "hours", ".0f"),
        ("build + trace + warm-up s", "first_call", ".0f"),
    ]
    table = harness.markdown(
        f"Time per epoch of the paper's CIFAR-10 setting: ResNet-{args.depth}, batch {recipe.batch_size}",
        command,
        [
            f"load average (1, 5, 15 min): {load_at_start} at the start, {load_at_end} at the end",
            f"`recipes.Trainer` with `recipes.PAPER` (batch {recipe.batch_size}, shifts and flips), {compilation} "
            f"(the Trainer's choice on this device); stochastic depth: `StochasticDepthBlock`, batch gates, linear "
            f"decay to p_L = {survival['stochastic depth']}; random arrays of CIFAR-10's shape, {num_train:,} training "
            f"and {CIFAR10_VALIDATION:,} validation images",
            f"{args.warmup} warm-up steps after tracing, then {args.rounds} interleaved rounds of {args.steps} "
            f"timed steps per model ({args.rounds * args.steps} steps each); validation timed on "
            f"{len(x_val)} images per round at batch {VALIDATION_BATCH_SIZE}, scaled to {CIFAR10_VALIDATION:,}",
            f"epoch, 50,000 images: {steps_50k} steps x mean step (all of CIFAR-10's training set, no validation); "
            f"epoch, demo: {steps_45k} steps (45,000 images) x mean step + pass start + validation, "
            f"what `python -m stochastic_depth_tf --dataset cifar10` runs; {recipe.epochs} epochs: the paper's schedule",
            "ratio to fastest plain: the demo epoch over the fastest plain one measured in this run (one compilation "
            "here, the Trainer's, so it equals the ratio to plain)",
            *notes,
        ],
        columns,
        rows,
    )
    harness.publish(table, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
