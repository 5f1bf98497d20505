"""`StochasticMerge`: the state `StochasticDepth` and `ShakeDrop` share, in one private base."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import keras

from stochastic_depth_tf import backend
from stochastic_depth_tf._validation import (
    Shape,
    check_pair,
    check_pair_shapes,
    validate_inverted,
    validate_seed,
    validate_survival_probability,
)

# Files written before the seed state was saved hold only "0" and still load.
SEED_STATE_KEY = "seed_generator_state"
# The survival probability's name where a backend holds it outside Keras'
# variables (a PyTorch buffer): not `survival_probability`, the property.
SURVIVAL_PROBABILITY_STATE = "survival_probability_state"


class StochasticMerge(keras.layers.Layer):
    """A merge of `[shortcut, residual]` whose residual survives with a probability.

    Holds what every such merge layer has, so that each subclass holds only
    its own arguments, `call` and `get_config`:

    - `survival_probability`, the configured value (what `get_config`
      records), and `survival_probability_variable`, a non-trainable
      float32 variable the graph reads, so that a schedule can change it
      during a compiled `fit` without a retrace. Setting the property
      validates the value and assigns the variable.
    - `seed`, the int or None it was given, and `seed_generator`, the
      `keras.random.SeedGenerator` made from it. Both variables live on the
      host (the gate reads them there, so a GPU pays no copy for them).
    - `weights` without those two: a model with the merge in place of
      `keras.layers.Add` has exactly the plain model's weights, so
      `set_weights` and legacy `.h5` files transfer between the two.
      Under PyTorch the survival probability is a buffer of the module
      (`survival_probability_state`), not a Keras variable: Keras makes
      every tracked variable a torch parameter, and counts those as the
      weights plus the seed generators' states (`backend.hold_state`).
    - Saving and loading both with the layer (`.keras` files,
      `save_weights`, TensorFlow checkpoints), so a resumed run draws the
      gates an uninterrupted one would have drawn.
    - What `keras.layers.Add` does besides adding: the output's mask is the
      inputs' masks OR-ed (None unless both have one), and the symbolic
      call (`keras.Input`) refuses what the call refuses (inputs that are
      not floating point, shapes that differ).
    - `compute_output_shape` of a pair of equal shapes, and the part of
      `get_config` this class takes (`survival_probability`, `seed`).

    Args:
        survival_probability: the configured `p` in `[0, 1]`.
        seed: None or an int (`_validation.validate_seed`'s layer policy).
        inverted: whether the layer scales in training by `1 / p`, in which
            case `p == 0` is refused. False for layers with no inverted form.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.
    """

    def __init__(
        self,
        survival_probability: float,
        *,
        seed: Optional[int],
        inverted: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.inverted = validate_inverted(inverted)
        self._survival_probability = validate_survival_probability(survival_probability, inverted=self.inverted)
        self.seed = validate_seed(seed)
        with backend.host_variables():
            self.seed_generator = keras.random.SeedGenerator(self.seed)
            self.survival_probability_variable = self.add_weight(
                shape=(),
                dtype="float32",
                initializer=keras.initializers.Constant(self._survival_probability),
                trainable=False,
                autocast=False,
                name="survival_probability",
            )
        backend.track_in_checkpoints(self, self.seed_generator.state, SEED_STATE_KEY)
        backend.hold_state(self, self.survival_probability_variable, SURVIVAL_PROBABILITY_STATE)

    @property
    def survival_probability(self) -> float:
        """The configured survival probability (what `get_config` records)."""
        return self._survival_probability

    @survival_probability.setter
    def survival_probability(self, value: float) -> None:
        value = validate_survival_probability(value, inverted=self.inverted)
        self._survival_probability = value
        self.survival_probability_variable.assign(value)

    @property
    def weights(self) -> List[Any]:
        """The layer's weights: none. The survival probability and seed are state, not weights."""
        state = (self.survival_probability_variable, self.seed_generator.state)
        return [weight for weight in super().weights if not any(weight is v for v in state)]

    def save_own_variables(self, store: Any) -> None:
        """Saves the survival probability and the seed generator's state."""
        store["0"] = self.survival_probability_variable
        store[SEED_STATE_KEY] = self.seed_generator.state

    def load_own_variables(self, store: Any) -> None:
        """Loads what `save_own_variables` saved (files without a seed state too)."""
        self.survival_probability_variable.assign(store["0"])
        if SEED_STATE_KEY in store:
            self.seed_generator.state.assign(store[SEED_STATE_KEY])

    def compute_output_shape(self, input_shape: Any) -> Optional[Shape]:
        return check_pair_shapes(input_shape)

    def compute_output_spec(self, inputs: Any, training: Optional[bool] = None) -> Any:
        check_pair(inputs)
        return super().compute_output_spec(inputs)

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        """The output's mask as `keras.layers.Add` computes it: both masks OR-ed, or None unless both exist."""
        if mask is None:
            return None
        shortcut_mask, residual_mask = mask
        if shortcut_mask is None or residual_mask is None:
            return None
        return keras.ops.logical_or(shortcut_mask, residual_mask)

    def get_config(self) -> Dict[str, Any]:
        base_config = super().get_config()
        config = {"survival_probability": self.survival_probability, "seed": self.seed}
        return {**base_config, **config}
