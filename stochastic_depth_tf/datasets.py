"""Offline data for the demo, the notebooks and the benchmarks; nothing is downloaded.

`load_digits()` returns the 1,797 8x8 grey images that ship inside
scikit-learn (no download), split into train / validation / test with a fixed
seed, scaled to `[0, 1]`, channels-last, and zero-padded to 12x12 so that
the CIFAR ResNet's two stride-2 stages still see 3x3 maps at the end.

`load_mnist1d()` generates MNIST-1D (Greydanus & Kobak, "Scaling down deep
learning with MNIST-1D", ICML 2024) with the `mnist1d` package's
`make_dataset`: 40-step one-dimensional signals of ten classes, made from
ten templates by padding, shearing, scaling, translation and noise. Unlike
the digits it is not saturated (the paper's convolutional baseline reaches
about 94%, an MLP about 68%), so a regularizer has room to show.
"""

from __future__ import annotations

import random
from typing import Dict, Optional, Tuple

import numpy as np

from stochastic_depth_tf._validation import validate_positive_int

Split = Tuple[np.ndarray, np.ndarray]
"""One split of a dataset, `(inputs, labels)`: NumPy arrays with one example per row of the first axis."""


def load_digits(
    validation_fraction: float = 0.15, test_fraction: float = 0.15, pad_to: int = 12, seed: int = 0
) -> Dict[str, Split]:
    """scikit-learn's digits as `{"train", "validation", "test"}` of `(images, labels)`.

    Args:
        validation_fraction: share of the 1,797 images held out for validation.
        test_fraction: share held out for the test set.
        pad_to: side of the zero-padded square image, at least 8.
        seed: seed of the stratified-free random split.

    Returns:
        A dict of three `(images, labels)` pairs: images float32 of shape
        `(n, pad_to, pad_to, 1)` in `[0, 1]`, labels int64 in `0..9`.
    """
    for name, value in (("validation_fraction", validation_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < value < 1.0:
            raise ValueError(
                f"Invalid value received for argument `{name}`. Expected a "
                f"float strictly between 0 and 1. Received: {name}={value!r}"
            )
    if validation_fraction + test_fraction >= 1.0:
        raise ValueError(
            "Invalid values received for arguments `validation_fraction` and "
            "`test_fraction`. Expected a sum below 1. Received: "
            f"validation_fraction={validation_fraction!r}, test_fraction={test_fraction!r}"
        )
    if not isinstance(pad_to, int) or pad_to < 8:
        raise ValueError(
            "Invalid value received for argument `pad_to`. Expected an int of "
            f"at least 8 (the images are 8x8). Received: pad_to={pad_to!r}"
        )
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = (digits.images / 16.0).astype("float32")
    before = (pad_to - 8) // 2
    images = np.pad(images, [(0, 0), (before, pad_to - 8 - before), (before, pad_to - 8 - before)])
    images = images[..., np.newaxis]
    labels = digits.target.astype("int64")
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test = int(round(len(labels) * test_fraction))
    n_validation = int(round(len(labels) * validation_fraction))
    test, validation, train = np.split(order, [n_test, n_test + n_validation])
    return {
        "train": (images[train], labels[train]),
        "validation": (images[validation], labels[validation]),
        "test": (images[test], labels[test]),
    }


def load_mnist1d(
    num_samples: int = 5000, validation_fraction: float = 0.1, train_samples: Optional[int] = None, seed: int = 42
) -> Dict[str, Split]:
    """MNIST-1D, generated offline, as `{"train", "validation", "test"}` of `(signals, labels)`.

    The `mnist1d` package's `make_dataset` generates the signals from its
    default arguments (`get_dataset_args()`: 40 steps, 80% train / 20%
    test) with `num_samples` and `seed` replaced; its URL is never used. The
    test split is the package's test split, untouched; the validation split
    is carved out of the package's training split (a random subset drawn
    with `seed`), so a choice made on it never sees the test set. With the
    defaults this is the dataset of the MNIST-1D paper: 4,000 training and
    1,000 test signals, seed 42.

    The package re-seeds Python's and NumPy's global random generators;
    their states are restored afterwards, so loading has no side effects.
    It is an optional dependency: `pip install "stochastic_depth_tf[mnist1d]"`.

    Args:
        num_samples: signals generated in all, a multiple of 10 (the same
            number per class) of at least 50.
        validation_fraction: share of the training split held out for
            validation, strictly between 0 and 1.
        train_samples: None keeps every remaining training signal; an int
            keeps that many of them (a random subset drawn with `seed`), for
            a low-data regime with the full test and validation splits.
        seed: the generator's seed (42 is the package's default), and the
            seed of the validation draw.

    Returns:
        A dict of three `(signals, labels)` pairs: signals float32 of shape
        `(n, 40, 1)` (steps, channels; standardized over the whole set by
        the package), labels int64 in `0..9`.

    Example:

    ```python
    import stochastic_depth_tf as sdt

    data = sdt.datasets.load_mnist1d(num_samples=500)
    signals, labels = data["train"]  # (360, 40, 1) float32, (360,) int64
    ```
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 50 or num_samples % 10:
        raise ValueError(
            "Invalid value received for argument `num_samples`. Expected an int of at "
            f"least 50 and a multiple of 10 (one tenth per class). Received: num_samples={num_samples!r}"
        )
    if (
        isinstance(validation_fraction, bool)
        or not isinstance(validation_fraction, (int, float))
        or not 0.0 < validation_fraction < 1.0
    ):
        raise ValueError(
            "Invalid value received for argument `validation_fraction`. Expected a "
            f"float strictly between 0 and 1. Received: validation_fraction={validation_fraction!r}"
        )
    if train_samples is not None:
        train_samples = validate_positive_int(train_samples, name="train_samples", expected="None or a positive int")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(
            f"Invalid value received for argument `seed`. Expected a non-negative int. Received: seed={seed!r}"
        )
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as error:
        raise ImportError(
            "`load_mnist1d` generates MNIST-1D with the `mnist1d` package, which is not installed. "
            'Install it with `pip install "stochastic_depth_tf[mnist1d]"` (or `pip install mnist1d`).'
        ) from error

    args = get_dataset_args()
    args.num_samples = num_samples
    args.seed = seed
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        generated = make_dataset(args)
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    signals = generated["x"].astype("float32")[..., np.newaxis]
    labels = generated["y"].astype("int64")
    order = np.random.default_rng(seed).permutation(len(labels))
    # At least one signal in each split, whatever the rounding.
    n_validation = min(max(1, int(round(len(labels) * validation_fraction))), len(labels) - 1)
    validation, train = np.sort(order[:n_validation]), order[n_validation:]
    if train_samples is not None:
        if train_samples > len(train):
            raise ValueError(
                "Invalid value received for argument `train_samples`. Expected at most the "
                f"{len(train)} training signals left after the validation split. Received: train_samples={train_samples!r}"
            )
        train = train[:train_samples]
    train = np.sort(train)
    return {
        "train": (signals[train], labels[train]),
        "validation": (signals[validation], labels[validation]),
        "test": (generated["x_test"].astype("float32")[..., np.newaxis], generated["y_test"].astype("int64")),
    }
