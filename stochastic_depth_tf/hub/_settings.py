"""The stochastic-depth settings of a KerasHub backbone: a `StochasticDepthSettings`, stored in its config."""

from __future__ import annotations

from typing import Any

from stochastic_depth_tf._settings import StochasticDepthSettings

SETTINGS_KEY = "stochastic_depth"


def validate_settings(
    *,
    final_survival_probability: Any,
    distribution: Any,
    mode: Any,
    inverted: Any,
    seed: Any,
    skip_compute: Any = True,
) -> StochasticDepthSettings:
    """The stochastic-depth settings a backbone's config stores (under `SETTINGS_KEY`), validated.

    A backbone's config stores the settings as a dict of these six keys;
    this reads one back. `skip_compute` defaults to True for configs saved
    before it existed.

    Returns:
        The validated settings, a frozen object that reads as that dict too.
    """
    return StochasticDepthSettings(
        final_survival_probability=final_survival_probability,
        distribution=distribution,
        mode=mode,
        inverted=inverted,
        seed=seed,
        skip_compute=skip_compute,
    )
