"""Keras callbacks: ramp the survival probabilities of a model over training."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, cast

import keras
import numpy as np

from stochastic_depth_tf import schedules
from stochastic_depth_tf._validation import (
    validate_choice,
    validate_non_negative,
    validate_positive_int,
    validate_survival_probability,
)
from stochastic_depth_tf.layers import stochastic_depth_layers

UNITS = ("epoch", "step")
RAMPS = ("linear", "exponential")


class SurvivalProbabilityScheduler(keras.callbacks.Callback):
    """Ramps every stochastic-depth layer of a model from 1.0 to its target.

    Each layer's target is its configured `survival_probability`; the
    callback assigns the current value to its `survival_probability_variable`,
    which the compiled train step reads, so the change takes effect in the
    next step with no retrace and no recompilation. By default the ramp is
    linear: at time `t` (epochs or optimizer steps since the start),

        p(t) = initial + min(t / duration, 1) * (target - initial)

    so training starts as the plain network (`initial=1.0`) and reaches the
    targets after `duration` epochs or steps (MosaicML Composer's drop
    warm-up; "1.0 -> 0.5 linearly over the epochs"). With
    `ramp="exponential"` it is

        p(t) = target + (initial - target) * exp(-gamma * t)

    Progressive Layer Dropping's time schedule (Zhang and He, NeurIPS 2020;
    DeepSpeed's `progressive_layer_drop`, `theta(t) = (1 - theta_bar) *
    exp(-gamma * t) + theta_bar` with `theta_bar = 0.5`, `gamma = 0.001` per
    step). On a model given linear decay to `theta_bar`
    (`sdt.apply_stochastic_depth(model, final_survival_probability=0.5)`,
    `distribution="linear"`, the default) each layer `l` of `L` then has
    `1 - (l / L) * (1 - theta(t))` at step `t`, PLD's depth rule
    (`sdt.schedules.progressive_layer_drop_depth`), so
    `SurvivalProbabilityScheduler(unit="step", ramp="exponential")` is PLD.
    A `schedule(t, target)` function replaces either rule.

    Time is read from state that checkpoints restore: the epoch number Keras
    passes to the callback, or the optimizer's `iterations`. So a run
    interrupted and resumed with `keras.callbacks.BackupAndRestore` gets the
    same survival probabilities as an uninterrupted one.

    Args:
        duration: epochs or steps (see `unit`) over which the linear ramp
            runs, a positive int. Ignored when `schedule` is given or with
            `ramp="exponential"`.
        unit: `"epoch"` (values set at the start of each epoch, `t` = epoch
            index from 0) or `"step"` (set before each train batch, `t` =
            optimizer iterations so far).
        schedule: optional `f(t, target) -> float` in `[0, 1]`, called per
            layer; its values are validated.
        initial_survival_probability: the ramp's start, in `[0, 1]`.
        verbose: 0 silent, 1 prints the mean survival probability at the
            start of each epoch.
        ramp: `"linear"` (default) or `"exponential"` (PLD's time schedule).
        gamma: the exponential ramp's rate per epoch or step, a
            non-negative number (PLD: 0.001 per step).

    The current mean over layers is added to the epoch logs as
    `mean_survival_probability` (so `History` and TensorBoard record it).

    Example:

    ```python
    import keras
    import numpy as np
    import stochastic_depth_tf as sdt

    inputs = keras.Input((8,))
    outputs = sdt.StochasticDepth(0.5)([inputs, keras.layers.Dense(8)(inputs)])
    model = keras.Model(inputs, keras.layers.Dense(1)(outputs))
    model.compile("sgd", "mse")
    x, y = np.ones((32, 8), "float32"), np.zeros((32, 1), "float32")

    scheduler = sdt.callbacks.SurvivalProbabilityScheduler(duration=2)  # 1.0, 0.75, then 0.5
    model.fit(x, y, epochs=3, callbacks=[scheduler], verbose=0)
    ```
    """

    def __init__(
        self,
        duration: Optional[int] = None,
        unit: str = "epoch",
        schedule: Optional[Callable[[int, float], float]] = None,
        initial_survival_probability: float = 1.0,
        verbose: int = 0,
        ramp: str = "linear",
        gamma: float = schedules.PROGRESSIVE_LAYER_DROP_GAMMA,
    ) -> None:
        super().__init__()
        validate_choice(unit, UNITS, name="unit")
        if schedule is not None and not callable(schedule):
            raise TypeError(
                "Invalid type received for argument `schedule`. Expected a "
                "callable f(t, target) -> float or None. "
                f"Received: schedule={schedule!r}"
            )
        self.ramp = validate_choice(ramp, RAMPS, name="ramp")
        self.gamma = validate_non_negative(gamma, name="gamma")
        if schedule is None and self.ramp == "linear":
            duration = validate_positive_int(
                duration,
                name="duration",
                expected="a positive int (epochs or steps of the linear ramp) when no `schedule` is given",
            )
        self.duration = duration
        self.unit = unit
        self.schedule = schedule
        self.initial_survival_probability = validate_survival_probability(
            initial_survival_probability, name="initial_survival_probability"
        )
        self.verbose = verbose
        self._layers: List[keras.layers.Layer] = []
        self._assigned: Dict[int, float] = {}

    def survival_probability_at(self, t: int, target: float) -> float:
        """The survival probability at time `t` for a layer whose target is `target`."""
        if self.schedule is not None:
            value = self.schedule(t, target)
            return validate_survival_probability(value, name="schedule(t, target)")
        if self.ramp == "exponential":
            return schedules.exponential_ramp(t, target, initial=self.initial_survival_probability, gamma=self.gamma)
        # A linear ramp without a schedule: `__init__` checked `duration`, a positive int.
        fraction = min(max(t, 0) / cast(int, self.duration), 1.0)
        return self.initial_survival_probability + fraction * (target - self.initial_survival_probability)

    def current_values(self) -> Dict[str, float]:
        """The survival probability each scheduled layer uses now, by layer name."""
        return {
            layer.name: float(keras.ops.convert_to_numpy(layer.survival_probability_variable)) for layer in self._layers
        }

    def on_train_begin(self, logs: Optional[Dict[str, Any]] = None) -> None:
        self._layers = stochastic_depth_layers(self.model)
        self._assigned = {}
        if not self._layers:
            raise ValueError(
                "SurvivalProbabilityScheduler found no stochastic-depth layer "
                f"in model '{self.model.name}'. Expected at least one layer with "
                "a `survival_probability_variable` (StochasticDepth, ShakeDrop, "
                "StochasticDepthBlock); use sdt.apply_stochastic_depth to add them."
            )
        self._set(self._time(epoch=0))

    def on_epoch_begin(self, epoch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        self._assigned = {}
        self._set(self._time(epoch=epoch))
        if self.verbose:
            values = list(self.current_values().values())
            print(
                f"\nEpoch {epoch + 1}: SurvivalProbabilityScheduler set {len(values)} "
                f"layers, mean survival probability {np.mean(values):.4f} "
                f"(min {np.min(values):.4f})."
            )

    def on_train_batch_begin(self, batch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        if self.unit == "step":
            self._set(self._time())

    def on_epoch_end(self, epoch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        if logs is not None:
            logs["mean_survival_probability"] = float(np.mean(list(self.current_values().values())))

    def _time(self, epoch: int = 0) -> int:
        if self.unit == "epoch":
            return epoch
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def _set(self, t: int) -> None:
        for layer in self._layers:
            value = self.survival_probability_at(t, layer.survival_probability)
            if layer.inverted and value == 0.0:
                raise ValueError(
                    "Invalid value received from the schedule for layer "
                    f"'{layer.name}'. Expected a value greater than 0 for an "
                    f"inverted layer. Received: survival_probability=0.0 at t={t}"
                )
            # Skip values this callback already assigned: an assign per layer
            # per step adds up. Each epoch starts from a clean slate, since a
            # restore may have changed the variables behind our back.
            if self._assigned.get(id(layer)) != value:
                self._sync_model_state()
                layer.survival_probability_variable.assign(value)
                self._assigned[id(layer)] = value

    def _sync_model_state(self) -> None:
        """Writes the state of JAX's training loop back to the model's variables, if it holds any.

        Keras' JAX trainer carries the variables' values through an epoch in
        state of its own, and writes them back only at the end of the epoch,
        or when asked: an assignment between two steps would be overwritten
        without being read, unless the state is written back first (then the
        next step reads the variables again). Keras 3.0 did not ask when a
        callback reached the model (keras-team/keras#19054); later versions
        do, and then this is a cheap no-op.
        """
        sync = getattr(self.model, "jax_state_sync", None)
        if sync is not None:
            sync()
