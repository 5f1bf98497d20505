"""Why a conditional branch is slow under XLA on CPU, op by op, and the rewrite that fixes it.

Times one 3x3 convolution (64x32x32x32 activations, 3x3x32x32 filter) and
its two gradients, outside and inside `tf.cond`, in graph mode and under XLA,
with TensorFlow's stock gradient and with the canonical rewrite that
`StochasticDepthBlock` uses under XLA (`stochastic_depth_tf.backend.tensorflow_xla`). Interleaved
rounds in one process; milliseconds per call, min and median, and the ratio
of the conditional under XLA (rewritten where the rewrite applies) to the
same op outside it under XLA and to the fastest op outside a conditional.
Run from the repository root:

    python -m benchmarks.xla_conditional [--rounds 5] [--output FILE]
    python -m benchmarks.xla_conditional --quick   # 2 rounds of 1 call: a smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
from typing import Callable, Dict, List, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks import harness  # noqa: E402
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


def ratio_cells(times: Dict[tuple, List[float]], op: str) -> List[str]:
    """The op in a conditional under XLA (rewritten where it applies): ratios of its median.

    To the same op under XLA outside the conditional (the same compilation),
    and to the fastest op outside a conditional, graph or XLA (the plain
    configuration a user would pick).
    """

    def median(column: str) -> float:
        return statistics.median(times[(op, column)])

    in_conditional = median("XLA, in cond, rewritten" if (op, "XLA, in cond, rewritten") in times else "XLA, in cond")
    return [f"{in_conditional / median('XLA'):.2f}", f"{in_conditional / min(median('graph'), median('XLA')):.2f}"]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.xla_conditional", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 1 call: a smoke run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3, help="calls timed per round (the slow rows are seconds each)")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.calls = 2, 1

    columns = {
        "graph": dict(jit_compile=False, in_conditional=False, rewritten=False),
        "graph, in cond": dict(jit_compile=False, in_conditional=True, rewritten=False),
        "XLA": dict(jit_compile=True, in_conditional=False, rewritten=False),
        "XLA, in cond": dict(jit_compile=True, in_conditional=True, rewritten=False),
        "XLA, in cond, rewritten": dict(jit_compile=True, in_conditional=True, rewritten=True),
    }
    steppers: Dict[tuple, Callable] = {}
    keep = tf.constant(True)
    for op in OPS:
        for column, settings in columns.items():
            if op == "forward" and settings["rewritten"]:
                continue  # the rewrite only changes gradients
            function = make_function(op, **settings)
            function(keep).numpy()  # trace and compile
            steppers[(op, column)] = lambda function=function: function(keep).numpy()
    times = harness.interleaved_times(steppers, args.rounds, args.calls)

    ratio_headers = ["XLA in cond / XLA (median)", harness.FASTEST_PLAIN_COLUMN[0]]
    rows = []
    for op in OPS:
        cells = {
            column: "-"
            if (op, column) not in times
            else f"{min(times[(op, column)]) * 1000:.1f} / {statistics.median(times[(op, column)]) * 1000:.1f}"
            for column in columns
        }
        rows.append({"op": op, **cells, **dict(zip(ratio_headers, ratio_cells(times, op)))})
    table = harness.markdown(
        "One convolution and its gradients under XLA, outside and inside a conditional",
        harness.command_line("python -m benchmarks.xla_conditional", argv),
        [
            f"64x32x32x32 activations, 3x3x32x32 filter; ms per call, min / median of {args.rounds} interleaved "
            f"rounds of {args.calls} calls",
            "XLA in cond: the op inside `tf.cond` under XLA, with the rewritten gradient where it applies (what "
            "`StochasticDepthBlock` runs); its median over the same op's under XLA outside the conditional, and over "
            "the fastest op outside a conditional (graph or XLA)",
        ],
        [(header, header, "") for header in ["op", *columns, *ratio_headers]],
        rows,
    )
    harness.publish(table, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
