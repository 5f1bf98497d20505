"""Training step time and SavedModel latency of stochastic depth, as ratios to `Add`.

Follows the project's protocol (../shared/BENCHMARKS.md in the team docs):
every contender is built in this one process, warmed up, then timed in
interleaved rounds; the table reports the minimum and the median seconds per
step and each one's ratio to the plain-`Add` network of the same depth and
compilation. Run from the repository root:

    python -m benchmarks.step_time            # the committed table (about 30 min)
    python -m benchmarks.step_time --quick    # a smoke run (about a minute)
    python -m benchmarks.step_time --data digits --depths 32 --rounds 10 --steps 10   # the demo's size
    python -m benchmarks.step_time --backend tensorflow jax torch --depths 56 --no-serving   # every backend

Keras fixes its backend at import, so `--backend` names other than the
running one (`KERAS_BACKEND`, TensorFlow by default) run this script again
in a fresh interpreter per backend, and their rows come back into one
table. Ratios are measured within each backend's process; the absolute
seconds say which backend trains the network fastest on this machine.
Compilations: `graph` is `jit_compile=False` (TensorFlow's graph mode;
PyTorch's eager mode), `xla` is `jit_compile=True` (TensorFlow's XLA; the
jitted JAX step; `torch.compile`). Defaults: both on TensorFlow, `xla` on
JAX (an un-jitted JAX step runs op by op), `graph` on PyTorch. SavedModel
inference rows are TensorFlow's only.

Contenders, all on `stochastic_depth_tf.models.cifar_resnet` with the
paper's linear decay to 0.5:

- `add`: the plain ResNet, `keras.layers.Add` (the baseline);
- `merge_batch`, `merge_sample`: our `StochasticDepth` merge layer in every
  block, one gate per batch or per example;
- `block`: our `StochasticDepthBlock`, which skips dropped branches;
- `keras_dropout`: Keras' own idiom, `Dropout(1 - p, noise_shape=(None, 1,
  1, 1))` on the residual before the `Add` (as keras.applications
  EfficientNet does);
- `keras_cv`: KerasCV's `StochasticDepth(rate=1 - p)`, when importable
  (TensorFlow only).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import stochastic_depth_tf as sdt  # noqa: E402
from benchmarks import harness  # noqa: E402
from benchmarks.harness import BACKEND, device_description  # noqa: E402,F401  (device_description: this table's device)

FINAL_SURVIVAL_PROBABILITY = 0.5
CIFAR_SHAPE = harness.CIFAR_SHAPE
BACKENDS = tuple(harness.COMPILATION_NAMES)
DEFAULT_COMPILATIONS = {"tensorflow": ["graph", "xla"], "jax": ["xla"], "torch": ["graph"]}
Shape = Sequence[int]


def _replace_adds(plain: keras.Model, make_merge: Callable[[float, str], Callable]) -> keras.Model:
    """Clones the plain network, calling `make_merge(p, name)` where each `Add` was."""
    adds = [layer for layer in plain.layers if isinstance(layer, keras.layers.Add)]
    probabilities = dict(zip((a.name for a in adds), sdt.schedules.linear_decay(len(adds), FINAL_SURVIVAL_PROBABILITY)))

    def call_function(layer, *args, **kwargs):
        if isinstance(layer, keras.layers.Add):
            return make_merge(probabilities[layer.name], layer.name)(*args, **kwargs)
        return layer(*args, **kwargs)

    return keras.models.clone_model(plain, call_function=call_function)


def keras_dropout_network(depth: int, input_shape: Shape) -> keras.Model:
    def make_merge(p: float, name: str) -> Callable:
        def merge(inputs, **kwargs):
            shortcut, residual = inputs
            dropped = keras.layers.Dropout(1.0 - p, noise_shape=(None, 1, 1, 1), name=name + "_drop")(residual)
            return keras.layers.Add(name=name)([shortcut, dropped])

        return merge

    return _replace_adds(plain_network(depth, input_shape), make_merge)


def keras_cv_network(depth: int, input_shape: Shape) -> Optional[keras.Model]:
    if BACKEND != "tensorflow":  # KerasCV's layers are TensorFlow's
        return None
    try:
        import keras_cv
    except ImportError:
        return None

    def make_merge(p: float, name: str) -> Callable:
        return keras_cv.layers.StochasticDepth(rate=1.0 - p, name=name)

    return _replace_adds(plain_network(depth, input_shape), make_merge)


def plain_network(depth: int, input_shape: Shape) -> keras.Model:
    return sdt.models.cifar_resnet(depth=depth, final_survival_probability=1.0, input_shape=input_shape)


def contenders(depth: int, input_shape: Shape = CIFAR_SHAPE) -> Dict[str, Callable[[], Optional[keras.Model]]]:
    def stochastic(**kwargs: object) -> Callable[[], keras.Model]:
        return lambda: sdt.models.cifar_resnet(
            depth=depth,
            final_survival_probability=FINAL_SURVIVAL_PROBABILITY,
            seed=0,
            input_shape=input_shape,
            **kwargs,
        )

    return {
        "add": lambda: plain_network(depth, input_shape),
        "merge_batch": stochastic(skip_compute=False),
        "merge_sample": stochastic(skip_compute=False, mode="sample"),
        "block": stochastic(skip_compute=True),
        "keras_dropout": lambda: keras_dropout_network(depth, input_shape),
        "keras_cv": lambda: keras_cv_network(depth, input_shape),
    }


def batch_of(data: str, batch: int) -> Tuple[np.ndarray, np.ndarray]:
    """One training batch: random CIFAR-shaped images, or the first images of the bundled digits."""
    if data == "digits":
        x, y = sdt.datasets.load_digits()["train"]
        if batch > len(x):
            raise ValueError(
                f"Invalid value received for argument `batch`. Expected at most {len(x)} "
                f"with --data digits. Received: batch={batch}"
            )
        return x[:batch], y[:batch]
    return harness.random_batch(batch, CIFAR_SHAPE)


def time_training(
    depth: int,
    jit_compile: bool,
    x: np.ndarray,
    y: np.ndarray,
    rounds: int,
    steps: int,
    warmup: int,
    recipe: Optional[sdt.recipes.Recipe] = None,
) -> List[dict]:
    """Interleaved training-step timings of every contender at one depth and compilation.

    With a `recipe` (the digits mode: `sdt.recipes.DIGITS`, the demo's) the
    step uses its optimizer: Nesterov SGD with weight decay and its schedule.
    """
    optimizer = (
        functools.partial(sdt.recipes.optimizer, recipe, steps_per_epoch=20)
        if recipe is not None
        else harness.momentum_sgd
    )
    steppers = harness.train_steppers(contenders(depth, x.shape[1:]), x, y, jit_compile, warmup, optimizer)
    times = harness.interleaved_times(steppers, rounds, steps)
    return _rows(times, f"ResNet-{depth}", harness.compilation_name(jit_compile), "train step")


def time_serving(depth: int, x: np.ndarray, rounds: int, steps: int) -> List[dict]:
    """Interleaved latency of exported SavedModels (inference: every block computed)."""
    times = harness.time_serving(contenders(depth, x.shape[1:]), ("add", "merge_batch", "block"), x, rounds, steps)
    return _rows(times, f"ResNet-{depth}", "SavedModel", "inference")


def _rows(times: Dict[str, List[float]], network: str, compilation: str, what: str) -> List[dict]:
    return harness.timed_rows(times, "add", backend=BACKEND, network=network, compilation=compilation, what=what)


COLUMNS = [
    ("backend", "backend", ""),
    ("network", "network", ""),
    ("compilation", "compilation", ""),
    ("measure", "what", ""),
    ("contender", "contender", ""),
    *harness.TIMING_COLUMNS,
]


def markdown(rows: List[dict], command: str, settings: str, environments: Optional[List[dict]] = None) -> str:
    return harness.markdown(
        "Step time of stochastic depth against the plain `Add` network",
        command,
        [
            settings,
            "min and median over interleaved rounds, seconds per step",
            harness.ratio_note("add", "backend, network, compilation and measure"),
        ],
        COLUMNS,
        rows,
        environments,
        plain="add",
        group=("network", "what"),
        configuration=("backend", "compilation"),
    )


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.step_time", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="ResNet-8, small batch, 2 rounds: a smoke run")
    parser.add_argument("--depths", type=int, nargs="+", default=[56, 110])
    parser.add_argument(
        "--backend",
        nargs="+",
        choices=BACKENDS,
        default=[BACKEND],
        help="Keras backends to measure (default: the running one, KERAS_BACKEND)",
    )
    parser.add_argument(
        "--compilations",
        nargs="+",
        choices=["graph", "xla"],
        default=None,
        help="jit_compile=False (graph) and/or True (xla); default: see the module docstring",
    )
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="steps timed per contender per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-serving", action="store_true", help="skip the SavedModel latency rows")
    parser.add_argument("--output", default=None, help="write the Markdown table here too")
    parser.add_argument(
        "--data",
        choices=["cifar-shaped", "digits"],
        default="cifar-shaped",
        help="random 32x32x3 images (default) or the demo's bundled digits, 12x12x1",
    )
    parser.add_argument("--rows-json", default=None, help=argparse.SUPPRESS)  # rows for the parent process
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.quick:
        args.depths, args.batch, args.rounds, args.steps, args.warmup = [8], 16, 2, 2, 2

    command = harness.command_line("python -m benchmarks.step_time", harness.without_options(argv, ["--rows-json"]))
    rows: List[dict] = []
    environments: List[dict] = []
    if args.backend != [BACKEND]:
        passed_on = harness.without_options(argv, ["--backend", "--output", "--rows-json"])
        for backend in dict.fromkeys(args.backend):
            print(f"===== KERAS_BACKEND={backend} =====", flush=True)
            found = harness.rows_from_backend("benchmarks.step_time", backend, passed_on)
            backend_rows, backend_environment = found["rows"], found["environment"]
            rows += backend_rows
            environments.append(backend_environment)
    else:
        x, y = batch_of(args.data, args.batch)
        for depth in args.depths:
            for compilation in args.compilations or DEFAULT_COMPILATIONS[BACKEND]:
                print(f"ResNet-{depth}, {harness.COMPILATION_NAMES[BACKEND][compilation]}:", flush=True)
                rows += time_training(
                    depth,
                    compilation == "xla",
                    x,
                    y,
                    args.rounds,
                    args.steps,
                    args.warmup,
                    recipe=sdt.recipes.DIGITS if args.data == "digits" else None,
                )
            if not args.no_serving and BACKEND == "tensorflow":
                print(f"ResNet-{depth}, SavedModel inference:", flush=True)
                rows += time_serving(depth, x, args.rounds, args.steps * 4)
        environments.append(harness.environment())
        if args.rows_json:
            with open(args.rows_json, "w", encoding="utf-8") as handle:
                json.dump({"rows": rows, "environment": environments[0]}, handle)
            return 0
    settings = (
        f"batch {args.batch}, {args.rounds} rounds of {args.steps} steps (inference: {args.steps * 4} calls), "
        f"{args.warmup} warm-up steps; linear decay to p_L = {FINAL_SURVIVAL_PROBABILITY}; "
        f"{'the bundled digits, 12x12x1, the optimizer of sdt.recipes.DIGITS' if args.data == 'digits' else 'random CIFAR-shaped data, 32x32x3'}"
    )
    harness.publish(markdown(rows, command, settings, environments), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
