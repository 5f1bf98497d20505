"""`StochasticDepthBlock`: a residual block that skips the compute of a dropped branch."""

from __future__ import annotations

from typing import Any, Dict, Optional

import keras

from stochastic_depth_tf import backend, ops
from stochastic_depth_tf._validation import Shape, check_pair, check_same_shape, validate_bool, validate_training
from stochastic_depth_tf.layers._skipping import skip_dropped_examples, skips
from stochastic_depth_tf.layers.stochastic_depth import StochasticDepth


@keras.saving.register_keras_serializable(package="stochastic_depth_tf")
class StochasticDepthBlock(keras.layers.Layer):
    """A residual block `shortcut(x) + gate * branch(x)` that skips dropped branches.

    The block wraps a residual branch (any Keras layer or model) and an
    optional shortcut layer, and merges them as `StochasticDepth` does
    (Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016): in
    training `shortcut(x) + b * branch(x)` with `b ~ Bernoulli(p)` (or
    `b / p` with `inverted=True`), at inference `shortcut(x) + p *
    branch(x)` (or `shortcut(x) + branch(x)`). It draws the merge layer's
    gates for the same mode and seed.

    What the merge layer cannot do, the block does: in training it does not
    compute what is dropped.

    - `mode="batch"`: a dropped branch costs no forward pass, no backward
      pass, and leaves the branch's BatchNormalization moving statistics
      untouched, as in the paper's implementation. That is the paper's
      speed-up: with linear decay to 0.5 about a quarter of the blocks are
      skipped at each step.
    - `mode="sample"` and `mode="subset"` (DINOv2's idea): the branch runs
      on the kept examples only, and dropped rows are the shortcut as is.
      BatchNormalization inside the branch then normalizes over, and
      updates its statistics from, the kept examples only. The branch must
      act on examples independently and keep the batch size (checked when
      the block is built).

    Where skipping would cost more than it saves, or cannot be compiled,
    the block computes the branch and multiplies it by the gate, like the
    merge layer (`skip_compute=False` asks for that always): above
    `p = 0.9` in the per-example modes; `mode="sample"` under XLA and JAX
    (a varying count has no static shape; `"subset"` skips there, with `k`
    fixed when compiling from the configured `survival_probability`);
    convolutions on the CPU that the forward-only gradient rewrite does not
    cover (under XLA: strided or dilated ones; under JAX: strided transposed
    or `channels_first` ones); a branch with
    synchronized BatchNormalization across several replicas. Across
    replicas every replica skips the same blocks; a branch holding any
    other collective gets an error asking for `skip_compute=False`. How
    each backend skips is told in `stochastic_depth_tf/backend/`.
    Inference computes the branch, like the merge layer.

    Args:
        branch: the residual branch, a Keras layer or model mapping the block
            input to a tensor of the shortcut's shape.
        shortcut: None for the identity, or a layer (a projection, a strided
            subsampling) for blocks that change shape.
        survival_probability: probability `p` in `[0, 1]` of keeping the
            branch in training.
        mode: `"batch"` (one gate per call; skips dropped branches),
            `"sample"` (one Bernoulli gate per example) or `"subset"` (a
            fixed number of kept examples); the per-example modes skip
            dropped examples.
        inverted: False for the paper's scaling at inference, True for the
            inverted scaling in training.
        seed: int or None, as for `StochasticDepth`.
        skip_compute: True (default) to skip dropped branches or examples
            where that is possible (training); False to always compute the
            branch and multiply by the gate.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: the block input `x`.
        training: Python bool or None, as for `StochasticDepth`.

    Returns:
        `shortcut(x)` plus the gated branch, in the block's compute dtype
        on every path (a shortcut layer of another dtype policy included).
        Its mask is the one `keras.layers.Add()([shortcut(x), branch(x)])`
        would carry: the input's mask when the shortcut and the branch keep
        it (a `Sequential` branch keeps it when each of its layers does),
        none when one of them drops it (a `Conv1D`).

    Example:

    ```python
    import keras
    import stochastic_depth_tf as sdt

    branch = keras.Sequential([
        keras.layers.Conv2D(16, 3, padding="same", use_bias=False),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.Conv2D(16, 3, padding="same", use_bias=False),
        keras.layers.BatchNormalization(),
    ])
    block = sdt.StochasticDepthBlock(branch, survival_probability=0.8)
    outputs = block(keras.Input((32, 32, 16)))
    ```
    """

    def __init__(
        self,
        branch: keras.layers.Layer,
        shortcut: Optional[keras.layers.Layer] = None,
        survival_probability: float = 0.5,
        mode: str = "batch",
        inverted: bool = False,
        seed: Optional[int] = None,
        skip_compute: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        for name, layer, optional in (("branch", branch, False), ("shortcut", shortcut, True)):
            if not isinstance(layer, keras.layers.Layer) and not (optional and layer is None):
                expected = "a keras.layers.Layer or None" if optional else "a keras.layers.Layer"
                raise TypeError(
                    f"Invalid type received for argument `{name}`. Expected "
                    f"{expected}. Received: {name}={layer!r} of type {type(layer).__name__}"
                )
        self.branch = branch
        self.shortcut = shortcut
        self.skip_compute = validate_bool(skip_compute, name="skip_compute")
        # The merge layer holds the survival probability, the seed generator
        # and the validation, so block and layer cannot drift apart.
        self.merge = StochasticDepth(
            survival_probability,
            mode=mode,
            inverted=inverted,
            seed=seed,
            dtype=self.dtype_policy,
            name="merge",
        )
        self._fast_under_xla: Dict[str, bool] = {}

    @property
    def survival_probability(self) -> float:
        """The configured survival probability (what `get_config` records)."""
        return self.merge.survival_probability

    @survival_probability.setter
    def survival_probability(self, value: float) -> None:
        self.merge.survival_probability = value

    @property
    def survival_probability_variable(self) -> keras.Variable:
        """The variable the graph reads; a schedule assigns it."""
        return self.merge.survival_probability_variable

    @property
    def mode(self) -> str:
        return self.merge.mode

    @property
    def inverted(self) -> bool:
        return self.merge.inverted

    @property
    def seed(self) -> Optional[int]:
        return self.merge.seed

    def build(self, input_shape: Any) -> None:
        # Variables cannot be created inside the conditional of `call`, so
        # the wrapped layers are built here, before the first call.
        if not self.branch.built:
            self.branch.build(input_shape)
        if self.shortcut is not None and not self.shortcut.built:
            self.shortcut.build(input_shape)
        self.compute_output_shape(input_shape)
        if self.mode != "batch" and self.skip_compute:
            self._check_branch_keeps_the_batch(input_shape)

    def _check_branch_keeps_the_batch(self, input_shape: Any) -> None:
        """Per-example skipping adds row `i` of the branch output to row `i` of the shortcut."""
        for batch in (3, 5):
            spec = keras.KerasTensor((batch,) + tuple(input_shape[1:]), dtype=self.compute_dtype)
            output_batch = self.branch.compute_output_spec(spec).shape[0]
            if output_batch != batch:
                raise ValueError(
                    f"Invalid `branch` received by StochasticDepthBlock '{self.name}' "
                    f"with mode={self.mode!r} and skip_compute=True. Expected a branch "
                    "whose output has the batch size of its input (it runs on the "
                    "kept examples only). Received: a branch mapping a batch of "
                    f"{batch} to a batch of {output_batch}"
                )

    def call(self, inputs: Any, training: Optional[bool] = None) -> Any:
        training = validate_training(training)
        shortcut = inputs if self.shortcut is None else self.shortcut(inputs, training=training)
        # Every path adds in the block's compute dtype: a shortcut layer with
        # a policy of its own (float32 in a mixed-precision block) would
        # otherwise give the skipping paths its dtype.
        shortcut = keras.ops.cast(_floating_shortcut(shortcut), self.compute_dtype)
        static = backend.static_shapes()
        if self._skips(training) and self.mode == "batch":
            gradients = backend.branch_gradient_scope(
                lambda x: self.branch(x, training=True), inputs, self._fast_under_xla, [self.branch]
            )
            if gradients is not None:
                return self._skip_dropped_batch(inputs, shortcut, gradients)
        elif self._skips(training) and not (static and self.mode == "sample"):
            return skip_dropped_examples(
                self.merge,
                lambda rows: self.branch(rows, training=True),
                inputs,
                shortcut,
                layers=[self.branch],
                owner=self.name,
            )
        residual = self.branch(inputs, training=training)
        return self.merge([shortcut, keras.ops.cast(residual, shortcut.dtype)], training=training)

    def _skip_dropped_batch(self, inputs: Any, shortcut: Any, gradients: Any) -> Any:
        """Batch mode: the branch runs inside a conditional on the one gate."""
        probability = self.survival_probability_variable
        with backend.host_device():
            gate = ops.bernoulli_gate(shortcut, probability, mode="batch", seed=self.merge.seed_generator)
            keep = keras.ops.greater(gate, 0.0)
        scale = ops.gate_scale(gate, probability, inverted=self.inverted, dtype=shortcut.dtype)

        def kept() -> Any:
            with gradients:
                residual = keras.ops.cast(self.branch(inputs, training=True), shortcut.dtype)
            return keras.ops.add(shortcut, keras.ops.multiply(scale, residual))

        return backend.conditional(keep, kept, lambda: shortcut, [self.branch], self.name)

    def _skips(self, training: bool) -> bool:
        """Whether this call may skip dropped branches or examples (before static shapes are considered)."""
        return skips(self.merge, self.branch, training=training, skip_compute=self.skip_compute)

    def compute_output_spec(self, inputs: Any, training: Optional[bool] = None) -> Any:
        _floating_shortcut(inputs if self.shortcut is None else self.shortcut.compute_output_spec(inputs))
        return super().compute_output_spec(inputs)

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        """The output's mask as `keras.layers.Add()([shortcut(x), branch(x)])` leaves it.

        The masks of the two terms, OR-ed (None unless both have one): the
        input's mask for the identity shortcut, and for a layer the mask
        Keras leaves on its output (`_output_mask`).
        """
        if mask is None:
            return None
        shortcut_mask = mask if self.shortcut is None else _output_mask(self.shortcut, inputs, mask)
        return self.merge.compute_mask([inputs, inputs], [shortcut_mask, _output_mask(self.branch, inputs, mask)])

    def compute_output_shape(self, input_shape: Any) -> Optional[Shape]:
        spec = keras.KerasTensor(input_shape, dtype=self.compute_dtype)
        residual_shape = self.branch.compute_output_spec(spec).shape
        shortcut_shape = input_shape if self.shortcut is None else self.shortcut.compute_output_spec(spec).shape
        return check_same_shape(shortcut_shape, residual_shape)

    def get_config(self) -> Dict[str, Any]:
        base_config = super().get_config()
        config = {
            "branch": keras.saving.serialize_keras_object(self.branch),
            "shortcut": (None if self.shortcut is None else keras.saving.serialize_keras_object(self.shortcut)),
            "survival_probability": self.survival_probability,
            "mode": self.mode,
            "inverted": self.inverted,
            "seed": self.seed,
            "skip_compute": self.skip_compute,
        }
        return {**base_config, **config}

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> StochasticDepthBlock:
        config = dict(config)
        config["branch"] = keras.saving.deserialize_keras_object(config["branch"])
        if config.get("shortcut") is not None:
            config["shortcut"] = keras.saving.deserialize_keras_object(config["shortcut"])
        return cls(**config)


def _floating_shortcut(shortcut: Any) -> Any:
    """Refuses a shortcut that is not floating point, as the merge layer refuses it (the same message).

    The branch output is cast to the shortcut's dtype, so the shortcut is
    the one term whose dtype the block does not choose: the input itself
    for the identity shortcut.
    """
    check_pair((shortcut, shortcut))
    return shortcut


def _output_mask(layer: keras.layers.Layer, inputs: Any, mask: Any) -> Any:
    """The mask Keras leaves on `layer(inputs)` when `inputs` carries `mask`.

    A layer that supports masking computes it; one that does not drops it
    (Keras warns that it does). A model (a `Sequential` branch) runs its
    layers in turn and each passes the mask on or drops it, though Keras
    reports no masking support for models: so a model keeps the mask when
    each of its layers does. Inner layers get the block input for
    `inputs`, which only layers that make a mask from their input (an
    `Embedding`, `Masking`) would read.
    """
    if isinstance(layer, keras.Model):
        for inner in layer.layers:
            if not isinstance(inner, keras.layers.InputLayer):
                mask = _output_mask(inner, inputs, mask)
        return mask
    if mask is None or not layer.supports_masking:
        return None
    return layer.compute_mask(inputs, mask)
