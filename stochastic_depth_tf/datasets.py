"""The bundled data used by the demo: scikit-learn's handwritten digits, offline.

`load_digits()` returns the 1,797 8x8 grey images that ship inside
scikit-learn (no download), split into train / validation / test with a fixed
seed, scaled to `[0, 1]`, channels-last, and zero-padded to 12x12 so that
the CIFAR ResNet's two stride-2 stages still see 3x3 maps at the end.
"""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

Split = Tuple[np.ndarray, np.ndarray]


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
