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
    python -m benchmarks.cifar10_epoch_time --quick   # ResNet-20, a smoke run (about 1 min)

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
import datetime
import math
import os
import platform
import statistics
import sys
import time
from typing import Dict, List, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import stochastic_depth_tf as sdt  # noqa: E402
from benchmarks.step_time import device_description, publish  # noqa: E402
from stochastic_depth_tf import recipes  # noqa: E402

# CIFAR-10: 50,000 training images, of which the demo holds out 5,000 for validation as the paper does.
CIFAR10_TRAIN = 50_000
CIFAR10_VALIDATION = 5_000
CIFAR10_SHAPE = (32, 32, 3)
# Keras' batch size for `fit(validation_data=(x, y))` when none is given.
VALIDATION_BATCH_SIZE = 32


class StepTimer(keras.callbacks.Callback):
    """Wall-clock seconds of every training step of a `fit` call."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: List[float] = []

    def on_train_batch_begin(self, batch: int, logs: Optional[dict] = None) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: Optional[dict] = None) -> None:
        self.seconds.append(time.perf_counter() - self._started)


def random_cifar10(num_train: int, num_validation: int, seed: int = 0) -> Dict[str, tuple]:
    """Random arrays of CIFAR-10's shape, split as `stochastic_depth_tf.__main__.load_data` splits it."""
    rng = np.random.default_rng(seed)

    def split(n: int) -> tuple:
        return rng.random((n, *CIFAR10_SHAPE), dtype=np.float32), rng.integers(0, 10, n).astype("int64")

    return {"train": split(num_train), "validation": split(num_validation)}


def load_average() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def fit_steps(trainer: recipes.Trainer, dataset: tf.data.Dataset, steps: int) -> List[float]:
    timer = StepTimer()
    # shuffle=False: the dataset shuffles itself, as in Trainer.run.
    trainer.model.fit(dataset, epochs=1, steps_per_epoch=steps, callbacks=[timer], shuffle=False, verbose=0)
    return timer.seconds


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cifar10_epoch_time",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="ResNet-20, 1 round of 3 steps: a smoke run")
    parser.add_argument("--depth", type=int, default=110)
    parser.add_argument("--batch-size", type=int, default=recipes.PAPER.batch_size)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="steps timed per model per round")
    parser.add_argument("--warmup", type=int, default=3, help="steps after tracing, before any timing")
    parser.add_argument("--validation-images", type=int, default=1024,
                        help="validation images timed per model per round, scaled to 5,000")
    parser.add_argument("--output", default=None, help="write the Markdown table here too")
    args = parser.parse_args(argv)
    if args.quick:
        args.depth, args.rounds, args.steps, args.warmup, args.validation_images = 20, 1, 3, 1, 256
    command = "python -m benchmarks.cifar10_epoch_time " + " ".join(argv if argv is not None else sys.argv[1:])
    load_at_start = load_average()

    recipe = recipes.PAPER.replace(batch_size=args.batch_size)
    num_train = CIFAR10_TRAIN - CIFAR10_VALIDATION
    data = random_cifar10(num_train, CIFAR10_VALIDATION)
    x_val, y_val = data["validation"][0][:args.validation_images], data["validation"][1][:args.validation_images]
    # The demo's default p_L, which `Trainer` builds its stochastic model with.
    survival = {"plain": 1.0, "stochastic depth": 0.5}
    trainers: Dict[str, recipes.Trainer] = {}
    first_call: Dict[str, float] = {}
    for name, p in survival.items():
        started = time.perf_counter()
        trainers[name] = recipes.Trainer(data, recipe, depth=args.depth, plain=p == 1.0, validation=False)
        keras.utils.set_random_seed(0)
        # The first step traces the training function; the evaluation on 64 images traces the test function.
        fit_steps(trainers[name], recipes.training_dataset(recipe, *data["train"], seed=0), 1 + args.warmup)
        trainers[name].model.evaluate(x_val[:64], y_val[:64], batch_size=VALIDATION_BATCH_SIZE, verbose=0)
        first_call[name] = time.perf_counter() - started
        print(f"{name}: built, traced and warmed up in {first_call[name]:.0f} s (load average {load_average()})",
              flush=True)

    steps: Dict[str, List[float]] = {name: [] for name in survival}
    pass_starts: Dict[str, List[float]] = {name: [] for name in survival}
    validation: Dict[str, List[float]] = {name: [] for name in survival}
    for round_ in range(args.rounds):
        for name, trainer in trainers.items():
            seconds = fit_steps(trainer, recipes.training_dataset(recipe, *data["train"], seed=round_), 1 + args.steps)
            pass_starts[name].append(seconds[0])
            steps[name] += seconds[1:]
            started = time.perf_counter()
            trainer.model.evaluate(x_val, y_val, batch_size=VALIDATION_BATCH_SIZE, verbose=0)
            validation[name].append((time.perf_counter() - started) / len(x_val))
        print(f"round {round_ + 1} of {args.rounds}: "
              + ", ".join(f"{name} {statistics.mean(steps[name][-args.steps:]):.3f} s / step" for name in trainers)
              + f" (load average {load_average()})", flush=True)
    load_at_end = load_average()

    steps_45k = math.ceil(num_train / recipe.batch_size)
    steps_50k = math.ceil(CIFAR10_TRAIN / recipe.batch_size)
    rows = []
    for name in trainers:
        mean_step = statistics.mean(steps[name])
        pass_start_extra = max(0.0, statistics.mean(pass_starts[name]) - mean_step)
        validation_seconds = statistics.mean(validation[name]) * CIFAR10_VALIDATION
        epoch_45k = steps_45k * mean_step + pass_start_extra + validation_seconds
        rows.append({
            "model": name, "min": min(steps[name]), "median": statistics.median(steps[name]), "mean": mean_step,
            "pass_start": pass_start_extra, "validation": validation_seconds,
            "epoch_50k": steps_50k * mean_step, "epoch_45k": epoch_45k,
            "hours": recipe.epochs * epoch_45k / 3600, "first_call": first_call[name],
        })
    plain_epoch = rows[0]["epoch_45k"]

    lines = [
        f"# Time per epoch of the paper's CIFAR-10 setting: ResNet-{args.depth}, batch {recipe.batch_size}",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {platform.machine()}, "
        f"nproc {os.cpu_count()}; TensorFlow {tf.__version__}, Keras {keras.__version__}, "
        f"stochastic_depth_tf {sdt.__version__}",
        f"- device: {device_description()}",
        f"- command: `{command.strip()}`",
        f"- load average (1, 5, 15 min): {load_at_start} at the start, {load_at_end} at the end",
        f"- `recipes.Trainer` with `recipes.PAPER` (batch {recipe.batch_size}, shifts and flips), graph mode; "
        f"stochastic depth: `StochasticDepthBlock`, batch gates, linear decay to p_L = {survival['stochastic depth']}; "
        f"random arrays of CIFAR-10's shape, {num_train:,} training and {CIFAR10_VALIDATION:,} validation images",
        f"- {args.warmup} warm-up steps after tracing, then {args.rounds} interleaved rounds of {args.steps} "
        f"timed steps per model ({args.rounds * args.steps} steps each); validation timed on "
        f"{len(x_val)} images per round at batch {VALIDATION_BATCH_SIZE}, scaled to {CIFAR10_VALIDATION:,}",
        f"- epoch, 50,000 images: {steps_50k} steps x mean step (all of CIFAR-10's training set, no validation); "
        f"epoch, demo: {steps_45k} steps (45,000 images) x mean step + pass start + validation, "
        f"what `python -m stochastic_depth_tf --dataset cifar10` runs; {recipe.epochs} epochs: the paper's schedule",
        "",
        "| model | min s / step | median s / step | mean s / step | pass start s | validation s "
        f"| epoch, 50,000 images, s | epoch, demo, s | ratio to plain | {recipe.epochs} epochs, h | build + trace + warm-up s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['min']:.3f} | {row['median']:.3f} | {row['mean']:.3f} | {row['pass_start']:.1f} "
            f"| {row['validation']:.1f} | {row['epoch_50k']:.0f} | {row['epoch_45k']:.0f} "
            f"| {row['epoch_45k'] / plain_epoch:.2f} | {row['hours']:.0f} | {row['first_call']:.0f} |"
        )
    table = "\n".join(lines) + "\n"
    publish(table, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
