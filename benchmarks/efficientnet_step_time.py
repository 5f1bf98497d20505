"""EfficientNetB0 training step: our stochastic depth against keras.applications' own.

Follows the project's protocol (the team's BENCHMARKS.md): every contender
is built in this one process, warmed up, then timed in interleaved rounds
(`benchmarks.harness`); the table reports min and
median seconds per step and each one's ratio to keras.applications'
`EfficientNetB0` of the same drop rates and compilation, as the min of the
per-contender minima and as the median of the per-round paired ratios.
Run from the repository root:

    python -m benchmarks.efficientnet_step_time            # the committed table (about 10 min on 2 cores)
    python -m benchmarks.efficientnet_step_time --quick    # a smoke run (about a minute)

By default both settings are timed in graph mode and Keras' setting under
XLA too, with fewer steps there: XLA on CPU runs this network about 10
times slower per step (the depthwise convolutions' gradients), and it
compiles each contender for about a minute.

Two settings of the same expected drop rate per block for every contender:

- `keras`: Keras' own drop-connect rule, rate 0.2, `p_b = 1 - 0.2 * b / 16`
  (about 1 of the 9 residual blocks dropped per step);
- `linear`: the paper's linear decay over the 9 residual blocks to 0.5
  (2.5 dropped per step); Keras' model gets each block's `Dropout` rate
  set to `1 - p` of that block.

Contenders, all EfficientNetB0 with random weights, 10 classes:

- `keras`: `keras.applications.EfficientNetB0(weights=None)`, drop-connect
  `Dropout(noise_shape=(None, 1, 1, 1))` on each residual branch (the baseline);
- `add`: ours with `drop_connect_rate=0.0`, plain `Add` (no stochastic depth:
  what the merge layer cannot beat);
- `merge_sample`: ours with the defaults, the `StochasticDepth` merge layer
  with Keras' convention (per example, inverted);
- `block_batch`: ours with `mode="batch", skip_compute=True`:
  `StochasticDepthBlock`s that skip dropped branches.
"""

from __future__ import annotations

import argparse
import os
from typing import Callable, Dict, List, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import stochastic_depth_tf as sdt  # noqa: E402
from benchmarks import harness  # noqa: E402

CLASSES = 10
SETTINGS = {
    # name: (drop_connect_rate, distribution)
    "keras": (0.2, "keras"),
    "linear": (0.5, "linear"),
}
BASELINE = "keras"


def keras_efficientnet(size: int, setting: str) -> keras.Model:
    """keras.applications' EfficientNetB0, its drop-connect rates set to our blocks' `1 - p`."""
    model = keras.applications.EfficientNetB0(weights=None, input_shape=(size, size, 3), classes=CLASSES)
    rate, distribution = SETTINGS[setting]
    probabilities = sdt.models.efficientnet_survival_probabilities("b0", rate, distribution)
    drops = [layer for layer in model.layers if layer.name.endswith("_drop")]
    if len(drops) != len(probabilities):
        raise RuntimeError(
            f"expected {len(probabilities)} drop-connect layers in Keras' EfficientNetB0, found {len(drops)}"
        )
    for layer, probability in zip(drops, probabilities):
        layer.rate = 1.0 - probability  # read when the step is traced
    return model


def contenders(size: int, setting: str) -> Dict[str, Callable[[], keras.Model]]:
    rate, distribution = SETTINGS[setting]

    def ours(**kwargs: object) -> Callable[[], keras.Model]:
        arguments = {
            "input_shape": (size, size, 3),
            "classes": CLASSES,
            "seed": 0,
            "drop_connect_rate": rate,
            "distribution": distribution,
            **kwargs,
        }
        return lambda: sdt.models.EfficientNetB0(**arguments)

    return {
        "keras": lambda: keras_efficientnet(size, setting),
        "add": ours(drop_connect_rate=0.0),
        "merge_sample": ours(),
        "block_batch": ours(mode="batch", skip_compute=True),
    }


def expected_dropped_blocks(setting: str) -> float:
    rate, distribution = SETTINGS[setting]
    return sum(1.0 - p for p in sdt.models.efficientnet_survival_probabilities("b0", rate, distribution))


def time_training(
    setting: str, jit_compile: bool, x: np.ndarray, y: np.ndarray, rounds: int, steps: int, warmup: int
) -> List[dict]:
    """Interleaved training-step timings of every contender for one setting and compilation."""
    steppers = harness.train_steppers(contenders(x.shape[1], setting), x, y, jit_compile, warmup)
    times = harness.interleaved_times(steppers, rounds, steps)
    return harness.timed_rows(times, BASELINE, setting=setting, compilation=harness.compilation_name(jit_compile))


COLUMNS = [
    ("setting", "setting", ""),
    ("compilation", "compilation", ""),
    ("contender", "contender", ""),
    *harness.TIMING_COLUMNS,
]


def markdown(table_rows: List[dict], command: str, settings: str) -> str:
    return harness.markdown(
        "EfficientNetB0 training step: stochastic depth against keras.applications' drop-connect",
        command,
        [
            settings,
            "settings (same survival probability per block for every contender): "
            + "; ".join(
                f"`{name}` = rate {rate}, rule `{rule}`, {expected_dropped_blocks(name):.2f} of 9 residual blocks "
                "dropped per step in expectation"
                for name, (rate, rule) in SETTINGS.items()
            ),
            f"`{BASELINE}`: keras.applications EfficientNetB0",
            harness.ratio_note(BASELINE, "setting and compilation"),
        ],
        # `add` is the same network in every setting (drop_connect_rate=0): one fastest plain for the table.
        COLUMNS,
        table_rows,
        plain="add",
        configuration=("setting", "compilation"),
    )


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.efficientnet_step_time", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="32x32, batch 8, graph mode, the linear setting, 2 rounds of 2 steps: a smoke run",
    )
    parser.add_argument("--size", type=int, default=64, help="image height and width (at least 32)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument(
        "--graph-settings",
        nargs="*",
        choices=list(SETTINGS),
        default=list(SETTINGS),
        help="settings timed in graph mode (jit_compile=False)",
    )
    parser.add_argument(
        "--xla-settings",
        nargs="*",
        choices=list(SETTINGS),
        default=["keras"],
        help="settings timed under XLA (jit_compile=True; about 10x slower per step on CPU)",
    )
    # Many short rounds: the median of paired per-round ratios is what a load
    # spike on a shared machine cannot fake.
    parser.add_argument("--rounds", type=int, default=12, help="graph-mode rounds")
    parser.add_argument("--steps", type=int, default=4, help="graph-mode steps timed per contender per round")
    parser.add_argument("--xla-rounds", type=int, default=6)
    parser.add_argument("--xla-steps", type=int, default=2, help="XLA steps timed per contender per round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--output", default=None, help="write the Markdown table here too")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.batch, args.graph_settings, args.xla_settings = 32, 8, ["linear"], []
        args.rounds, args.steps, args.warmup = 2, 2, 1

    command = harness.command_line("python -m benchmarks.efficientnet_step_time", argv)
    # Pixel values in [0, 255]: the preprocessing is in the model.
    x, y = harness.random_batch(args.batch, (args.size, args.size, 3), CLASSES, pixel_range=(0.0, 255.0))
    table_rows: List[dict] = []
    groups = [(setting, False, args.rounds, args.steps) for setting in args.graph_settings]
    groups += [(setting, True, args.xla_rounds, args.xla_steps) for setting in args.xla_settings]
    for setting, jit_compile, rounds, steps in groups:
        print(f"EfficientNetB0, setting {setting}, {'XLA' if jit_compile else 'graph'}:", flush=True)
        table_rows += time_training(setting, jit_compile, x, y, rounds, steps, args.warmup)
    settings = (
        f"EfficientNetB0, {args.size}x{args.size}x3 random images, batch {args.batch}, "
        f"{args.rounds} rounds of {args.steps} steps ({args.xla_rounds} of {args.xla_steps} under XLA), "
        f"{args.warmup} warm-up steps, SGD with momentum"
    )
    harness.publish(markdown(table_rows, command, settings), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
