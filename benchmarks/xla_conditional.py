"""Why a conditional branch is slow under XLA on CPU, op by op, and the rewrite that fixes it.

Times one 3x3 convolution (64x32x32x32 activations, 3x3x32x32 filter) and
its two gradients, outside and inside `tf.cond`, in graph mode and under XLA,
with TensorFlow's stock gradient and with the canonical rewrite that
`StochasticDepthBlock` uses under XLA (`stochastic_depth_tf.backend.tensorflow_xla`). Interleaved
rounds in one process; milliseconds per call, min and median. Run from the
repository root:

    python -m benchmarks.xla_conditional [--rounds 5] [--output FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from stochastic_depth_tf.backend import tensorflow_xla  # noqa: E402

OPS = ("forward", "filter gradient", "input gradient")


def make_function(op: str, jit_compile: bool, in_conditional: bool, rewritten: bool) -> Callable:
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(64, 32, 32, 32)).astype("float32"))
    w = tf.Variable(rng.normal(size=(3, 3, 32, 32)).astype("float32") * 0.05)
    upstream = tf.constant(rng.normal(size=(64, 32, 32, 32)).astype("float32"))

    def convolution():
        scope = tensorflow_xla.canonical_conv2d_gradient_scope() if rewritten else contextlib.nullcontext()
        with scope:
            return tf.nn.conv2d(x, w, 1, "SAME")

    # The gradient is taken outside the conditional, as in a training step:
    # the conditional's own gradient differentiates its branch with
    # tf.gradients, which is what honours the rewrite.
    @tf.function(jit_compile=jit_compile)
    def run(keep):
        with tf.GradientTape() as tape:
            tape.watch(x)
            if in_conditional:
                y = tf.cond(keep, convolution, lambda: tf.zeros_like(upstream))
            else:
                y = convolution()
        if op == "forward":
            return tf.reduce_sum(y)
        target = w if op == "filter gradient" else x
        return tf.reduce_sum(tape.gradient(y, target, upstream))

    return run


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.xla_conditional", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3, help="calls timed per round (the slow rows are seconds each)")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)

    columns = {
        "graph": dict(jit_compile=False, in_conditional=False, rewritten=False),
        "graph, in cond": dict(jit_compile=False, in_conditional=True, rewritten=False),
        "XLA": dict(jit_compile=True, in_conditional=False, rewritten=False),
        "XLA, in cond": dict(jit_compile=True, in_conditional=True, rewritten=False),
        "XLA, in cond, rewritten": dict(jit_compile=True, in_conditional=True, rewritten=True),
    }
    functions: Dict[tuple, Callable] = {}
    keep = tf.constant(True)
    for op in OPS:
        for column, settings in columns.items():
            if op == "forward" and settings["rewritten"]:
                continue  # the rewrite only changes gradients
            function = make_function(op, **settings)
            function(keep).numpy()  # trace and compile
            functions[(op, column)] = function
    times: Dict[tuple, List[float]] = {key: [] for key in functions}
    for round_index in range(args.rounds):
        keys = list(functions) if round_index % 2 == 0 else list(reversed(functions))
        for key in keys:
            started = time.perf_counter()
            for _ in range(args.calls):
                functions[key](keep).numpy()
            times[key].append((time.perf_counter() - started) / args.calls * 1000)

    command = "python -m benchmarks.xla_conditional " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "# One convolution and its gradients under XLA, outside and inside a conditional",
        "",
        f"- date: {datetime.date.today().isoformat()}; nproc {os.cpu_count()}; TensorFlow {tf.__version__}, Keras {keras.__version__}",
        f"- command: `{command.strip()}`",
        f"- 64x32x32x32 activations, 3x3x32x32 filter; ms per call, min / median of {args.rounds} interleaved rounds of {args.calls} calls",
        "",
        "| op | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for op in OPS:
        cells = []
        for column in columns:
            values = times.get((op, column))
            cells.append("-" if values is None else f"{min(values):.1f} / {statistics.median(values):.1f}")
        lines.append(f"| {op} | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
