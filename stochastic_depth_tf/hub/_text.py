"""What the text and LLM adapters share: the handler that gives a backbone's transformer layers LayerDrop.

`text_encoder` and `text_decoder` hold one adapter per layer class
(`stochastic_depth_tf.layers._layer_drop.LayerDropBlock`); `TextLayerHandler`
is their backbones' handler, the text counterpart of the vision handlers:
it gives every layer of `backbone.transformer_layers` (the list the task
models' `call_with_cache` iterates) its adapter and its gates, and checks the
adapted layer against its original class's `call`.
"""

from __future__ import annotations

import inspect
import weakref
from typing import Any, Dict, List, Tuple, Type

import keras
import numpy as np

from stochastic_depth_tf._validation import block_seed, validate_choice
from stochastic_depth_tf.hub import _compat
from stochastic_depth_tf.hub._adapter import ExampleCall, check_adapter, random_input
from stochastic_depth_tf.layers._layer_drop import LayerDropBlock, LayerDropGate
from stochastic_depth_tf.schedules import survival_probabilities

# One gate per layer (LayerDrop: both residual branches dropped together) or
# one per sub-layer (attention, feed-forward), as the vision blocks have.
GATES_PER_LAYER = (1, 2)
DEFAULT_GATES_PER_LAYER = 1


class TextLayerHandler:
    """Backbones whose depth is `transformer_layers`: each layer given LayerDrop by its class's adapter.

    Layer `l = 1 .. L` gets the survival probability of the settings'
    schedule (`p_l = 1 - (l / L) * (1 - p_L)`, or `p_L` everywhere with
    `"uniform"`, LayerDrop's choice), shared by its gates when it has two;
    gate `k`, counted over the whole backbone, gets the seed `seed + k`.

    Args:
        adapters: the adapter class of each layer class.
    """

    # The new graph is the backbone's own, its layers included.
    keeps_layers = True

    def __init__(self, adapters: Dict[type, Type[LayerDropBlock]]) -> None:
        self.adapters = adapters

    def transform(self, backbone: Any, settings: Dict[str, Any]) -> Tuple[Any, Any, Dict[str, Any], List[Any]]:
        layers = list(backbone.transformer_layers)
        final = settings["final_survival_probability"]
        if final is None:
            raise ValueError(
                "Invalid value received for argument `final_survival_probability`. "
                "Expected a float in [0, 1] (None keeps a backbone's own drop path "
                f"rates, and {type(backbone).__name__} has none). Received: "
                "final_survival_probability=None"
            )
        count = gates_per_layer(settings)
        gates: List[LayerDropGate] = []
        for layer, probability in zip(layers, survival_probabilities(len(layers), final, settings["distribution"])):
            adapter = self.adapter(backbone, layer)
            original_class = type(layer)
            example = example_call(layer, backbone, adapter)
            layer.__class__ = adapter
            layer_gates = tuple(
                LayerDropGate(
                    survival_probability=probability,
                    mode=settings["mode"],
                    inverted=settings["inverted"],
                    seed=block_seed(settings["seed"], len(gates) + index),
                    skip_compute=settings["skip_compute"],
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
        # The task models read `token_embedding` (the output projection of a
        # causal LM), which `Backbone` keeps behind a property in
        # `_token_embedding`; the new backbone takes the plain one's public
        # attributes, so it is listed among them.
        vars(backbone)["token_embedding"] = backbone.token_embedding
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


def gates_per_layer(settings: Dict[str, Any]) -> int:
    """The settings' gates per text layer: 1 (LayerDrop, the default) or 2 (one per sub-layer)."""
    value = settings.get("gates_per_layer")
    if value is None:
        return DEFAULT_GATES_PER_LAYER
    return int(validate_choice(value, GATES_PER_LAYER, name="gates_per_layer"))


def example_call(layer: Any, backbone: Any, adapter: Type[LayerDropBlock]) -> ExampleCall:
    """A call of `layer` on a random sequence (batch 2, length 5) whose second row ends in padding."""
    sequence = random_input((2, 5, int(backbone.hidden_dim)))
    padding_mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype="int32")
    return (keras.ops.cast(sequence, layer.compute_dtype),), {
        adapter.mask_arguments[0]: keras.ops.convert_to_tensor(padding_mask)
    }
