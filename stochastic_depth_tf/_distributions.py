"""The per-block survival probability rules as plain maths, for arguments already validated.

`stochastic_depth_tf.schedules` is the public door: each of its functions
checks its arguments, then computes here. Callers inside the package that
hold validated values (a `StochasticDepthSettings`, a builder's checked
rate, a block count they counted) compute here directly, so nothing is
checked twice on its way through.
"""

from __future__ import annotations

from typing import Callable, Dict, List


def linear_decay(num_blocks: int, final_survival_probability: float) -> List[float]:
    """`p_l = 1 - (l / L) * (1 - p_L)` for `l = 1 .. L` (`schedules.linear_decay`, unchecked)."""
    return [1.0 - (index / num_blocks) * (1.0 - final_survival_probability) for index in range(1, num_blocks + 1)]


def uniform(num_blocks: int, survival_probability: float) -> List[float]:
    """`num_blocks` copies of `survival_probability` (`schedules.uniform`, unchecked)."""
    return [survival_probability] * num_blocks


# The rules by the name `distribution` takes, as `schedules.DISTRIBUTIONS` names them.
RULES: Dict[str, Callable[[int, float], List[float]]] = {"linear": linear_decay, "uniform": uniform}
