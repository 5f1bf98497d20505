"""`python -m stochastic_depth_tf`: train a plain and a stochastic-depth ResNet, compare.

On scikit-learn's bundled digits (offline; 8x8 images zero-padded to 12x12)
the demo trains the paper's CIFAR ResNet twice per seed, once plain (`Add`)
and once with stochastic depth (linear decay, blocks that skip the compute
of dropped branches), prints test accuracy, training time per epoch and
their ratio, then exports the stochastic model as a SavedModel, reloads it
and checks that it predicts what the Keras model predicts.
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from typing import Dict, List, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import stochastic_depth_tf as sdt  # noqa: E402
from stochastic_depth_tf import datasets  # noqa: E402


class EpochTimer(keras.callbacks.Callback):
    """Wall-clock seconds of each training epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: List[float] = []

    def on_epoch_begin(self, epoch: int, logs: Optional[dict] = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        self.seconds.append(time.perf_counter() - self._started)


def load_data(name: str) -> Dict[str, tuple]:
    if name == "digits":
        return datasets.load_digits()
    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    except Exception as error:  # keras raises whatever the download raised
        raise SystemExit(
            "The cifar10 dataset could not be loaded: keras.datasets downloads it "
            f"on first use and this machine seems offline ({type(error).__name__}: {error}). "
            "Use --dataset digits, which ships with scikit-learn."
        ) from None
    x_train, x_test = x_train.astype("float32") / 255.0, x_test.astype("float32") / 255.0
    y_train, y_test = y_train.ravel().astype("int64"), y_test.ravel().astype("int64")
    cut = len(x_train) - 5000
    return {"train": (x_train[:cut], y_train[:cut]), "validation": (x_train[cut:], y_train[cut:]), "test": (x_test, y_test)}


def train_once(args: argparse.Namespace, data: Dict[str, tuple], stochastic: bool, seed: int) -> dict:
    keras.utils.set_random_seed(seed)
    x_train, y_train = data["train"]
    model = sdt.models.cifar_resnet(
        depth=args.depth,
        num_classes=10,
        final_survival_probability=args.final_survival_probability if stochastic else 1.0,
        mode=args.mode,
        skip_compute=True,
        seed=seed,
        input_shape=x_train.shape[1:],
        name="stochastic_depth" if stochastic else "plain",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=args.jit_compile,
    )
    timer = EpochTimer()
    label = "stochastic depth" if stochastic else "plain"
    print(f"\n== {label}, ResNet-{args.depth}, seed {seed} ==", flush=True)
    history = model.fit(
        x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
        validation_data=data["validation"], callbacks=[timer], verbose=args.verbose,
    )
    _, test_accuracy = model.evaluate(*data["test"], batch_size=256, verbose=0)
    # The first epoch includes tracing and compilation; the others are the step cost.
    steady = timer.seconds[1:] or timer.seconds
    return {"model": model, "history": history.history, "test_accuracy": test_accuracy,
            "seconds_per_epoch": float(np.mean(steady))}


def check_export(model: keras.Model, images: np.ndarray) -> float:
    """Exports, reloads and returns the largest difference of the predictions."""
    with tempfile.TemporaryDirectory() as directory:
        model.export(directory, verbose=False)
        served = tf.saved_model.load(directory)
        exported = served.serve(tf.constant(images)).numpy()
    return float(np.max(np.abs(exported - model.predict(images, verbose=0))))


def summarize(results: Dict[str, List[dict]]) -> List[dict]:
    plain_time = np.mean([r["seconds_per_epoch"] for r in results["plain"]])
    rows = []
    for name, runs in results.items():
        accuracies = [r["test_accuracy"] for r in runs]
        seconds = np.mean([r["seconds_per_epoch"] for r in runs])
        rows.append({
            "model": name,
            "test_accuracy_mean": float(np.mean(accuracies)),
            "test_accuracy_std": float(np.std(accuracies)),
            "seconds_per_epoch": float(seconds),
            "time_ratio": float(seconds / plain_time),
        })
    return rows


def markdown_table(rows: List[dict], seeds: int) -> str:
    lines = [
        f"| model | test accuracy (mean ± std over {seeds} seed{'s' if seeds > 1 else ''}) | s / epoch | time ratio |",
        "|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['test_accuracy_mean']:.4f} ± {row['test_accuracy_std']:.4f} | "
            f"{row['seconds_per_epoch']:.2f} | {row['time_ratio']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def write_outputs(directory: str, rows: List[dict], results: Dict[str, List[dict]], table: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "results.md"), "w", encoding="utf-8") as handle:
        handle.write(table)
    with open(os.path.join(directory, "results.csv"), "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, runs in results.items():
        for key, axis in (("val_accuracy", axes[0]), ("val_loss", axes[1])):
            curves = np.array([r["history"][key] for r in runs])
            epochs = np.arange(1, curves.shape[1] + 1)
            mean, std = curves.mean(axis=0), curves.std(axis=0)
            axis.plot(epochs, mean, label=name)
            axis.fill_between(epochs, mean - std, mean + std, alpha=0.2)
    for axis, title in ((axes[0], "validation accuracy"), (axes[1], "validation loss")):
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.legend()
    figure.tight_layout()
    figure.savefig(os.path.join(directory, "curves.png"), dpi=100)
    plt.close(figure)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m stochastic_depth_tf", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=["digits", "cifar10"], default="digits",
                        help="digits ships with scikit-learn (default); cifar10 downloads through keras.datasets")
    parser.add_argument("--depth", type=int, default=32, help="ResNet depth, 6n + 2 (default 32: 15 blocks)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per model (default 10)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per model; mean and spread are reported (default 1)")
    parser.add_argument("--final-survival-probability", type=float, default=0.5, help="p_L of the linear decay (default 0.5)")
    parser.add_argument("--mode", choices=["batch", "sample"], default="batch", help="gate per batch (skips compute) or per example")
    parser.add_argument("--jit-compile", action="store_true", help="compile the training step with XLA")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--output", default=None, help="directory for results.md, results.csv and curves.png")
    parser.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2], help="Keras progress bars (default 1)")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.seeds < 1 or args.batch_size < 1:
        parser.error("--epochs, --seeds and --batch-size must be positive")
    try:
        sdt.schedules.linear_decay(1, args.final_survival_probability)
        sdt.models.cifar_resnet(depth=args.depth, input_shape=(12, 12, 1))
    except (TypeError, ValueError) as error:
        parser.error(str(error))
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    data = load_data(args.dataset)
    print(f"stochastic_depth_tf {sdt.__version__}: {args.dataset}, "
          f"{len(data['train'][0])} training images of shape {data['train'][0].shape[1:]}")
    results: Dict[str, List[dict]] = {"plain": [], "stochastic depth": []}
    for seed in range(args.seeds):
        results["plain"].append(train_once(args, data, stochastic=False, seed=seed))
        results["stochastic depth"].append(train_once(args, data, stochastic=True, seed=seed))
    rows = summarize(results)
    table = markdown_table(rows, args.seeds)
    print(f"\nResNet-{args.depth}, {args.epochs} epochs, linear decay to "
          f"{args.final_survival_probability}, mode {args.mode}, "
          f"{'XLA' if args.jit_compile else 'graph mode'} (s / epoch leaves out the first epoch):\n")
    print(table)
    difference = check_export(results["stochastic depth"][-1]["model"], data["test"][0][:64])
    status = "match" if difference < 1e-4 else "DIFFER"
    print(f"SavedModel export of the stochastic model, reloaded: predictions {status} "
          f"(largest difference {difference:.2e})")
    if args.output:
        write_outputs(args.output, rows, results, table)
        print(f"Wrote results.md, results.csv and curves.png to {args.output}")
    return 0 if difference < 1e-4 else 1


if __name__ == "__main__":
    raise SystemExit(main())
