"""Tests of `stochastic_depth_tf.schedules`."""

import numpy as np
import pytest

from stochastic_depth_tf import _distributions, schedules


def test_linear_decay_values():
    assert schedules.linear_decay(4, 0.5) == pytest.approx([0.875, 0.75, 0.625, 0.5])


def test_linear_decay_matches_paper_formula_for_resnet110():
    # 54 blocks, p_L = 0.5: p_l = 1 - l / 108.
    values = schedules.linear_decay(54, final_survival_probability=0.5)
    assert len(values) == 54
    np.testing.assert_allclose(values, [1 - l / 108 for l in range(1, 55)])
    assert values[-1] == 0.5
    # The expected share of blocks computed, mean of 1 - l/108 = 1 - 55/216,
    # is about 3/4: the paper's speed-up.
    assert sum(values) / 54 == pytest.approx(1 - 55 / 216)


def test_linear_decay_is_non_increasing_and_ends_at_final():
    values = schedules.linear_decay(17, 0.2)
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert values[-1] == pytest.approx(0.2)


def test_linear_decay_single_block_and_final_one():
    assert schedules.linear_decay(1, 0.3) == [pytest.approx(0.3)]
    assert schedules.linear_decay(5, 1.0) == [1.0] * 5


def test_uniform_values():
    assert schedules.uniform(3, 0.8) == [0.8, 0.8, 0.8]


@pytest.mark.parametrize("distribution, expected", [("linear", [0.9, 0.8]), ("uniform", [0.8, 0.8])])
def test_survival_probabilities_by_name(distribution, expected):
    assert schedules.survival_probabilities(2, 0.8, distribution) == pytest.approx(expected)


@pytest.mark.parametrize("distribution", sorted(schedules.DISTRIBUTIONS))
def test_the_unchecked_rules_compute_what_the_public_schedules_do(distribution):
    # Callers holding validated settings (the builders) compute with `_distributions.RULES`, unchecked.
    assert set(_distributions.RULES) == set(schedules.DISTRIBUTIONS)
    for num_blocks in (1, 4, 54):
        for final in (0.0, 0.5, 1.0):
            expected = schedules.DISTRIBUTIONS[distribution](num_blocks, final)
            assert _distributions.RULES[distribution](num_blocks, final) == expected


@pytest.mark.parametrize("num_blocks", [0, -3])
def test_non_positive_num_blocks_is_refused(num_blocks):
    with pytest.raises(
        ValueError, match=rf"argument `num_blocks`. Expected a positive int. Received: num_blocks={num_blocks}"
    ):
        schedules.linear_decay(num_blocks)


@pytest.mark.parametrize("num_blocks", [2.0, "3", True])
def test_non_int_num_blocks_is_refused(num_blocks):
    with pytest.raises(TypeError, match=r"argument `num_blocks`. Expected a positive int"):
        schedules.uniform(num_blocks)


@pytest.mark.parametrize("value", [-0.5, 1.01])
def test_final_survival_probability_out_of_range_is_refused(value):
    with pytest.raises(
        ValueError,
        match=rf"argument `final_survival_probability`. Expected a float between 0 and 1. Received: final_survival_probability={value}",
    ):
        schedules.linear_decay(4, value)


def test_uniform_bad_probability_is_refused():
    with pytest.raises(TypeError, match=r"argument `survival_probability`. Expected a float"):
        schedules.uniform(4, "0.5")


def test_unknown_distribution_is_refused():
    with pytest.raises(
        ValueError,
        match=r"argument `distribution`. Expected one of \('linear', 'uniform'\). Received: distribution='exponential'",
    ):
        schedules.survival_probabilities(4, 0.5, "exponential")
