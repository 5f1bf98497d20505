"""Inference latency of a pruned network against the full one (`sdt.prune_blocks`).

    python -m benchmarks.prune_latency                  # ResNet-110, batch 32, 7 rounds
    python -m benchmarks.prune_latency --quick          # batch 8, 9 rounds of 5 batches
    python -m benchmarks.prune_latency --quick --output benchmarks/results/prune_latency.md

One process builds the paper's CIFAR ResNet (`sdt.models.cifar_resnet`,
stochastic depth, linear decay to 0.5) and its pruned copies at several
kept fractions (`rule="lowest_survival"`, deepest blocks first), then times
`predict_on_batch` (the backend's compiled inference step: a `tf.function`,
a jitted JAX function, eager PyTorch) of every model in interleaved rounds.
The ratio is the median over rounds of round i of the pruned model over
round i of the full one, timed next to each other, so a load spike
slows both.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
from typing import List, Optional, Sequence

import keras
import numpy as np

import stochastic_depth_tf as sdt
from benchmarks.step_time import environment, interleaved_times, publish

FRACTIONS = (1.0, 0.75, 0.5, 0.25)


def models(depth: int, fractions: Sequence[float], input_shape: Sequence[int]) -> dict:
    """The full network and one pruned copy per kept fraction, by name."""
    full = sdt.models.cifar_resnet(depth=depth, final_survival_probability=0.5, input_shape=tuple(input_shape), seed=0)
    built = {"full": full}
    for fraction in fractions:
        built[f"keep {fraction:g}"] = sdt.prune_blocks(full, keep=float(fraction))
    return built


def measure(depth: int, batch: int, fractions: Sequence[float], rounds: int, steps: int, warmup: int) -> List[dict]:
    """One row per model: blocks kept, parameters, median seconds per batch, paired ratio to the full model."""
    x = np.random.default_rng(0).uniform(size=(batch, 32, 32, 3)).astype("float32")
    built = models(depth, fractions, x.shape[1:])
    for model in built.values():
        for _ in range(warmup):  # traces and compiles the inference step
            model.predict_on_batch(x)
    steppers = {name: (lambda model=model: model.predict_on_batch(x)) for name, model in built.items()}
    times = interleaved_times(steppers, rounds, steps)
    total = len(sdt.layers.stochastic_depth_layers(built["full"]))
    rows = []
    for name, model in built.items():
        kept = len(sdt.layers.stochastic_depth_layers(model))
        rows.append({
            "model": name,
            "blocks": f"{kept} of {total}",
            "block_fraction": kept / total,
            "parameters": model.count_params(),
            "median": statistics.median(times[name]),
            "ratio_paired": statistics.median(value / full for value, full in zip(times[name], times["full"])),
        })
    return rows


def markdown(rows: List[dict], command: str, settings: str) -> str:
    env = environment()
    lines = [
        "# Inference latency of pruned networks (`sdt.prune_blocks`) against the full one",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; machine: nproc {os.cpu_count()}, load average {', '.join(f'{v:.1f}' for v in os.getloadavg())} "
        f"(above nproc: the cores were shared with other jobs); Keras {keras.__version__}, "
        f"stochastic_depth_tf {sdt.__version__}",
        f"- backend {env['backend']}: {env['library']}; device: {env['device']}",
        f"- command: `{command}`",
        f"- {settings}",
        "- ratio (paired): the median over interleaved rounds of round i of the model / round i of the full "
        "model, timed next to each other (below 1 is faster); blocks: residual blocks left, removed deepest first "
        "(`rule=\"lowest_survival\"`)",
        "",
        "| model | blocks | block fraction | parameters | median s per batch | ratio (paired) |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(f"| {row['model']} | {row['blocks']} | {row['block_fraction']:.2f} | {row['parameters']:,} | "
                     f"{row['median']:.4f} | {row['ratio_paired']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="batch 8, 9 rounds of 5 batches: a smoke run")
    parser.add_argument("--depth", type=int, default=110)
    parser.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5, help="batches timed per model per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--output", default=None, help="write the Markdown table here too")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.rounds, args.steps, args.warmup = 8, 9, 5, 2
    rows = measure(args.depth, args.batch, args.fractions, args.rounds, args.steps, args.warmup)
    settings = (f"ResNet-{args.depth} (`sdt.models.cifar_resnet`, p_L = 0.5), batch {args.batch} of 32x32x3, "
                f"`predict_on_batch`, {args.rounds} rounds of {args.steps} batches after {args.warmup} warm-up calls")
    command = " ".join(["python -m benchmarks.prune_latency", *(argv if argv is not None else sys.argv[1:])])
    publish(markdown(rows, command, settings), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
