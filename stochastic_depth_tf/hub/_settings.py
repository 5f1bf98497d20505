"""The stochastic-depth settings of a KerasHub backbone: validated once, stored in its config."""

from __future__ import annotations

from typing import Any, Dict

from stochastic_depth_tf._validation import (
    validate_bool,
    validate_choice,
    validate_inverted,
    validate_mode,
    validate_seed,
    validate_survival_probability,
)
from stochastic_depth_tf.schedules import DISTRIBUTIONS

SETTINGS_KEY = "stochastic_depth"


def validate_settings(
    *,
    final_survival_probability: Any,
    distribution: Any,
    mode: Any,
    inverted: Any,
    seed: Any,
    skip_compute: Any = True,
) -> Dict[str, Any]:
    """The stochastic-depth settings a backbone's config stores, validated.

    `skip_compute` defaults to True for configs saved before it existed.
    """
    inverted = validate_inverted(inverted)
    if final_survival_probability is not None:
        final_survival_probability = validate_survival_probability(
            final_survival_probability, inverted=inverted, name="final_survival_probability"
        )
    validate_choice(distribution, tuple(DISTRIBUTIONS), name="distribution")
    seed = validate_seed(seed)
    return {
        "final_survival_probability": final_survival_probability,
        "distribution": distribution,
        "mode": validate_mode(mode),
        "inverted": inverted,
        "seed": seed,
        "skip_compute": validate_bool(skip_compute, name="skip_compute"),
    }
