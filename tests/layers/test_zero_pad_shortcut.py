"""Tests of `ZeroPadShortcut`, the option-A shortcut."""

import keras
import numpy as np
import pytest

import stochastic_depth_tf as sdt
from tests.layer_checks import run_standard_layer_checks


def test_subsamples_and_pads_with_zeros():
    x = np.arange(2 * 4 * 4 * 3, dtype="float32").reshape(2, 4, 4, 3)
    y = keras.ops.convert_to_numpy(sdt.layers.ZeroPadShortcut(5)(x))
    assert y.shape == (2, 2, 2, 5)
    np.testing.assert_array_equal(y[..., :3], x[:, ::2, ::2, :])
    np.testing.assert_array_equal(y[..., 3:], 0.0)


def test_odd_sizes_round_up():
    assert sdt.layers.ZeroPadShortcut(4).compute_output_shape((None, 5, 7, 2)) == (None, 3, 4, 4)
    assert sdt.layers.ZeroPadShortcut(4)(np.zeros((1, 5, 7, 2), "float32")).shape == (1, 3, 4, 4)


def test_standard_layer_checks():
    run_standard_layer_checks(lambda **extra: sdt.layers.ZeroPadShortcut(6, **extra), [(4, 4, 3)])


@pytest.mark.parametrize("kwargs", [{"filters": 0}, {"filters": 4, "strides": 0}, {"filters": 2.5}])
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(ValueError, match=r"Expected a positive int"):
        sdt.layers.ZeroPadShortcut(**kwargs)


def test_fewer_filters_than_channels_is_refused():
    with pytest.raises(ValueError, match=r"at most filters=2 channels. Received: input_shape=\(1, 4, 4, 3\)"):
        sdt.layers.ZeroPadShortcut(2)(np.zeros((1, 4, 4, 3), "float32"))


def test_sequences_subsample_their_one_axis():
    x = np.arange(2 * 5 * 3, dtype="float32").reshape(2, 5, 3)
    layer = sdt.layers.ZeroPadShortcut(4)
    y = keras.ops.convert_to_numpy(layer(x))
    assert y.shape == (2, 3, 4) == layer.compute_output_shape((2, 5, 3))
    np.testing.assert_array_equal(y[..., :3], x[:, ::2, :])
    np.testing.assert_array_equal(y[..., 3:], 0.0)


def test_input_without_a_spatial_axis_is_refused():
    with pytest.raises(ValueError, match=r"Invalid input shape received by ZeroPadShortcut"):
        sdt.layers.ZeroPadShortcut(4)(np.zeros((2, 3), "float32"))
