"""What every block adapter shares: the gated residual adds, the branch gate, and the check against the original block.

A block adapter (`_convolutional`, `_vision_transformer`) is a subclass of a
KerasHub block's own class, mixed with `GatedBlock`, whose `call` is the
original's with the residual adds routed through `StochasticDepth` gates.
Only the backbone's own (throwaway) block instances get it: KerasHub's
classes are never patched. `check_adapter` compares each adapted block with
its original `call` on a random input, gates bypassed, so a KerasHub version
whose block computes something else fails loudly instead of training another
network.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple, Type

import keras
import numpy as np

from stochastic_depth_tf import backend
from stochastic_depth_tf._validation import validate_training
from stochastic_depth_tf.hub._compat import version_message
from stochastic_depth_tf.layers._skipping import skip_dropped_examples, skips
from stochastic_depth_tf.layers.stochastic_depth import StochasticDepth

# The largest difference allowed between an adapter with its gates bypassed and
# the block's original `call`, relative to the output's scale (float32 maths).
ADAPTER_TOLERANCE = 1e-5

# The arguments of one call of a block: positional and keyword.
ExampleCall = Tuple[Tuple[Any, ...], Dict[str, Any]]


class GatedBlock:
    """Mixin of the adapters: the residual adds of `call` go through gates.

    `_stochastic_depth_gates` holds one `StochasticDepth` per residual add of
    the block, set with `object.__setattr__` so the (already built, state
    locked) block does not track them; the backbone tracks them instead.
    """

    residual_adds: int
    _stochastic_depth_gates: List[Any]

    @classmethod
    def example_call(cls, block: Any, backbone: Any) -> ExampleCall:
        """Arguments of a call of `block` as the backbone makes it, on a random input, batch 2."""
        if hasattr(block, "hidden_dim") and not block._inbound_nodes:
            # A block called inside an encoder's `call` has no graph node to
            # read its input shape from; any sequence length does.
            shape: Tuple[int, ...] = (2, 5, block.hidden_dim)
        else:
            shape = (2,) + tuple(block.input.shape[1:])
        return (random_input(shape),), {}

    def _residual_add(self, index: int, shortcut: Any, residual: Any) -> Any:
        if getattr(self, "_stochastic_depth_bypass", False):
            return shortcut + residual
        return self._stochastic_depth_gates[index]([shortcut, residual])

    def _residual_branch(self, index: int, inputs: Any, branch: Callable[[Any], Any]) -> Any:
        """`inputs + branch(inputs)`, gated; `branch` must act on examples independently.

        The gate, a `BranchGate`, runs `branch` on the kept examples only
        where it can (see `BranchGate`), else on all of them.
        """
        if getattr(self, "_stochastic_depth_bypass", False):
            return inputs + branch(inputs)
        return self._stochastic_depth_gates[index](inputs, branch=branch)

    def _attention_then_mlp(self, inputs: Any, attention: Callable[[Any], Any], mlp: Callable[[Any], Any]) -> Any:
        """A transformer block of two residual branches: `x = inputs + attention(inputs)`, then `x + mlp(x)`, gated."""
        return self._residual_branch(1, self._residual_branch(0, inputs, attention), mlp)


class BranchGate(StochasticDepth):
    """A `StochasticDepth` gate that may be handed its residual branch as a function, to skip dropped examples.

    Called with `[shortcut, residual]` it is `StochasticDepth`. Called with
    the block's `inputs` and `branch=` a function of them (a pre-norm
    transformer branch: `inputs + branch(inputs)`), in training with mode
    `"sample"` or `"subset"` and `skip_compute=True` it runs the branch on
    the kept examples only, drawing the same gate as the merge would
    (`stochastic_depth_tf.layers._skipping`); elsewhere (inference, `mode=
    "batch"`, `p` above `PER_EXAMPLE_SKIP_ABOVE`, `"sample"` where shapes
    are static) it computes the branch and merges. `_block` (set by the
    handler) is a weak reference to the block, whose variables the
    conditional of some backends needs: weak and untracked, since the block
    holds its gates, and a cycle of layers sends Keras' weight saving into
    endless recursion.
    """

    _block: Optional[Callable[[], Any]] = None

    def __init__(self, *args: Any, skip_compute: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.skip_compute = skip_compute

    def call(self, inputs: Any, training: Optional[bool] = None, branch: Optional[Callable[[Any], Any]] = None) -> Any:
        if branch is None:
            return super().call(inputs, training=training)
        training = validate_training(training)
        block = self._block() if self._block is not None else None
        owner = self if block is None else block
        if (
            self.mode != "batch"
            and skips(self, owner, training=training, skip_compute=self.skip_compute)
            and not (backend.static_shapes() and self.mode == "sample")
        ):
            return skip_dropped_examples(self, branch, inputs, inputs, layers=[owner], owner=self.name)
        return super().call([inputs, keras.ops.cast(branch(inputs), inputs.dtype)], training=training)

    def compute_output_spec(
        self, inputs: Any, training: Optional[bool] = None, branch: Optional[Callable[[Any], Any]] = None
    ) -> Any:
        if branch is None:
            return super().compute_output_spec(inputs, training=training)
        return keras.KerasTensor(inputs.shape, dtype=self.compute_dtype)


def random_input(shape: Tuple[int, ...]) -> Any:
    """A float32 tensor of standard normal values, the same on every call."""
    return keras.ops.convert_to_tensor(np.random.default_rng(0).normal(size=shape).astype("float32"))


def check_adapter(block: Any, original_class: Type[Any], example: ExampleCall) -> None:
    """Raises if the adapter with its gates bypassed differs from the original `call`."""
    args, kwargs = example
    object.__setattr__(block, "_stochastic_depth_bypass", True)
    try:
        expected = _first_output(original_class.call(block, *args, **kwargs))
        received = _first_output(block.call(*args, **kwargs))
    finally:
        object.__setattr__(block, "_stochastic_depth_bypass", False)
    scale = max(1.0, float(np.max(np.abs(expected))))
    if expected.shape != received.shape or not np.allclose(
        expected, received, rtol=0.0, atol=ADAPTER_TOLERANCE * scale
    ):
        raise RuntimeError(
            version_message(
                f"keras-hub's {original_class.__name__} no longer computes what "
                "stochastic_depth_tf's adapter for it assumes (block "
                f"'{block.name}': outputs differ by up to "
                f"{float(np.max(np.abs(expected - received))):.3g})"
            )
        )


def _first_output(output: Any) -> np.ndarray:
    """The block's output tensor (DeiT's blocks also return attention scores), as NumPy."""
    if isinstance(output, (tuple, list)):
        output = output[0]
    # stop_gradient: PyTorch refuses NumPy of a tensor that requires grad.
    result: np.ndarray = keras.ops.convert_to_numpy(keras.ops.stop_gradient(output))
    return result
