"""Tests of `stochastic_depth_tf.datasets`."""

import numpy as np
import pytest

from stochastic_depth_tf import datasets


def test_digits_split_shapes_and_range():
    data = datasets.load_digits()
    sizes = {name: len(labels) for name, (_, labels) in data.items()}
    assert sum(sizes.values()) == 1797
    assert sizes["test"] == 270 and sizes["validation"] == 270
    for images, labels in data.values():
        assert images.shape[1:] == (12, 12, 1) and images.dtype == np.float32
        assert images.min() >= 0.0 and images.max() <= 1.0
        assert set(np.unique(labels)) <= set(range(10))
    # The padding is zeros around the 8x8 digit.
    assert np.all(data["train"][0][:, :2] == 0.0) and np.all(data["train"][0][:, -2:] == 0.0)


def test_digits_split_is_fixed_by_seed_and_disjoint():
    first, again, other = datasets.load_digits(seed=0), datasets.load_digits(seed=0), datasets.load_digits(seed=1)
    np.testing.assert_array_equal(first["test"][0], again["test"][0])
    assert not np.array_equal(first["test"][0], other["test"][0])
    rows = {name: {images.tobytes() for images in first[name][0]} for name in first}
    # Digits has a few duplicate images; the splits share almost none.
    assert len(rows["train"] & rows["test"]) <= 5


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"validation_fraction": 0.0}, "validation_fraction"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"validation_fraction": 0.6, "test_fraction": 0.5}, "validation_fraction"),
        ({"pad_to": 6}, "pad_to"),
    ],
)
def test_bad_arguments_are_refused(kwargs, argument):
    with pytest.raises(ValueError, match=rf"argument.*`{argument}`"):
        datasets.load_digits(**kwargs)


def test_mnist1d_shapes_and_the_papers_default_split():
    data = datasets.load_mnist1d()
    sizes = {name: len(labels) for name, (_, labels) in data.items()}
    # The package's 5,000 signals, 80% / 20%; a tenth of the 4,000 training signals validates.
    assert sizes == {"train": 3600, "validation": 400, "test": 1000}
    for signals, labels in data.values():
        assert signals.shape[1:] == (40, 1) and signals.dtype == np.float32
        assert labels.dtype == np.int64 and set(np.unique(labels)) == set(range(10))


def test_mnist1d_test_split_is_the_packages_and_validation_comes_from_its_training_split():
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = 500, 3
    package = make_dataset(args)
    data = datasets.load_mnist1d(num_samples=500, validation_fraction=0.25, seed=3)
    np.testing.assert_array_equal(data["test"][0][..., 0], package["x_test"].astype(np.float32))
    np.testing.assert_array_equal(data["test"][1], package["y_test"])

    def rows(signals):
        return [row.tobytes() for row in signals[..., 0]]

    ours = rows(data["train"][0]) + rows(data["validation"][0])
    assert sorted(ours) == sorted(rows(package["x"].astype(np.float32)[..., np.newaxis]))
    assert not set(rows(data["train"][0])) & set(rows(data["validation"][0]))
    assert len(data["validation"][1]) == 100


def test_mnist1d_is_fixed_by_seed_and_leaves_the_global_generators_alone():
    import random

    np.random.seed(7)
    random.seed(7)
    expected_numpy, expected_python = np.random.random(), random.random()
    np.random.seed(7)
    random.seed(7)
    first = datasets.load_mnist1d(num_samples=200, seed=1)
    assert (np.random.random(), random.random()) == (expected_numpy, expected_python)
    again, other = datasets.load_mnist1d(num_samples=200, seed=1), datasets.load_mnist1d(num_samples=200, seed=2)
    for name in first:
        np.testing.assert_array_equal(first[name][0], again[name][0])
        np.testing.assert_array_equal(first[name][1], again[name][1])
    assert not np.array_equal(first["test"][0], other["test"][0])


def test_mnist1d_is_generated_without_the_network(monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("load_mnist1d opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert len(datasets.load_mnist1d(num_samples=100)["test"][1]) == 20


def test_mnist1d_without_its_package_says_how_to_install_it(monkeypatch):
    import sys

    # A None entry in sys.modules makes `import mnist1d.data` raise ImportError.
    monkeypatch.setitem(sys.modules, "mnist1d", None)
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(ImportError, match=r"stochastic_depth_tf\[mnist1d\]"):
        datasets.load_mnist1d(num_samples=100)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"num_samples": 55}, "num_samples"),
        ({"num_samples": 40}, "num_samples"),
        ({"num_samples": 100.0}, "num_samples"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"validation_fraction": 0}, "validation_fraction"),
        ({"train_samples": 0}, "train_samples"),
        ({"num_samples": 100, "train_samples": 73}, "train_samples"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_mnist1d_bad_arguments_are_refused(kwargs, argument):
    with pytest.raises(ValueError, match=rf"Invalid value received for argument `{argument}`"):
        datasets.load_mnist1d(**kwargs)


def test_mnist1d_train_samples_is_a_subset_of_the_full_training_split():
    full = datasets.load_mnist1d(num_samples=200, seed=4)
    small = datasets.load_mnist1d(num_samples=200, train_samples=50, seed=4)
    assert len(small["train"][1]) == 50
    for name in ("validation", "test"):
        np.testing.assert_array_equal(small[name][0], full[name][0])
    assert {row.tobytes() for row in small["train"][0]} <= {row.tobytes() for row in full["train"][0]}
