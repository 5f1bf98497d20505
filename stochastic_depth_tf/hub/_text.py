"""What the text and LLM adapters share: the handler that gives a backbone's transformer layers LayerDrop.

`text_encoder` and `text_decoder` hold one adapter per layer class
(`stochastic_depth_tf.layers._layer_drop.LayerDropBlock`); `TextLayerHandler`
is their backbones' handler, the text counterpart of the vision handlers:
it gives every layer of `backbone.transformer_layers` (the list the task
models' `call_with_cache` iterates) its adapter and its gates, and checks the
adapted layer against its original class's `call`. `transformer_sublayers`
is the two-gate split of KerasHub's `TransformerEncoder` and
`TransformerDecoder`, which name their sub-layers alike.
"""

from __future__ import annotations

import inspect
import weakref
from typing import Any, Callable, Dict, List, Tuple, Type

import keras
import numpy as np

from stochastic_depth_tf._settings import StochasticDepthSettings
from stochastic_depth_tf._validation import block_seed
from stochastic_depth_tf.hub import _compat
from stochastic_depth_tf.hub._adapter import ExampleCall, check_adapter, random_input
from stochastic_depth_tf.hub._handlers import Transformed, no_private_rates
from stochastic_depth_tf.layers._layer_drop import LayerDropBlock, LayerDropGate, LayerFunction

# LayerDrop's choice for a text layer when `gates_per_layer` is left out:
# one gate, both residual branches dropped together.
DEFAULT_GATES_PER_LAYER = 1

# The two sub-layers of a layer's two-gate form: attention `(x, masks) -> h`, feed-forward `h -> y`.
SubLayers = Tuple[LayerFunction, Callable[[Any], Any]]


class TextLayerHandler:
    """Backbones whose depth is `transformer_layers`: each layer given LayerDrop by its class's adapter.

    Layer `l = 1 .. L` gets the survival probability of the settings'
    schedule (`p_l = 1 - (l / L) * (1 - p_L)`, or `p_L` everywhere with
    `"uniform"`, LayerDrop's choice). A layer has `gates_per_layer` gates:
    one when left out (LayerDrop: the layer's own `call` through the gate),
    or two (its attention and feed-forward sub-layers, the adapter's
    `sublayers`), which share the layer's probability and draw
    independently; gate `k`, counted over the whole backbone, gets the seed
    `seed + k`.

    Args:
        adapters: the adapter class of each layer class.
    """

    # The new graph is the backbone's own, its layers included.
    keeps_layers = True

    def __init__(self, adapters: Dict[type, Type[LayerDropBlock]]) -> None:
        self.adapters = adapters

    def transform(self, backbone: Any, settings: StochasticDepthSettings) -> Transformed:
        layers = list(backbone.transformer_layers)
        if settings.final_survival_probability is None:
            raise no_private_rates(backbone)
        count = DEFAULT_GATES_PER_LAYER if settings.gates_per_layer is None else settings.gates_per_layer
        gates: List[LayerDropGate] = []
        for layer, probability in zip(layers, settings.survival_probabilities(len(layers))):
            adapter = self.adapter(backbone, layer)
            original_class = type(layer)
            example = example_call(layer, backbone, adapter)
            layer.__class__ = adapter
            layer_gates = tuple(
                LayerDropGate(
                    survival_probability=probability,
                    mode=settings.mode,
                    inverted=settings.inverted,
                    seed=block_seed(settings.seed, len(gates) + index),
                    skip_compute=settings.skip_compute,
                    dtype=layer.dtype_policy,
                    name=f"{layer.name}_layer_drop" + (f"_{index}" if count > 1 else ""),
                )
                for index in range(count)
            )
            for gate in layer_gates:
                object.__setattr__(gate, "_block", weakref.ref(layer))
            object.__setattr__(layer, "_layer_drop_gates", layer_gates)
            check_adapter(layer, original_class, example)
            gates.extend(layer_gates)
        # `input`: the inputs are a dict (token ids, padding mask, ...).
        return backbone.input, backbone.output, {}, gates

    def adapter(self, backbone: Any, layer: Any) -> Type[LayerDropBlock]:
        """The adapter of `layer`'s class, or an error naming the classes known (or the arguments missing)."""
        adapter = self.adapters.get(type(layer))
        if adapter is None:
            raise TypeError(
                _compat.version_message(
                    f"Invalid layer in backbone '{backbone.name}'. Expected one of "
                    f"{sorted(cls.__name__ for cls in self.adapters)}. Received: "
                    f"{type(layer).__name__} '{layer.name}' (this keras-hub builds "
                    "its layers differently)"
                )
            )
        expected = (adapter.sequence_argument, *adapter.mask_arguments, *adapter.passthrough_arguments)
        missing = [name for name in expected if name not in inspect.signature(type(layer).call).parameters]
        if missing:
            raise TypeError(
                _compat.version_message(
                    f"keras-hub's {type(layer).__name__}.call no longer takes the arguments "
                    f"stochastic_depth_tf's adapter for it passes (missing: {', '.join(missing)})"
                )
            )
        return adapter


def transformer_sublayers(layer: Any, attention_mask: LayerFunction, training: Any) -> SubLayers:
    """The self-attention and feed-forward sub-layers of KerasHub's `TransformerEncoder` or `TransformerDecoder`.

    Each as its class's `call` runs it, norm included, pre-norm (`x +
    f(norm(x))`) or post-norm (`norm(x + f(x))`), so a dropped post-norm
    sub-layer returns its input. `attention_mask(x, masks)` is the class's
    self-attention mask of the sequence `x`.
    """

    def attention(x: Any, masks: Tuple[Any, ...]) -> Any:
        mask = attention_mask(x, masks)
        residual = x
        if layer.normalize_first:
            x = layer._self_attention_layer_norm(x)
        x = layer._self_attention_layer(query=x, value=x, attention_mask=mask, training=training)
        x = layer._self_attention_dropout(x, training=training)
        x = x + residual
        if not layer.normalize_first:
            x = layer._self_attention_layer_norm(x)
        return x

    def feedforward(x: Any) -> Any:
        residual = x
        if layer.normalize_first:
            x = layer._feedforward_layer_norm(x)
        x = layer._feedforward_output_dense(layer._feedforward_intermediate_dense(x))
        x = layer._feedforward_dropout(x, training=training)
        x = x + residual
        if not layer.normalize_first:
            x = layer._feedforward_layer_norm(x)
        return x

    return attention, feedforward


def example_call(layer: Any, backbone: Any, adapter: Type[LayerDropBlock]) -> ExampleCall:
    """A call of `layer` on a random sequence (batch 2, length 5) whose second row ends in padding."""
    sequence = random_input((2, 5, int(backbone.hidden_dim)))
    padding_mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype="int32")
    return (keras.ops.cast(sequence, layer.compute_dtype),), {
        adapter.mask_arguments[0]: keras.ops.convert_to_tensor(padding_mask)
    }
