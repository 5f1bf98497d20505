"""LayerDrop: a whole transformer layer (or sub-layer) `y = f(x)` gated as `x + s * (f(x) - x)`.

Fan et al., "Reducing Transformer Depth on Demand with Structured Dropout"
(ICLR 2020), drop a whole layer of a text or LLM transformer, both residual
branches together; fairseq (`--encoder-layerdrop`) and torchtune
(`layer_dropout`) do the same. Written as stochastic depth on the layer's
change of its input, with `s` the gate's scale (`b`, or `b / p` inverted;
`ops.gate_scale`) in training and its inference scale (`p`, or 1):

| phase     | `inverted=False`         | `inverted=True`             |
|-----------|--------------------------|-----------------------------|
| training  | `x + b * (f(x) - x)`     | `x + (b / p) * (f(x) - x)`  |
| inference | `x + p * (f(x) - x)`     | `f(x)`                      |

A dropped layer returns its input; where the scale is exactly 1 (a kept
layer in the paper's convention, any layer at `p = 1`, inference of the
inverted one) the output is `f(x)` itself, bit for bit, not `x + (f(x) - x)`.

What this module holds, none of it KerasHub's:

- `LayerDropGate`, the `StochasticDepth` of one layer or sub-layer, handed
  `f` as a function of the sequence and of per-example tensors (padding and
  attention masks). In training it skips what is dropped: `mode="batch"`
  runs `f` inside a conditional on the one gate (a dropped layer costs no
  forward or backward pass), the per-example modes run `f` on the kept
  sequences only, their masks gathered with them
  (`layers._skipping.skip_dropped_examples`), drawing the gates the merge
  form draws.
- `LayerDropBlock`, the mixin of an adapter: a subclass of a layer's own
  class whose `call` sends the original call through one gate (LayerDrop),
  or its two sub-layers through two gates (attention, then feed-forward;
  the adapter says how to split). A call with a cache (generation) or
  asking for attention scores is the original call.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import keras

from stochastic_depth_tf import backend, ops
from stochastic_depth_tf._validation import validate_training
from stochastic_depth_tf.layers._skipping import skip_dropped_examples, skips
from stochastic_depth_tf.layers.stochastic_depth import StochasticDepth

# A layer as a gate calls it: the sequence and its per-example tensors (masks, some None) to the new sequence.
LayerFunction = Callable[[Any, Tuple[Any, ...]], Any]


class LayerDropGate(StochasticDepth):
    """The gate of one layer or sub-layer `f`: `x + s * (f(x) - x)`, skipping what it drops in training.

    Called as `gate(x, function=f, extras=masks)`, `f(x, masks)` the layer
    and `masks` its per-example tensors (each None, `[batch, length]` or
    `[batch, length, ...]`, rows matching `x`'s). Called with
    `[shortcut, residual]` it is `StochasticDepth`. `_block` (set by the
    adapter's owner) is a weak reference to the layer, whose variables a
    conditional carries on some backends; weak and untracked, as in
    `stochastic_depth_tf.hub`'s vision gates.

    Args:
        skip_compute: True to skip dropped layers (`mode="batch"`) or
            sequences (`"sample"`, `"subset"`) in training where that pays
            and compiles (as `StochasticDepthBlock`); False to compute `f`
            and multiply.
        *args, **kwargs: as for `StochasticDepth`.
    """

    _block: Optional[Callable[[], Any]] = None

    def __init__(self, *args: Any, skip_compute: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.skip_compute = skip_compute
        self._fast_under_xla: Dict[str, bool] = {}

    def call(
        self,
        inputs: Any,
        training: Optional[bool] = None,
        function: Optional[LayerFunction] = None,
        extras: Sequence[Any] = (),
    ) -> Any:
        if function is None:
            return super().call(inputs, training=training)
        training = validate_training(training)
        x, extras = inputs, tuple(extras)
        owner = self._owner()
        if training and skips(self, owner, training=True, skip_compute=self.skip_compute):
            if self.mode == "batch":
                gradients = backend.branch_gradient_scope(
                    lambda rows: function(rows, extras), x, self._fast_under_xla, [owner]
                )
                if gradients is not None:
                    return self._skip_dropped_layer(x, lambda: function(x, extras), gradients, owner)
            elif not (backend.static_shapes() and self.mode == "sample") and packable(x, extras):
                packed, unpack = pack_rows(x, extras)

                def change(rows: Any) -> Any:
                    sequence, masks = unpack(rows)
                    return keras.ops.subtract(keras.ops.cast(function(sequence, masks), x.dtype), sequence)

                return skip_dropped_examples(self, change, packed, x, layers=[owner], owner=self.name)
        output = keras.ops.cast(function(x, extras), x.dtype)
        if not training and self.inverted:
            return output
        return combine(x, output, self._scale(x, training))

    def compute_output_spec(
        self,
        inputs: Any,
        training: Optional[bool] = None,
        function: Optional[LayerFunction] = None,
        extras: Sequence[Any] = (),
    ) -> Any:
        if function is None:
            return super().compute_output_spec(inputs, training=training)
        return keras.KerasTensor(inputs.shape, dtype=self.compute_dtype)

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        """A layer's output keeps its sequence's mask; `[shortcut, residual]` gets `StochasticDepth`'s."""
        if isinstance(inputs, (list, tuple)):
            return super().compute_mask(inputs, mask)
        return mask

    def through_rows(self, x: Any, function: LayerFunction, extras: Sequence[Any]) -> Any:
        """`function(x, extras)` with `x` and `extras` packed and unpacked as per-example skipping does.

        What an adapter's check compares with the original layer: the masks
        must come out of the packing as they went in.
        """
        extras = tuple(extras)
        if not packable(x, extras):
            return function(x, extras)
        packed, unpack = pack_rows(x, extras)
        return function(*unpack(packed))

    def _owner(self) -> Any:
        block = self._block() if self._block is not None else None
        return self if block is None else block

    def _scale(self, x: Any, training: bool) -> Any:
        """The multiplier `s` of `f(x) - x`: the gate's training scale, or the inference scale."""
        probability = self.survival_probability_variable
        if not training:
            return ops.inference_scale(probability, inverted=self.inverted, dtype=x.dtype)
        gate = ops.draw_gate(x, probability, mode=self.mode, seed=self.seed_generator)
        kept = ops.keep_probability(x, probability, mode=self.mode)
        return ops.gate_scale(gate, kept, inverted=self.inverted, dtype=x.dtype)

    def _skip_dropped_layer(self, x: Any, compute: Callable[[], Any], gradients: Any, owner: Any) -> Any:
        """Batch mode: the layer runs inside a conditional on the one gate (`StochasticDepthBlock`'s)."""
        probability = self.survival_probability_variable
        with backend.host_device():
            gate = ops.bernoulli_gate(x, probability, mode="batch", seed=self.seed_generator)
            keep = keras.ops.greater(gate, 0.0)
        scale = ops.gate_scale(gate, probability, inverted=self.inverted, dtype=x.dtype)

        def kept() -> Any:
            with gradients:
                output = keras.ops.cast(compute(), x.dtype)
            return combine(x, output, scale)

        return backend.conditional(keep, kept, lambda: x, [owner], self.name)


def combine(x: Any, output: Any, scale: Any) -> Any:
    """`x + scale * (output - x)`, and exactly `output` where `scale` is 1."""
    mixed = keras.ops.add(x, keras.ops.multiply(scale, keras.ops.subtract(output, x)))
    return keras.ops.where(keras.ops.equal(scale, keras.ops.ones((), dtype=scale.dtype)), output, mixed)


def packable(x: Any, extras: Tuple[Any, ...]) -> bool:
    """Whether every per-example tensor can travel with `x`'s rows: `[batch, length]` or `[batch, length, ...]`."""
    for extra in extras:
        if extra is None:
            continue
        if len(extra.shape) not in (2, 3):
            return False
        length, other = x.shape[1], extra.shape[1]
        if length is not None and other is not None and length != other:
            return False
    return True


def pack_rows(x: Any, extras: Tuple[Any, ...]) -> Tuple[Any, Callable[[Any], Tuple[Any, Tuple[Any, ...]]]]:
    """`x` and its per-example tensors as one tensor whose rows are gathered together, and the inverse.

    `layers._skipping.skip_dropped_examples` gathers the kept rows of one
    tensor: the masks ride along as extra features of `x`'s last axis
    (`[batch, length]` as one feature, `[batch, length, length]` as
    `length`), in `x`'s dtype. They hold 0 and 1, which every floating
    dtype holds exactly, and are cast back to their own dtype.
    """
    pieces = [x]
    layout: List[Optional[Tuple[str, int, Any]]] = []  # (dtype, rank, width) per extra, None for a None extra
    for extra in extras:
        if extra is None:
            layout.append(None)
            continue
        rank = len(extra.shape)
        feature = keras.ops.expand_dims(extra, -1) if rank == 2 else extra
        pieces.append(keras.ops.cast(feature, x.dtype))
        layout.append((keras.backend.standardize_dtype(extra.dtype), rank, keras.ops.shape(feature)[-1]))
    if len(pieces) == 1:
        return x, lambda rows: (rows, extras)
    packed = keras.ops.concatenate(pieces, axis=-1)
    width = x.shape[-1]

    def unpack(rows: Any) -> Tuple[Any, Tuple[Any, ...]]:
        start = width
        unpacked: List[Any] = []
        for entry in layout:
            if entry is None:
                unpacked.append(None)
                continue
            dtype, rank, size = entry
            piece = rows[..., start : start + size]
            start = start + size
            if rank == 2:
                piece = keras.ops.squeeze(piece, -1)
            unpacked.append(keras.ops.cast(piece, "bool") if dtype == "bool" else keras.ops.cast(piece, dtype))
        return rows[..., :width], tuple(unpacked)

    return packed, unpack


class LayerDropBlock:
    """Mixin of the LayerDrop adapters: the layer's own `call` through one gate, or its sub-layers through two.

    An adapter is `class Adapter(LayerDropBlock, TheLayerClass)` naming, as
    class attributes, the argument of `call` holding the sequence, those
    holding per-example masks, and those that make a call the original one
    (a cache: generation; attention scores asked for). Two-gate adapters
    also define `sublayers(arguments)`. With `layer_drop_removed` set the
    layer returns its input (what `stochastic_depth_tf.prune_blocks`'s
    greedy rule evaluates, eagerly, before it removes a layer for good).
    `_layer_drop_gates` holds one or two
    `LayerDropGate`s, set with `object.__setattr__` so that the built layer
    does not track them (its owner does); with `_stochastic_depth_bypass` set the
    call runs without gates but through the same plumbing (for the check
    against the original class).
    """

    sequence_argument: str
    mask_arguments: Tuple[str, ...] = ()
    passthrough_arguments: Tuple[str, ...] = ()
    original_class: Any
    layer_drop_removed = False
    _layer_drop_gates: Tuple[LayerDropGate, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The layer's own class; a shared shape of several adapters (no such base) has none yet.
        original = [base for base in cls.__bases__ if not issubclass(base, LayerDropBlock)]
        if original:
            cls.original_class = original[0]

    def sublayers(self, arguments: Dict[str, Any]) -> Tuple[LayerFunction, Callable[[Any], Any]]:
        """The attention sub-layer `(x, masks) -> h` and the feed-forward sub-layer `h -> y` of this call.

        Abstract: every adapter defines it (a test checks each one the hub
        registers), so `gates_per_layer=2` reaches no layer without it.
        """
        raise NotImplementedError(f"{type(self).__name__} must define sublayers for the two-gate form")

    def call(self, *args: Any, **kwargs: Any) -> Any:
        original = self.original_class
        bound = inspect.signature(original.call).bind(self, *args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        del arguments[next(iter(arguments))]  # `self`
        if any(
            arguments.get(name) is not None and arguments.get(name) is not False for name in self.passthrough_arguments
        ):
            return original.call(self, *args, **kwargs)
        x = arguments.pop(self.sequence_argument)
        if self.layer_drop_removed:
            return x
        masks = tuple(arguments.pop(name) for name in self.mask_arguments)

        def layer(sequence: Any, masks: Tuple[Any, ...]) -> Any:
            given = {self.sequence_argument: sequence, **dict(zip(self.mask_arguments, masks))}
            return original.call(self, **given, **arguments)

        gates = self._layer_drop_gates
        bypass = getattr(self, "_stochastic_depth_bypass", False)
        if len(gates) == 1:
            return gates[0].through_rows(x, layer, masks) if bypass else gates[0](x, function=layer, extras=masks)
        attention, feedforward = self.sublayers(arguments)
        if bypass:
            return feedforward(gates[0].through_rows(x, attention, masks))
        x = gates[0](x, function=attention, extras=masks)
        return gates[1](x, function=lambda h, _: feedforward(h))
