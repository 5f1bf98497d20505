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


@pytest.mark.parametrize("kwargs, argument", [
    ({"validation_fraction": 0.0}, "validation_fraction"),
    ({"test_fraction": 1.0}, "test_fraction"),
    ({"validation_fraction": 0.6, "test_fraction": 0.5}, "validation_fraction"),
    ({"pad_to": 6}, "pad_to"),
])
def test_bad_arguments_are_refused(kwargs, argument):
    with pytest.raises(ValueError, match=rf"argument.*`{argument}`"):
        datasets.load_digits(**kwargs)
