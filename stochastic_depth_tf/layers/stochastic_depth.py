"""`StochasticDepth`: a drop-in for `keras.layers.Add()` on residual blocks."""

from __future__ import annotations

from typing import Any, Optional

import keras

from stochastic_depth_tf import backend, ops

# Files written before the seed state was saved hold only "0" and still load.
SEED_STATE_KEY = "seed_generator_state"


@keras.saving.register_keras_serializable(package="stochastic_depth_tf")
class StochasticDepth(keras.layers.Layer):
    """Adds a residual branch to its shortcut, randomly dropping the branch.

    In training the layer returns `shortcut + b * residual` with
    `b ~ Bernoulli(survival_probability)` drawn in the graph at every call;
    at inference it returns `shortcut + survival_probability * residual`, the
    expected training output (Huang et al., "Deep Networks with Stochastic
    Depth", ECCV 2016). With `inverted=True` the scaling moves to training
    instead, as in timm and Keras' EfficientNet: `shortcut + (b / p) *
    residual` in training and `shortcut + residual` at inference.

    Choices others disagree on, made explicit:
    - `mode="batch"` (default) draws one gate per call: the whole batch keeps
      or drops the block, as in the paper, TensorFlow Addons and KerasCV.
      `mode="sample"` draws one gate per example (timm's DropPath).
      `mode="subset"` keeps exactly `k = round(p * batch)` examples (at
      least one when `p > 0`), a random subset without replacement, and
      scales them by `batch / k` in the inverted convention (DINOv2): the
      per-example mode whose kept count is fixed, so a
      `StochasticDepthBlock` can skip dropped examples under XLA too.
    - `inverted=False` (default) is the paper's scaling at inference.

    The survival probability lives in a non-trainable float32 variable,
    `survival_probability_variable`, so a schedule (see
    `stochastic_depth_tf.callbacks.SurvivalProbabilityScheduler`) can change
    it during a compiled `fit` without a retrace, and checkpoints,
    `.keras` files and SavedModels keep it. It is deliberately not listed in
    `layer.weights` (nor `get_weights()` or `count_params()`): a model with
    `StochasticDepth` in place of `Add` has exactly the weights of the plain
    model, so `set_weights` and `load_weights` of legacy `.h5` files (such as
    `keras.applications` weights) transfer between the two.
    `layer.survival_probability` is the configured value that `get_config`
    records; a schedule moves the variable towards it.

    Args:
        survival_probability: probability `p` in `[0, 1]` that the residual
            branch is kept in training. `1.0` makes the layer a plain add;
            `0.0` always drops the branch (refused with `inverted=True`).
        mode: `"batch"`, `"sample"` or `"subset"`, see above.
        inverted: False for the paper's convention, True for the inverted one.
        seed: int or None. A seeded layer draws a reproducible sequence of
            gates; two unseeded layers draw independent ones.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: `[shortcut, residual]`, two floating tensors of the same shape.
        training: Python bool or None. None follows Keras: True inside
            `fit`, False in `predict`, `evaluate` and a plain call.

    Returns:
        A tensor of the shape of the inputs, in the layer's compute dtype.

    Example:

    ```python
    import keras
    import stochastic_depth_tf as sdt

    inputs = keras.Input((32, 32, 16))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same")(x)
    outputs = sdt.StochasticDepth(survival_probability=0.8)([inputs, x])
    model = keras.Model(inputs, outputs)
    ```
    """

    def __init__(
        self,
        survival_probability: float = 0.5,
        mode: str = "batch",
        inverted: bool = False,
        seed: Optional[int] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.inverted = ops.validate_inverted(inverted)
        self._survival_probability = ops.validate_survival_probability(
            survival_probability, inverted=self.inverted
        )
        self.mode = ops.validate_mode(mode)
        if isinstance(seed, keras.random.SeedGenerator):
            raise TypeError(
                "Invalid type received for argument `seed`. Expected None or "
                "an int (the layer makes its own SeedGenerator). "
                f"Received: seed={seed!r}"
            )
        self.seed = ops.validate_seed(seed)
        # The gate reads only these two: on the host they cost a GPU no copy.
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

    @property
    def survival_probability(self) -> float:
        """The configured survival probability (what `get_config` records)."""
        return self._survival_probability

    @survival_probability.setter
    def survival_probability(self, value: float) -> None:
        value = ops.validate_survival_probability(value, inverted=self.inverted)
        self._survival_probability = value
        self.survival_probability_variable.assign(value)

    @property
    def weights(self) -> list:
        """The layer's weights: none. The survival probability and seed are state, not weights."""
        state = (self.survival_probability_variable, self.seed_generator.state)
        return [weight for weight in super().weights if not any(weight is v for v in state)]

    def save_own_variables(self, store: Any) -> None:
        """Saves the survival probability and the seed generator's state.

        With the state in `.keras` files, `save_weights` and so in
        `keras.callbacks.BackupAndRestore`, a resumed run draws the gates an
        uninterrupted run would have drawn.
        """
        store["0"] = self.survival_probability_variable
        store[SEED_STATE_KEY] = self.seed_generator.state

    def load_own_variables(self, store: Any) -> None:
        """Loads what `save_own_variables` saved (files without a seed state too)."""
        self.survival_probability_variable.assign(store["0"])
        if SEED_STATE_KEY in store:
            self.seed_generator.state.assign(store[SEED_STATE_KEY])

    def call(self, inputs: Any, training: Optional[bool] = None) -> Any:
        shortcut, residual = ops.check_pair(inputs)
        return ops.stochastic_depth(
            shortcut,
            residual,
            self.survival_probability_variable,
            training=training,
            mode=self.mode,
            inverted=self.inverted,
            seed=self.seed_generator,
        )

    def compute_output_shape(self, input_shape: Any) -> tuple:
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2:
            raise ValueError(
                "Invalid value received for argument `input_shape`. Expected "
                "the shapes of exactly two tensors [shortcut, residual]. "
                f"Received: input_shape={input_shape!r}"
            )
        return ops.check_same_shape(input_shape[0], input_shape[1])

    def get_config(self) -> dict:
        base_config = super().get_config()
        config = {
            "survival_probability": self.survival_probability,
            "mode": self.mode,
            "inverted": self.inverted,
            "seed": self.seed,
        }
        return {**base_config, **config}
