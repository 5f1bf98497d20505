"""`StochasticDepth`: a drop-in for `keras.layers.Add()` on residual blocks."""

from __future__ import annotations

from typing import Any, Dict, Optional

import keras

from stochastic_depth_tf import ops
from stochastic_depth_tf._validation import check_pair, validate_mode, validate_training
from stochastic_depth_tf.layers._merge import StochasticMerge


@keras.saving.register_keras_serializable(package="stochastic_depth_tf")
class StochasticDepth(StochasticMerge):
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
    `keras.applications` weights) transfer between the two. Under PyTorch it
    is a buffer of the layer's module (in `state_dict()`), not a parameter,
    and so not one of `layer.variables` either: Keras makes each of those a
    parameter. `layer.survival_probability` is the configured value that
    `get_config` records; a schedule moves the variable towards it.

    Masks pass as through `keras.layers.Add`: the output's mask is the two
    inputs' masks OR-ed, or none unless both have one.

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
        super().__init__(survival_probability, seed=seed, inverted=inverted, **kwargs)
        self.mode = validate_mode(mode)

    def call(self, inputs: Any, training: Optional[bool] = None) -> Any:
        shortcut, residual = check_pair(inputs)
        return ops.gated_add(
            shortcut,
            residual,
            self.survival_probability_variable,
            training=validate_training(training),
            mode=self.mode,
            inverted=self.inverted,
            seed=self.seed_generator,
        )

    def get_config(self) -> Dict[str, Any]:
        base_config = super().get_config()
        config = {"mode": self.mode, "inverted": self.inverted}
        return {**base_config, **config}
