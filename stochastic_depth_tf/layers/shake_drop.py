"""`ShakeDrop`: stochastic depth generalized, a random scale forward and another backward."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import keras

from stochastic_depth_tf import ops
from stochastic_depth_tf._validation import (
    check_pair,
    validate_range,
    validate_shake_drop_mode,
    validate_shake_mode,
    validate_training,
)
from stochastic_depth_tf.layers._merge import StochasticMerge


@keras.saving.register_keras_serializable(package="stochastic_depth_tf")
class ShakeDrop(StochasticMerge):
    """Adds a residual branch to its shortcut, scaled at random forward and backward.

    In training the layer returns `shortcut + (b + alpha - b * alpha) *
    residual` and scales the residual's gradient by `b + beta - b * beta`
    instead, with `b ~ Bernoulli(survival_probability)`, `alpha ~
    U(alpha_range)` and `beta ~ U(beta_range)` drawn in the graph at every
    call: a kept branch (`b = 1`) is a plain add, a dropped one is multiplied
    by `alpha`, possibly negative, in the forward pass and its gradient by
    `beta` in the backward pass. At inference it returns `shortcut +
    E[b + alpha - b * alpha] * residual`, which is `shortcut + p * residual`
    for the default `alpha_range=(-1, 1)` (Yamada et al., "ShakeDrop
    Regularization for Deep Residual Learning", arXiv 1802.02375; the maths
    is `stochastic_depth_tf.ops.shake_drop`).

    Choices others disagree on, made explicit:

    - `mode="batch"` (default) draws one `b` per call, the whole batch keeps
      or shakes the branch, as the reference PyramidNet implementation does
      (and its common PyTorch port, used by Fast AutoAugment); `mode="sample"`
      draws one `b` per example.
    - `shake_mode="sample"` (default) draws one `alpha` and one `beta` per
      example, as that implementation does; `shake_mode="element"` draws one
      per element of the residual. Per element costs a uniform draw twice
      the residual's size: 1.13 to 1.24 times the plain PyramidNet-110 step
      in graph mode, and under XLA on CPU Keras' draw is slow (a
      PyramidNet-20 step took 12.7 times the plain step; see
      `benchmarks/shake_drop_step_time.py`).
    - The paper's scaling at inference (there is no inverted form:
      `layer.inverted` is always False).

    The survival probability lives in a non-trainable float32 variable,
    `survival_probability_variable`, as in `StochasticDepth`: a schedule
    (`stochastic_depth_tf.callbacks.SurvivalProbabilityScheduler`) changes it
    without a retrace, checkpoints and `.keras` files keep it (with the seed
    generator's state), and it is not one of `layer.weights`, so a model with
    `ShakeDrop` in place of `Add` has the plain model's weights (under
    PyTorch it is a buffer of the module). Masks pass as through `Add`.
    `stochastic_depth_tf.strip_stochastic_depth` folds the inference scale
    into a `Rescaling` in front of an `Add`.

    Args:
        survival_probability: probability `p` in `[0, 1]` that `b = 1`. The
            paper uses the linear decay rule to `p_L = 0.5` over the blocks.
            `1.0` makes the layer a plain add.
        alpha_range: `(low, high)` of the forward coefficient, finite,
            `low <= high`; the paper's best is `(-1, 1)`.
        beta_range: `(low, high)` of the backward coefficient; the paper's
            best is `(0, 1)`.
        mode: `"batch"` or `"sample"`: how many `b` are drawn, see above.
        seed: int or None. A seeded layer draws a reproducible sequence; two
            unseeded layers draw independent ones.
        shake_mode: `"sample"` or `"element"`: how many `alpha` and `beta`
            are drawn, see above.
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

    # Three blocks with the paper's linear decay rule to p_L = 0.5.
    x = inputs = keras.Input((32, 32, 16))
    for p in sdt.schedules.linear_decay(3, final_survival_probability=0.5):
        branch = keras.layers.Conv2D(16, 3, padding="same")(x)
        x = sdt.ShakeDrop(survival_probability=p)([x, branch])
    model = keras.Model(inputs, x)
    ```
    """

    def __init__(
        self,
        survival_probability: float = 0.5,
        alpha_range: Sequence[float] = (-1.0, 1.0),
        beta_range: Sequence[float] = (0.0, 1.0),
        mode: str = "batch",
        seed: Optional[int] = None,
        shake_mode: str = "sample",
        **kwargs: Any,
    ) -> None:
        super().__init__(survival_probability, seed=seed, **kwargs)
        self.alpha_range = validate_range(alpha_range, name="alpha_range")
        self.beta_range = validate_range(beta_range, name="beta_range")
        self.mode = validate_shake_drop_mode(mode)
        self.shake_mode = validate_shake_mode(shake_mode)

    def call(self, inputs: Any, training: Optional[bool] = None) -> Any:
        shortcut, residual = check_pair(inputs)
        return ops.shake_drop_add(
            shortcut,
            residual,
            self.survival_probability_variable,
            training=validate_training(training),
            alpha_range=self.alpha_range,
            beta_range=self.beta_range,
            mode=self.mode,
            shake_mode=self.shake_mode,
            seed=self.seed_generator,
        )

    def get_config(self) -> Dict[str, Any]:
        base_config = super().get_config()
        config = {
            "alpha_range": self.alpha_range,
            "beta_range": self.beta_range,
            "mode": self.mode,
            "shake_mode": self.shake_mode,
        }
        return {**base_config, **config}
