"""ShakeDrop's training step on a PyramidNet, as a ratio to the plain `Add`.

Follows the project's protocol (../shared/BENCHMARKS.md in the team docs):
every contender is built in this one process, warmed up, then timed in
interleaved rounds (`benchmarks.harness`); the table
reports the minimum and median seconds per step, the ratio of the minima to
the baseline, and the median of the per-round paired ratios (round i of a
contender over round i of `add`, timed next to each other, which a load
spike cannot fake). Run from the repository root:

    python -m benchmarks.shake_drop_step_time --rounds 8 # the committed table (about 40 min)
    python -m benchmarks.shake_drop_step_time --quick    # a smoke run (a few minutes: XLA compiles)

Contenders, all `stochastic_depth_tf.models.pyramidnet` of the same depth
and widening (linear decay to 0.5 over the blocks), on random CIFAR-shaped
data:

- `add`: the plain PyramidNet, `keras.layers.Add` (the baseline);
- `shake_drop`: `ShakeDrop` in every block with the defaults (one `b` per
  batch, one `alpha` and `beta` per example), the ShakeDrop paper's network;
- `shake_drop_element`: `ShakeDrop(mode="sample", shake_mode="element")`,
  one `b` per example and one `alpha`, `beta` per element; graph mode only
  unless `--element-under-xla`: under XLA on CPU, Keras' uniform draw
  (TensorFlow's `alg="auto_select"`) takes about 1.3 s per 2M floats
  against 15 ms in graph mode, so that contender would dominate the run;
- `stochastic_depth`: the `StochasticDepth` merge layer (multiplies by the
  gate, computes every block), for reference.

Every contender computes every branch: ShakeDrop cannot skip a dropped
branch (it is multiplied by `alpha`, not zero), so its cost is the draws
and the elementwise scaling on top of the add.
"""

from __future__ import annotations

import argparse
import functools
import os
from typing import Callable, Dict, List, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import stochastic_depth_tf as sdt  # noqa: E402
from benchmarks import harness  # noqa: E402

FINAL_SURVIVAL_PROBABILITY = 0.5


def contenders(depth: int, alpha: float, block: str, input_shape: tuple) -> Dict[str, Callable[[], keras.Model]]:
    def build(**kwargs: object) -> Callable[[], keras.Model]:
        return lambda: sdt.models.pyramidnet(
            depth,
            alpha,
            block=block,
            final_survival_probability=FINAL_SURVIVAL_PROBABILITY,
            seed=0,
            input_shape=input_shape,
            **kwargs,
        )

    return {
        "add": build(regularization=None),
        "shake_drop": build(regularization="shake_drop"),
        "shake_drop_element": build(regularization="shake_drop", mode="sample", shake_mode="element"),
        "stochastic_depth": build(regularization="stochastic_depth", skip_compute=False),
    }


def time_training(
    builders: Dict[str, Callable[[], keras.Model]],
    network: str,
    jit_compile: bool,
    x: np.ndarray,
    y: np.ndarray,
    rounds: int,
    steps: int,
    warmup: int,
) -> List[dict]:
    steppers = harness.train_steppers(builders, x, y, jit_compile, warmup, functools.partial(harness.momentum_sgd, 0.1))
    times = harness.interleaved_times(steppers, rounds, steps)
    return harness.timed_rows(
        times, "add", network=network, compilation=harness.compilation_name(jit_compile), what="train step"
    )


def time_serving(
    builders: Dict[str, Callable[[], keras.Model]], network: str, x: np.ndarray, rounds: int, steps: int
) -> List[dict]:
    """Exported SavedModels: ShakeDrop's inference is one scale of the residual."""
    times = harness.time_serving(builders, ("add", "shake_drop"), x, rounds, steps)
    return harness.timed_rows(times, "add", network=network, compilation="SavedModel", what="inference")


COLUMNS = [
    ("network", "network", ""),
    ("compilation", "compilation", ""),
    ("measure", "what", ""),
    ("contender", "contender", ""),
    *harness.TIMING_COLUMNS,
]


def markdown(rows: List[dict], command: str, settings: str) -> str:
    return harness.markdown(
        "ShakeDrop's step time against the plain `Add` PyramidNet",
        command,
        [
            settings,
            harness.ratio_note("add", "network, compilation and measure"),
            "the machine is shared with other jobs and noisy (about 10% between runs): read ratios, "
            "not seconds, and differences of a few percent as noise",
        ],
        COLUMNS,
        rows,
        plain="add",
        group=("network", "what"),
    )


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.shake_drop_step_time", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="PyramidNet-20, batch 16, 2 rounds of 2 steps: a smoke run"
    )
    parser.add_argument("--depth", type=int, default=110)
    parser.add_argument("--alpha", type=float, default=48.0)
    parser.add_argument("--block", choices=["basic", "bottleneck"], default="basic")
    parser.add_argument("--compilations", nargs="+", choices=["graph", "xla"], default=["graph", "xla"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=10, help="steps timed per contender per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-serving", action="store_true", help="skip the SavedModel latency rows")
    parser.add_argument(
        "--element-under-xla",
        action="store_true",
        help="time shake_drop_element under XLA too (slow on CPU, see the docstring)",
    )
    parser.add_argument("--output", default=None, help="write the Markdown table here too")
    args = parser.parse_args(argv)
    if args.quick:
        args.depth, args.block, args.batch, args.rounds, args.steps, args.warmup = 20, "basic", 16, 2, 2, 2

    command = harness.command_line("python -m benchmarks.shake_drop_step_time", argv)
    x, y = harness.random_batch(args.batch)
    builders = contenders(args.depth, args.alpha, args.block, x.shape[1:])
    network = f"PyramidNet-{args.depth} ({args.block}, alpha {args.alpha:g})"
    rows: List[dict] = []
    for compilation in args.compilations:
        print(f"{network}, {compilation}:", flush=True)
        jit_compile = compilation == "xla"
        timed = dict(builders)
        if jit_compile and not args.element_under_xla:
            timed["shake_drop_element"] = None
        rows += time_training(timed, network, jit_compile, x, y, args.rounds, args.steps, args.warmup)
    if not args.no_serving:
        print(f"{network}, SavedModel inference:", flush=True)
        rows += time_serving(builders, network, x, args.rounds, args.steps * 4)
    settings = (
        f"batch {args.batch}, {args.rounds} interleaved rounds of {args.steps} steps "
        f"(inference: {args.steps * 4} calls), {args.warmup} warm-up steps; linear decay to "
        f"p_L = {FINAL_SURVIVAL_PROBABILITY}; random CIFAR-shaped data, 32x32x3"
    )
    harness.publish(markdown(rows, command, settings), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
