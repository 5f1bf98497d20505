"""The stochastic-depth settings of a model, validated once where they come in and passed down as one object.

`StochasticDepthSettings` is what model surgery, the KerasHub backbones and
the model builders share: how the per-block survival probabilities are laid
out (`final_survival_probability`, `distribution`) and how every gate draws
and scales (`mode`, `inverted`, `seed`, `skip_compute`), and how many gates
a transformer layer of a KerasHub text backbone gets (`gates_per_layer`). A
public entry point
(`apply_stochastic_depth`, a builder, a backbone's `from_config`) builds it
from its arguments; constructing it validates them, with the errors of
`_validation`, and whatever it is passed to trusts it. Each entry point keeps
its own defaults in its signature: surgery's are the fine-tuning ones
(`mode="sample"`, `inverted=True`), the builders' the papers'.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from stochastic_depth_tf import _distributions, schedules
from stochastic_depth_tf._validation import (
    MODES,
    validate_bool,
    validate_choice,
    validate_inverted,
    validate_seed,
    validate_survival_probability,
)

# The accepted `gates_per_layer`: one gate per transformer layer (LayerDrop, both
# residual branches dropped together) or one per residual branch (attention,
# feed-forward), as the vision blocks have; None is the model kind's default.
GATES_PER_LAYER = (1, 2)


@dataclasses.dataclass(frozen=True, eq=False)
class StochasticDepthSettings(Mapping[str, Any]):
    """The stochastic-depth settings of one model, validated when made.

    Frozen, and a read-only mapping of its fields too (`settings["mode"]`,
    `dict(settings)`, equal to a dict of the same items): a KerasHub
    backbone's config stores that dict, and a backbone's
    `stochastic_depth_settings` was one before this class. `gates_per_layer`
    left at None is left out of the mapping, so the config of a model it
    does not apply to reads as it did before the setting existed.

    Attributes:
        final_survival_probability: `p_L` in `[0, 1]`, greater than 0 with
            `inverted=True`: the last block's survival probability with
            `distribution="linear"`, every block's with `"uniform"`. None
            when the per-block probabilities come from elsewhere: a KerasHub
            backbone's own drop path rates, EfficientNet's drop-connect rate.
        distribution: how the probabilities are laid out over the blocks,
            one of `distributions` (None where they are given per block:
            `surgery.apply_survival_probabilities`).
        mode: `"batch"`, `"sample"` or `"subset"` (one of `modes`).
        inverted: the scaling convention of every gate.
        seed: None or a non-negative int; block `l` gets
            `_validation.block_seed(seed, l)`.
        skip_compute: whether blocks that can skip the compute of a dropped
            branch do.
        gates_per_layer: None (the model kind's default: 1 for the
            transformer layers of a KerasHub text backbone), 1 (LayerDrop:
            one gate per layer) or 2 (one per residual branch, attention and
            feed-forward). Only text backbones take a value; the entry points
            refuse one for other models.

    Init-only arguments (checked against, not stored):
        distributions: the accepted `distribution` names;
            `schedules.DISTRIBUTIONS` by default (EfficientNet adds Keras'
            rule; `(None,)` for no distribution).
        modes: the accepted modes; all of `MODES` by default (ShakeDrop
            takes two).

    Raises:
        TypeError: a setting of the wrong type.
        ValueError: a setting out of range or not one of its choices.
    """

    final_survival_probability: Optional[float]
    distribution: Optional[str]
    mode: str
    inverted: bool
    seed: Optional[int]
    skip_compute: bool
    gates_per_layer: Optional[int] = None
    distributions: dataclasses.InitVar[Sequence[Optional[str]]] = tuple(schedules.DISTRIBUTIONS)
    modes: dataclasses.InitVar[Sequence[str]] = MODES

    def __post_init__(self, distributions: Sequence[Optional[str]], modes: Sequence[str]) -> None:
        inverted = validate_inverted(self.inverted)
        final = self.final_survival_probability
        validated = {
            "inverted": inverted,
            "final_survival_probability": (
                None
                if final is None
                else validate_survival_probability(final, inverted=inverted, name="final_survival_probability")
            ),
            "distribution": validate_choice(self.distribution, tuple(distributions), name="distribution"),
            "mode": validate_choice(self.mode, tuple(modes), name="mode"),
            "seed": validate_seed(self.seed),
            "skip_compute": validate_bool(self.skip_compute, name="skip_compute"),
            "gates_per_layer": _validate_gates_per_layer(self.gates_per_layer),
        }
        for name, value in validated.items():
            # Frozen: the validated (normalized) values replace what was passed, once.
            object.__setattr__(self, name, value)

    def survival_probabilities(self, num_blocks: int) -> List[float]:
        """The survival probability of each of `num_blocks` blocks, in block order, by `distribution`.

        For a `final_survival_probability` that is not None and a
        distribution of `schedules.DISTRIBUTIONS`.
        """
        final, distribution = self.final_survival_probability, self.distribution
        assert final is not None and distribution is not None, "the caller's per-block probabilities apply"
        # Validated when made: the rule's maths, without the public schedule's checks again.
        return _distributions.RULES[distribution](num_blocks, final)

    def __getitem__(self, name: str) -> Any:
        if name not in self._names():
            raise KeyError(name)
        return getattr(self, name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def _names(self) -> Tuple[str, ...]:
        return tuple(
            field.name
            for field in dataclasses.fields(self)
            if not (field.name == "gates_per_layer" and self.gates_per_layer is None)
        )


def _validate_gates_per_layer(value: Any) -> Optional[int]:
    """None, or 1 or 2 as a Python int (a NumPy int too; a bool or a string is refused)."""
    if value is None:
        return None
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)) and value in GATES_PER_LAYER:
        return int(value)
    raise ValueError(
        "Invalid value received for argument `gates_per_layer`. Expected None "
        "(the model's default: 1 for a text backbone), 1 (LayerDrop: one gate per "
        "transformer layer) or 2 (one per residual branch). "
        f"Received: gates_per_layer={value!r}"
    )
