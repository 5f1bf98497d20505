"""`python -m stochastic_depth_tf`: train a plain and a stochastic-depth ResNet, compare.

On scikit-learn's bundled digits (offline; 8x8 images zero-padded to 12x12)
the demo trains the paper's CIFAR ResNet twice per seed with the package's
training recipe (`sdt.recipes`: SGD with Nesterov momentum, warm-up and
cosine decay, weight decay, random shifts), once plain (`Add`) and once with
stochastic depth (linear decay, blocks that skip the compute of dropped
branches), prints test accuracy over the seeds, the paired difference, the
training time per epoch and their ratio, and a conclusion computed from those
numbers; then exports the stochastic model as a SavedModel, reloads it and
checks that it predicts what the Keras model predicts.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from stochastic_depth_tf.experiments.statistics import describe_difference

if TYPE_CHECKING:
    import keras

# Keras, and with it TensorFlow, is imported only once the arguments are parsed:
# `--help` and a usage error answer at once, with no backend log line.

MODELS = ("plain", "stochastic depth")
DEFAULT_RECIPE = {"digits": "digits", "cifar10": "paper"}
# One sentence per choice, for --help (which imports no recipe: see above).
DATASETS = {
    "digits": "scikit-learn's bundled 8x8 digits, zero-padded to 12x12 (offline; the default)",
    "cifar10": "CIFAR-10, which keras.datasets downloads on first use; 5,000 training images are held out "
    "for validation, as in the paper",
}
RECIPE_HELP = {
    "digits": "sized for a CPU and the default for --dataset digits; 15 epochs of batch 64, a 2-epoch warm-up, "
    "cosine decay, shifts of up to 2 pixels",
    "mnist1d": "the settings of the MNIST-1D sweep (notebooks/mnist1d_sweep.py; the demo does not load MNIST-1D "
    "itself) on the chosen --dataset; 20 epochs of batch 50, a 2-epoch warm-up, cosine decay, no shifts or flips",
    "paper": "the paper's CIFAR-10 setting and the default for --dataset cifar10; 500 epochs of batch 128, the "
    "learning rate divided by 10 at half and three quarters of training, 4-pixel shifts and horizontal flips",
}
MODES = {
    "batch": "one gate per block and step, and a dropped block is not computed (the paper's; the default)",
    "sample": "one gate per example (timm's DropPath)",
}
VERBOSITY = {
    0: "silent",
    1: "a progress bar redrawn in place, for a terminal",
    2: "one line per epoch, for a log",
}


def described(choices: Dict[Any, str]) -> str:
    """`choice: sentence; choice: sentence`, for a help text."""
    return "; ".join(f"{choice}: {sentence}" for choice, sentence in choices.items())


def load_data(name: str) -> Dict[str, Tuple[Any, Any]]:
    import keras

    from stochastic_depth_tf import datasets

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
    # The paper holds out 5,000 training images for validation (45,000 / 5,000 / 10,000).
    cut = len(x_train) - min(5000, len(x_train) // 10)
    return {
        "train": (x_train[:cut], y_train[:cut]),
        "validation": (x_train[cut:], y_train[cut:]),
        "test": (x_test, y_test),
    }


def check_export(model: keras.Model, images: np.ndarray) -> float:
    """Exports, reloads and returns the largest difference of the predictions."""
    from stochastic_depth_tf._requirements import import_tensorflow

    tf = import_tensorflow("The demo's SavedModel check")
    with tempfile.TemporaryDirectory() as directory:
        model.export(directory, verbose=False)
        served = tf.saved_model.load(directory)
        exported = served.serve(tf.constant(images)).numpy()
    return float(np.max(np.abs(exported - model.predict(images, verbose=0))))


def summarize(results: Dict[str, List[Dict[str, Any]]]) -> List[Dict[str, Any]]:
    """One row per model: test accuracy mean and std over seeds, s / epoch, ratio to plain."""
    plain_time = np.mean([r["seconds_per_epoch"] for r in results["plain"]])
    rows = []
    for name, runs in results.items():
        accuracies = [r["test_accuracy"] for r in runs]
        seconds = np.mean([r["seconds_per_epoch"] for r in runs])
        rows.append(
            {
                "model": name,
                "test_accuracy_mean": float(np.mean(accuracies)),
                "test_accuracy_std": float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else 0.0,
                "seconds_per_epoch": float(seconds),
                "time_ratio": float(seconds / plain_time),
            }
        )
    return rows


def markdown_table(rows: List[Dict[str, Any]], seeds: int) -> str:
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


def conclusion(
    plain_accuracies: Sequence[float], stochastic_accuracies: Sequence[float], time_ratio: float, expected_share: float
) -> str:
    """What the run showed, computed from its numbers: accuracy (paired by seed) and time.

    Args:
        plain_accuracies: test accuracy of the plain model, one per seed.
        stochastic_accuracies: the stochastic model's, same seeds, same order.
        time_ratio: stochastic / plain seconds per epoch.
        expected_share: the expected share of residual branches computed
            per step (the mean survival probability).

    Returns:
        Two lines of text.
    """
    plain, stochastic = np.asarray(plain_accuracies, float), np.asarray(stochastic_accuracies, float)
    if plain.shape != stochastic.shape:
        raise ValueError(
            "Invalid values received for arguments `plain_accuracies` and `stochastic_accuracies`. "
            f"Expected one value per seed in each. Received: {len(plain)} and {len(stochastic)} values"
        )
    accuracy = "Test accuracy, " + describe_difference(stochastic - plain, "stochastic depth", "plain") + "."
    saving = 1.0 - time_ratio
    speed = (
        f"Time per epoch: stochastic depth took {time_ratio:.2f} of the plain network's "
        f"({'less' if saving > 0 else 'more'} by {abs(saving):.0%}); the expected share of "
        f"residual branches computed is {expected_share:.2f}."
    )
    return accuracy + "\n" + speed


def write_outputs(
    directory: str, rows: List[Dict[str, Any]], results: Dict[str, List[Dict[str, Any]]], table: str
) -> None:
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


def _check_output_directory(directory: str) -> Optional[str]:
    """Creates `directory` and writes a probe file in it; returns why that failed, or None."""
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory):
            pass
    except OSError as error:
        return f"{type(error).__name__}: {error.strerror or error}"
    return None


def build_parser() -> argparse.ArgumentParser:
    """The demo's arguments, each choice with its sentence."""
    parser = argparse.ArgumentParser(prog="python -m stochastic_depth_tf", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=list(DATASETS), default="digits", help=described(DATASETS))
    parser.add_argument(
        "--recipe",
        choices=sorted(RECIPE_HELP),
        default=None,
        help="the training recipe, from sdt.recipes: " + described(RECIPE_HELP),
    )
    parser.add_argument("--depth", type=int, default=32, help="ResNet depth, 6n + 2 (default 32: 15 blocks)")
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs per model (default: the recipe's; the warm-up is then at most a quarter of them)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=2,
        help="seeds per model, the same for both; mean, spread and paired difference (default 2)",
    )
    parser.add_argument(
        "--final-survival-probability",
        type=float,
        default=0.8,
        help="p_L of the linear decay (default 0.8: what the digits sweep recommends for the demo's "
        "15 epochs; at 12 epochs it measured no cost at 0.8-0.9 for ResNet-56 and -110 but "
        "4-30 points at 0.5, the paper's setting for 500 epochs of CIFAR)",
    )
    parser.add_argument("--mode", choices=list(MODES), default="batch", help="the gates: " + described(MODES))
    parser.add_argument(
        "--jit-compile",
        action="store_true",
        help="compile the training step with XLA (default: Keras' choice, graph mode under "
        "TensorFlow on a CPU, the jitted step under JAX, eager under PyTorch)",
    )
    parser.add_argument("--batch-size", type=int, default=None, help="examples per step (default: the recipe's)")
    parser.add_argument("--output", default=None, help="directory for results.md, results.csv and curves.png")
    parser.add_argument(
        "--verbose",
        type=int,
        default=None,
        choices=list(VERBOSITY),
        help="Keras' progress output: " + described(VERBOSITY) + " (default: 1 when the output is a terminal, 2 "
        "otherwise)",
    )
    return parser


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose is None:
        # Keras redraws its progress bar with carriage returns and escape codes
        # wherever it runs on POSIX, terminal or not: a log gets one line per epoch.
        args.verbose = 1 if sys.stdout.isatty() else 2

    # Everything is checked here, before minutes of training can be lost.
    for name in ("epochs", "seeds", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"argument --{name.replace('_', '-')}: expected a positive int, received {value}")
    if args.depth < 8 or (args.depth - 2) % 6:
        parser.error(
            "Invalid value received for argument `depth`. Expected an int of the form 6n + 2 "
            f"with n >= 1 (20, 32, 44, 56, 110). Received: depth={args.depth}"
        )

    # From here on Keras, hence TensorFlow, is imported. TensorFlow reads its
    # log level when it is first imported; a level the user set is kept.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from stochastic_depth_tf import recipes, schedules

    try:
        schedules.linear_decay(1, args.final_survival_probability)
    except (TypeError, ValueError) as error:
        parser.error(str(error))
    recipe = recipes.RECIPES[args.recipe or DEFAULT_RECIPE[args.dataset]]
    if args.epochs is not None:
        recipe = recipe.with_epochs(args.epochs)
    if args.batch_size is not None:
        recipe = recipe.replace(batch_size=args.batch_size)
    args.recipe = recipe
    if args.output is not None:
        try:
            import matplotlib  # noqa: F401  (only whether it imports, before training starts)
        except ImportError:
            parser.error(
                "argument --output: writing curves.png needs matplotlib; "
                'install it with pip install "stochastic_depth_tf[demo]"'
            )
        problem = _check_output_directory(args.output)
        if problem:
            parser.error(
                f"argument --output: expected a directory that can be created and written, "
                f"received {args.output!r} ({problem})"
            )
    return args


def compilation(jit_compile: bool) -> str:
    """How Keras compiled the training step, in words (`model.jit_compile` once compiled)."""
    from stochastic_depth_tf import backend

    names = {
        "tensorflow": ("graph mode", "XLA"),
        "jax": ("un-jitted JAX", "jitted JAX (XLA)"),
        "torch": ("eager PyTorch", "torch.compile"),
    }[backend.NAME]
    return names[bool(jit_compile)]


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    import stochastic_depth_tf as sdt
    from stochastic_depth_tf import backend, schedules
    from stochastic_depth_tf.experiments.training import Trainer

    recipe = args.recipe
    data = load_data(args.dataset)
    print(
        f"stochastic_depth_tf {sdt.__version__}: {args.dataset}, "
        f"{len(data['train'][0])} training images of shape {data['train'][0].shape[1:]}; {recipe}"
    )
    survival = {"plain": 1.0, "stochastic depth": args.final_survival_probability}
    # One compiled step per model for all seeds; each run starts from its seed's fresh weights.
    trainers = {
        name: Trainer(
            data,
            recipe,
            depth=args.depth,
            plain=survival[name] == 1.0,
            mode=args.mode,
            jit_compile=True if args.jit_compile else "auto",
        )
        for name in MODELS
    }
    results: Dict[str, List[Dict[str, Any]]] = {name: [] for name in MODELS}
    for seed in range(args.seeds):
        for name in MODELS:
            print(f"\n== {name}, ResNet-{args.depth}, seed {seed} ==", flush=True)
            results[name].append(trainers[name].run(survival[name], seed, verbose=args.verbose))
    rows = summarize(results)
    table = markdown_table(rows, args.seeds)
    # One epoch has no steady epoch to time: its seconds include compiling.
    timing = (
        "s / epoch leaves out the first epoch"
        if recipe.epochs > 1
        else "s / epoch of the one epoch, compilation included"
    )
    print(
        f"\nResNet-{args.depth}, recipe {recipe.name}: {recipe.epochs} epochs of batch {recipe.batch_size}, "
        f"linear decay to {args.final_survival_probability}, mode {args.mode}, "
        f"{compilation(trainers['plain'].model.jit_compile)} ({timing}):\n"
    )
    print(table)
    num_blocks = 3 * ((args.depth - 2) // 6)
    print(
        conclusion(
            [r["test_accuracy"] for r in results["plain"]],
            [r["test_accuracy"] for r in results["stochastic depth"]],
            rows[1]["time_ratio"],
            float(np.mean(schedules.linear_decay(num_blocks, args.final_survival_probability))),
        )
    )
    exit_code = 0
    if backend.NAME == "tensorflow":  # SavedModel export is TensorFlow's
        # The trainer's model holds the last seed's training.
        difference = check_export(trainers["stochastic depth"].model, data["test"][0][:64])
        status = "match" if difference < 1e-4 else "DIFFER"
        print(
            f"SavedModel export of the stochastic model, reloaded: predictions {status} "
            f"(largest difference {difference:.2e})"
        )
        exit_code = 0 if difference < 1e-4 else 1
    if args.output:
        try:
            write_outputs(args.output, rows, results, table)
        except OSError as error:
            print(
                f"Could not write the outputs to {args.output!r} ({type(error).__name__}: {error}); "
                "the table above holds the results.",
                file=sys.stderr,
            )
            return 1
        print(f"Wrote results.md, results.csv and curves.png to {args.output}")
    return exit_code


if __name__ == "__main__":
    raise SystemExit(main())
