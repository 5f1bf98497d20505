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
from typing import List, Optional, Sequence

import stochastic_depth_tf as sdt
from benchmarks import harness

FRACTIONS = (1.0, 0.75, 0.5, 0.25)


def models(depth: int, fractions: Sequence[float], input_shape: Sequence[int]) -> dict:
    """The full network and one pruned copy per kept fraction, by name."""
    full = sdt.models.cifar_resnet(depth=depth, final_survival_probability=0.5, input_shape=tuple(input_shape), seed=0)
    built = {"full": full}
    for fraction in fractions:
        built[f"keep={float(fraction)!r}"] = sdt.prune_blocks(full, keep=float(fraction))
    return built


def measure(depth: int, batch: int, fractions: Sequence[float], rounds: int, steps: int, warmup: int) -> List[dict]:
    """One row per model: blocks kept, parameters, median seconds per batch, paired ratio to the full model."""
    x, _ = harness.random_batch(batch, pixel_range=(0.0, 1.0))
    built = models(depth, fractions, x.shape[1:])
    for model in built.values():
        for _ in range(warmup):  # traces and compiles the inference step
            model.predict_on_batch(x)
    steppers = {name: (lambda model=model: model.predict_on_batch(x)) for name, model in built.items()}
    times = harness.interleaved_times(steppers, rounds, steps)
    total = len(sdt.layers.stochastic_depth_layers(built["full"]))
    rows = harness.timed_rows(times, "full")
    for row in rows:
        model = built[row["contender"]]
        kept = len(sdt.layers.stochastic_depth_layers(model))
        row.update(blocks=f"{kept} of {total}", block_fraction=kept / total, parameters=model.count_params())
    return rows


COLUMNS = [
    ("model", "contender", ""),
    ("blocks", "blocks", ""),
    ("block fraction", "block_fraction", ".2f"),
    ("parameters", "parameters", ","),
    *harness.timing_columns(("median", "ratio_paired"), per=" per batch"),
]


def markdown(rows: List[dict], command: str, settings: str) -> str:
    """The table: one row per model, its latency and its paired ratio to the full model."""
    return harness.markdown(
        "Inference latency of pruned networks (`sdt.prune_blocks`) against the full one",
        command,
        [
            settings,
            harness.ratio_note("full", "input batch", COLUMNS),
            "model `keep=f`: `sdt.prune_blocks(full, keep=f)`, a fraction of the blocks; blocks: residual blocks "
            'left, removed deepest first (`rule="lowest_survival"`)',
        ],
        COLUMNS,
        rows,
        plain="full",
        configuration=("contender",),
    )


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
    settings = (
        f"ResNet-{args.depth} (`sdt.models.cifar_resnet`, p_L = 0.5), batch {args.batch} of 32x32x3, "
        f"`predict_on_batch`, {args.rounds} rounds of {args.steps} batches after {args.warmup} warm-up calls"
    )
    command = harness.command_line("python -m benchmarks.prune_latency", argv)
    harness.publish(markdown(rows, command, settings), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
