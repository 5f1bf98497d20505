"""Per-block survival probabilities: pure functions of the block count.

The paper's rule is `linear_decay`: with `L` blocks and final survival
probability `p_L`, block `l` (counted from 1 at the input) survives with
`p_l = 1 - (l / L) * (1 - p_L)`, so early blocks, which extract low-level
features used by everything after them, are kept more often.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, List

from stochastic_depth_tf import _distributions
from stochastic_depth_tf._validation import (
    validate_choice,
    validate_non_negative,
    validate_num_blocks,
    validate_survival_probability,
)

# `validate_non_negative` lives with the other checks; it stays public here, where the API reference names it.
__all__ = [
    "DISTRIBUTIONS",
    "PROGRESSIVE_LAYER_DROP_GAMMA",
    "exponential_ramp",
    "linear_decay",
    "progressive_layer_drop",
    "progressive_layer_drop_depth",
    "survival_probabilities",
    "uniform",
    "validate_non_negative",
]


def linear_decay(num_blocks: int, final_survival_probability: float = 0.5) -> List[float]:
    """The paper's linear decay rule: `p_l = 1 - (l / L) * (1 - p_L)`.

    Block `l = 1 .. L` (in the order the blocks are applied) gets `p_l`, so
    the first block survives with `1 - (1 - p_L) / L` and the last with
    exactly `p_L` (Huang et al., 2016, eq. 4; the paper uses `p_L = 0.5`).
    Other libraries use other endpoints, both starting from a first block
    that is never dropped: timm (and Keras' ConvNeXt) use
    `linspace(0, rate, L)`, that is `p_l = 1 - ((l - 1) / (L - 1)) * rate`,
    reaching `1 - rate` at the last block; Keras' EfficientNet uses
    `p_l = 1 - ((l - 1) / L) * rate`, which never reaches `1 - rate`.

    Args:
        num_blocks: `L`, the number of residual blocks, a positive int.
        final_survival_probability: `p_L` in `[0, 1]`, the last block's.

    Returns:
        A list of `L` floats, non-increasing, ending with `p_L`.

    Example:

    ```python
    import stochastic_depth_tf as sdt

    sdt.schedules.linear_decay(4, final_survival_probability=0.5)
    # [0.875, 0.75, 0.625, 0.5]
    ```
    """
    num_blocks = validate_num_blocks(num_blocks)
    final = validate_survival_probability(final_survival_probability, name="final_survival_probability")
    return _distributions.linear_decay(num_blocks, final)


def uniform(num_blocks: int, survival_probability: float = 0.5) -> List[float]:
    """The same survival probability for every block (the paper's baseline rule).

    Args:
        num_blocks: the number of residual blocks, a positive int.
        survival_probability: `p` in `[0, 1]`.

    Returns:
        A list of `num_blocks` copies of `p`.
    """
    num_blocks = validate_num_blocks(num_blocks)
    return _distributions.uniform(num_blocks, validate_survival_probability(survival_probability))


# Progressive Layer Dropping (Zhang and He, "Accelerating Training of
# Transformer-Based Language Models with Progressive Layer Dropping", NeurIPS
# 2020; DeepSpeed's `progressive_layer_drop`): its defaults.
PROGRESSIVE_LAYER_DROP_GAMMA = 0.001


def progressive_layer_drop(
    t: float, final_survival_probability: float = 0.5, gamma: float = PROGRESSIVE_LAYER_DROP_GAMMA
) -> float:
    """Progressive Layer Dropping's time schedule: `theta(t) = (1 - theta_bar) * exp(-gamma * t) + theta_bar`.

    Training starts with every layer kept (`theta(0) = 1`) and the keep
    probability decays towards `theta_bar`, the final survival probability
    (Zhang and He, NeurIPS 2020: `theta_bar = 0.5`, `gamma = 0.001` per
    optimizer step; DeepSpeed's `progressive_layer_drop` config takes the
    same two numbers as `theta` and `gamma`). Its depth rule gives layer
    `l` of `L` the survival probability `1 - (l / L) * (1 - theta(t))`:
    `progressive_layer_drop_depth`.

    Args:
        t: the time, a non-negative number (optimizer steps in the paper).
        final_survival_probability: `theta_bar` in `[0, 1]`.
        gamma: the decay rate per unit of `t`, a non-negative number.

    Returns:
        `theta(t)`, a float in `[theta_bar, 1]`.

    Example:

    ```python
    import stochastic_depth_tf as sdt

    sdt.schedules.progressive_layer_drop(0)      # 1.0
    sdt.schedules.progressive_layer_drop(1000)   # 0.5 + 0.5 / e = 0.684
    ```
    """
    t = validate_non_negative(t, name="t")
    gamma = validate_non_negative(gamma, name="gamma")
    final = validate_survival_probability(final_survival_probability, name="final_survival_probability")
    return (1.0 - final) * math.exp(-gamma * t) + final


def progressive_layer_drop_depth(
    num_blocks: int, t: float, final_survival_probability: float = 0.5, gamma: float = PROGRESSIVE_LAYER_DROP_GAMMA
) -> List[float]:
    """Progressive Layer Dropping's survival probabilities at time `t`: `p_l = 1 - (l / L) * (1 - theta(t))`.

    The paper's linear decay (`linear_decay`) with `theta(t)` of
    `progressive_layer_drop` as the last layer's survival probability. It
    equals each layer's own exponential ramp from 1 to its `linear_decay`
    target `p_l`, `p_l + (1 - p_l) * exp(-gamma * t)`, since `1 - theta(t) =
    (1 - theta_bar) * exp(-gamma * t)`: the ramp
    `SurvivalProbabilityScheduler(ramp="exponential", gamma=...)` runs on a
    model given linear decay to `theta_bar`.

    Args:
        num_blocks: `L`, a positive int.
        t: the time, a non-negative number.
        final_survival_probability: `theta_bar` in `[0, 1]`.
        gamma: the decay rate per unit of `t`.

    Returns:
        A list of `L` floats, non-increasing.

    Example:

    ```python
    import stochastic_depth_tf as sdt

    sdt.schedules.progressive_layer_drop_depth(4, 0)  # [1.0, 1.0, 1.0, 1.0]
    sdt.schedules.progressive_layer_drop_depth(4, 10**6)  # [0.875, 0.75, 0.625, 0.5]
    ```
    """
    # `progressive_layer_drop` checks its arguments (first, as before) and returns a probability in [0, 1].
    theta = progressive_layer_drop(t, final_survival_probability, gamma)
    return _distributions.linear_decay(validate_num_blocks(num_blocks), theta)


def exponential_ramp(
    t: float, target: float, initial: float = 1.0, gamma: float = PROGRESSIVE_LAYER_DROP_GAMMA
) -> float:
    """`target + (initial - target) * exp(-gamma * t)`: from `initial` at `t = 0` towards `target`.

    Progressive Layer Dropping's time schedule with `initial = 1` and
    `target = theta_bar`; `SurvivalProbabilityScheduler(ramp="exponential")`
    applies it to each layer's target.
    """
    return target + (initial - target) * math.exp(-gamma * max(t, 0.0))


DISTRIBUTIONS: Dict[str, Callable[[int, float], List[float]]] = {
    "linear": linear_decay,
    "uniform": uniform,
}


def survival_probabilities(
    num_blocks: int, final_survival_probability: float = 0.5, distribution: str = "linear"
) -> List[float]:
    """Survival probabilities by distribution name, as the builders and surgery take them.

    Args:
        num_blocks: the number of residual blocks.
        final_survival_probability: `p_L` for `"linear"`, `p` for `"uniform"`.
        distribution: `"linear"` (the paper's decay) or `"uniform"`.

    Returns:
        A list of `num_blocks` floats.
    """
    validate_choice(distribution, tuple(DISTRIBUTIONS), name="distribution")
    final = validate_survival_probability(final_survival_probability, name="final_survival_probability")
    return _distributions.RULES[distribution](validate_num_blocks(num_blocks), final)
