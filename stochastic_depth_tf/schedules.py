"""Per-block survival probabilities: pure functions of the block count.

The paper's rule is `linear_decay`: with `L` blocks and final survival
probability `p_L`, block `l` (counted from 1 at the input) survives with
`p_l = 1 - (l / L) * (1 - p_L)`, so early blocks, which extract low-level
features used by everything after them, are kept more often.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, Dict, List

import numpy as np

from stochastic_depth_tf._validation import validate_choice, validate_survival_probability


def _validate_num_blocks(num_blocks: Any) -> int:
    if isinstance(num_blocks, (bool, np.bool_)) or not isinstance(num_blocks, numbers.Integral):
        raise TypeError(
            "Invalid type received for argument `num_blocks`. Expected a "
            f"positive int. Received: num_blocks={num_blocks!r} of type "
            f"{type(num_blocks).__name__}"
        )
    if num_blocks < 1:
        raise ValueError(
            "Invalid value received for argument `num_blocks`. Expected a "
            f"positive int. Received: num_blocks={num_blocks!r}"
        )
    return int(num_blocks)


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
    num_blocks = _validate_num_blocks(num_blocks)
    final = validate_survival_probability(final_survival_probability, name="final_survival_probability")
    return [1.0 - (index / num_blocks) * (1.0 - final) for index in range(1, num_blocks + 1)]


def uniform(num_blocks: int, survival_probability: float = 0.5) -> List[float]:
    """The same survival probability for every block (the paper's baseline rule).

    Args:
        num_blocks: the number of residual blocks, a positive int.
        survival_probability: `p` in `[0, 1]`.

    Returns:
        A list of `num_blocks` copies of `p`.
    """
    num_blocks = _validate_num_blocks(num_blocks)
    value = validate_survival_probability(survival_probability)
    return [value] * num_blocks


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
    return DISTRIBUTIONS[distribution](num_blocks, final)
