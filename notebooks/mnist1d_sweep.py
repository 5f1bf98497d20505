"""Long runs on MNIST-1D: test accuracy against `p_L` and depth, resumable, in pieces.

Trains the one-dimensional CIFAR ResNet (`sdt.models.cifar_resnet` with a
`(40, 1)` input) with `sdt.recipes.MNIST1D` at every `(depth, p_L, seed)` of
a grid and writes each finished run to a JSON file at once. A run already in
the file is skipped, so the sweep resumes after an interruption and can be
split between processes that share the file (each takes its own part of the
grid; writes are serialized by a lock and merged, never overwritten):

    python notebooks/mnist1d_sweep.py --depths 110 --p 1.0 0.8 --seeds 0 1 2 3 4 &
    python notebooks/mnist1d_sweep.py --depths 20 110 --p 0.65 0.5 --seeds 0 1 2 3 4 &

Each run reads the validation and the test split once, at its end. `stochastic_depth_mnist1d.ipynb` reads
the file; it also imports `sweep` to run a tiny grid in the tests.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
import time
from typing import Dict, Iterable, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULTS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "stochastic_depth_mnist1d.json")


def key(depth: int, p: float, seed: int) -> str:
    return f"{depth}/{p}/{seed}"


def settings(recipe, dataset: Dict[str, object]) -> Dict[str, object]:
    """What every run of one results file shares; a file written with other settings is not resumed."""
    arguments = ", ".join(f"{name}={value!r}" for name, value in dataset.items())
    return {"recipe": repr(recipe), "dataset": f"load_mnist1d({arguments})"}


def read(path: Optional[str], expected: Dict[str, object]) -> Dict[str, dict]:
    """The finished runs in `path` (an empty dict if there is no file); refuses a file of other settings."""
    if not path or not os.path.exists(path):
        return {}
    with open(path) as handle:
        saved = json.load(handle)
    if saved["settings"] != expected:
        raise ValueError(
            f"Invalid value received for argument `results`. Expected a file written with the settings "
            f"{expected}. Received: results={path!r}, written with {saved['settings']}"
        )
    return saved["runs"]


def write(path: str, expected: Dict[str, object], name: str, run: dict) -> None:
    """Adds one run to `path` under a lock: re-reads the file, so runs written by another process stay."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        runs = read(path, expected)
        runs[name] = run
        # Written aside and renamed: an interrupted write never leaves half a file.
        with open(path + ".tmp", "w") as handle:
            json.dump({"settings": expected, "runs": dict(sorted(runs.items()))}, handle, indent=1)
        os.replace(path + ".tmp", path)


def sweep(
    depths: Sequence[int],
    final_survival_probabilities: Sequence[float],
    seeds: Iterable[int],
    steps: Optional[int] = None,
    batch_size: Optional[int] = None,
    num_samples: int = 5000,
    validation_fraction: float = 0.1,
    train_samples: Optional[int] = 500,
    data_seed: int = 42,
    results: Optional[str] = RESULTS_FILE,
    train: bool = True,
    log=print,
) -> Dict[str, dict]:
    """Runs every `(depth, p_L, seed)` not yet in `results`, seed by seed; returns the grid's runs.

    Seed-major order: a sweep stopped early holds whole seeds of the grid.

    Args:
        depths: `6n + 2` depths.
        final_survival_probabilities: `p_L` values; 1.0 is the plain network.
        seeds: run seeds (initial weights, batches, gates).
        steps: training steps per run (rounded up to whole epochs); None
            keeps `recipes.MNIST1D`'s epochs.
        batch_size: None keeps the recipe's.
        num_samples, validation_fraction, train_samples, data_seed: `load_mnist1d`'s.
        results: the JSON file to resume from and write to; None keeps nothing.
        train: False trains nothing and returns the runs of the grid that
            `results` holds (a sweep cut short leaves some out).
        log: where one line per run goes.

    Returns:
        `{key(depth, p, seed): run}` for the grid (with `train=False`, its
        finished runs only), each run a dict of
        `test_accuracy` and `validation_accuracy` (the trained model, once
        each), `seconds_per_epoch`, `seconds` (the whole run), `epochs`,
        `steps` and the per-epoch training curves `loss` and `accuracy`.
    """
    import stochastic_depth_tf as sdt
    from stochastic_depth_tf import recipes

    dataset = {
        "num_samples": num_samples,
        "validation_fraction": validation_fraction,
        "train_samples": train_samples,
        "seed": data_seed,
    }
    data = sdt.datasets.load_mnist1d(**dataset)
    recipe = recipes.MNIST1D if batch_size is None else recipes.MNIST1D.replace(batch_size=batch_size)
    if steps is not None:
        recipe = recipe.with_steps(steps, len(data["train"][1]))
    expected = settings(recipe, dataset)
    done = read(results, expected)
    trainers = {}  # one traced step per architecture (plain, stochastic) and depth
    grid = [(depth, p, seed) for seed in seeds for depth in depths for p in final_survival_probabilities]
    for depth, p, seed in grid:
        name = key(depth, p, seed)
        if results:  # another process may have finished it meanwhile
            done.update(read(results, expected))
        if name in done or not train:
            continue
        if (depth, p == 1.0) not in trainers:
            # No validation pass per epoch: on a shared CPU it would cost a quarter of a short run.
            trainers[depth, p == 1.0] = recipes.Trainer(data, recipe, depth=depth, plain=p == 1.0, validation=False)
        started = time.perf_counter()
        outcome = trainers[depth, p == 1.0].run(final_survival_probability=p, seed=seed)
        history = outcome["history"]
        _, validation_accuracy = outcome["model"].evaluate(*data["validation"], batch_size=256, verbose=0)
        run = {
            "test_accuracy": outcome["test_accuracy"],
            "validation_accuracy": float(validation_accuracy),
            "seconds_per_epoch": outcome["seconds_per_epoch"],
            "seconds": time.perf_counter() - started,
            "epochs": recipe.epochs,
            "steps": recipe.epochs * recipes.steps_per_epoch(recipe, len(data["train"][1])),
            **{field: [float(v) for v in history[field]] for field in ("loss", "accuracy")},
        }
        done[name] = run
        if results:
            write(results, expected, name, run)
        log(
            f"ResNet-{depth:<3} p_L={p:<4} seed {seed}: test {run['test_accuracy']:.4f}, validation "
            f"{run['validation_accuracy']:.4f}, last training loss {run['loss'][-1]:.3f}, "
            f"{run['seconds_per_epoch']:.2f} s / epoch, {run['seconds']:.0f} s"
        )
    return {key(*point): done[key(*point)] for point in grid if key(*point) in done}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[20, 110])
    parser.add_argument(
        "--p", type=float, nargs="+", default=[1.0, 0.8, 0.65, 0.5], help="final survival probabilities"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=None, help="training steps per run (default: the recipe's)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument(
        "--train-samples", type=int, default=500, help="training signals kept (load_mnist1d's train_samples; of 3,600)"
    )
    parser.add_argument("--results", default=RESULTS_FILE)
    parser.add_argument(
        "--threads", type=int, default=1, help="TensorFlow intra- and inter-op threads (default 1: a shared machine)"
    )
    args = parser.parse_args(argv)
    import tensorflow as tf

    # Before any op runs: the thread pools are fixed at the first one.
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    started = time.perf_counter()
    sweep(
        args.depths,
        args.p,
        args.seeds,
        steps=args.steps,
        batch_size=args.batch_size,
        train_samples=args.train_samples,
        results=args.results,
        log=lambda line: print(line, flush=True),
    )
    print(f"sweep: {time.perf_counter() - started:.0f} s, CPU {time.process_time():.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
