"""One handler per KerasHub backbone class: how its residual adds are given stochastic depth.

A handler turns a freshly built, plain backbone into the inputs, outputs and
pyramid outputs of the same network with stochastic depth, and lists the
`StochasticDepth` layers it put in, in block order:

- `GraphHandler` (ResNet, Xception, CSPNet, EfficientNet v1): the residual
  adds are `keras.layers.Add` layers of the functional graph, so surgery
  (`stochastic_depth_tf.surgery.apply.gate_residual_adds`, with the
  backbone's validated settings) does the work, on a model whose outputs are
  the backbone's output and its pyramid outputs (so those tensors can be
  found in the new graph).
- `EncoderBlockHandler` (MobileNet, MobileNetV5, EfficientNet v2, HGNetV2,
  ViT, DeiT, DINOv2, DINOv3, Swin, ViTDet, MiT): the residual adds are
  inside a block's `call`, out of reach of graph surgery. Each block of the
  (throwaway) backbone is given its adapter class (`_convolutional`,
  `_vision_transformer`) and checked against its original class's `call`.
- `EfficientNetHandler` picks one of the two by EfficientNet's block types.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Type

import keras

from stochastic_depth_tf._settings import StochasticDepthSettings
from stochastic_depth_tf._validation import block_seed
from stochastic_depth_tf.hub import _compat, _convolutional, _vision_transformer
from stochastic_depth_tf.hub._adapter import BranchGate, GatedBlock, check_adapter
from stochastic_depth_tf.layers import stochastic_depth_layers
from stochastic_depth_tf.layers.stochastic_depth import StochasticDepth
from stochastic_depth_tf.surgery.apply import drop_connect_rate, gate_residual_adds

# Every block class with an adapter, family by family.
ADAPTERS: Dict[type, Type[GatedBlock]] = {**_convolutional.ADAPTERS, **_vision_transformer.ADAPTERS}

# What a handler returns: the new graph's inputs, output, pyramid outputs, and the gates in block order.
Transformed = Tuple[Any, Any, Dict[str, Any], List[Any]]


class GraphHandler:
    """Backbones whose residual adds are `Add` layers of the functional graph.

    Args:
        drop_connect: the backbone puts a drop-connect `Dropout` (noise shape 1
            but for the batch) on its residual branches, as KerasHub's
            EfficientNet v1 blocks do: surgery removes it, and
            `final_survival_probability=None` keeps its rates as `p = 1 - rate`.
    """

    # The new graph holds copies of the backbone's layers, not the layers.
    keeps_layers = False

    def __init__(self, drop_connect: bool = False) -> None:
        self.drop_connect = drop_connect

    def transform(self, backbone: Any, settings: StochasticDepthSettings) -> Transformed:
        pyramid = dict(getattr(backbone, "pyramid_outputs", None) or {})
        outputs = [backbone.output, *pyramid.values()]
        # Surgery finds the pyramid tensors in the new graph only if they are outputs.
        probe = keras.Model(backbone.inputs, outputs, name=backbone.name)
        if settings.final_survival_probability is not None:

            def probabilities_of(adds: List[Any]) -> List[float]:
                return settings.survival_probabilities(len(adds))

        elif self.drop_connect:

            def probabilities_of(adds: List[Any]) -> List[float]:
                return [1.0 - drop_connect_rate(add) for add in adds]

        else:
            raise no_private_rates(backbone)
        new = gate_residual_adds(probe, probabilities_of, settings, replace_drop_connect=True)
        new_outputs = list(new.outputs)
        new_pyramid = dict(zip(pyramid.keys(), new_outputs[1:]))
        gates = stochastic_depth_layers(new)
        return new.inputs[0], new_outputs[0], new_pyramid, gates


class EncoderBlockHandler:
    """Backbones whose residual adds live inside encoder blocks.

    Args:
        blocks: returns the backbone's encoder blocks in the order they run.
        private_rates: for a backbone with a drop path of its own, returns the
            drop rate of each block (used with `final_survival_probability=None`).
    """

    # The new graph is the backbone's own, its layers included.
    keeps_layers = True

    def __init__(
        self,
        blocks: Callable[[Any], Sequence[Any]],
        private_rates: Optional[Callable[[Sequence[Any]], List[float]]] = None,
    ) -> None:
        self.blocks = blocks
        self.private_rates = private_rates

    def transform(self, backbone: Any, settings: StochasticDepthSettings) -> Transformed:
        blocks = list(self.blocks(backbone))
        probabilities = self.survival_probabilities(backbone, blocks, settings)
        gates: List[StochasticDepth] = []
        for block, probability in zip(blocks, probabilities):
            adapter = ADAPTERS.get(type(block))
            if adapter is None:
                raise TypeError(
                    _compat.version_message(
                        f"Invalid block in backbone '{backbone.name}'. Expected one of "
                        f"{sorted(cls.__name__ for cls in ADAPTERS)}. Received: "
                        f"{type(block).__name__} '{block.name}' (this keras-hub builds "
                        "its blocks differently)"
                    )
                )
            original_class = type(block)
            example = adapter.example_call(block, backbone)
            block.__class__ = adapter
            block_gates: List[Any] = []
            for _ in range(adapter.residual_adds):
                gate = BranchGate(
                    survival_probability=probability,
                    mode=settings.mode,
                    inverted=settings.inverted,
                    seed=block_seed(settings.seed, len(gates) + len(block_gates)),
                    skip_compute=settings.skip_compute,
                    dtype=block.dtype_policy,
                    name=f"{block.name}_stochastic_depth_{len(block_gates)}",
                )
                object.__setattr__(gate, "_block", weakref.ref(block))
                block_gates.append(gate)
            object.__setattr__(block, "_stochastic_depth_gates", tuple(block_gates))
            check_adapter(block, original_class, example)
            gates.extend(block_gates)
        pyramid = dict(getattr(backbone, "pyramid_outputs", None) or {})
        # `input`, not `inputs[0]`: DINOv2's and DINOv3's inputs are a dict.
        return backbone.input, backbone.output, pyramid, gates

    def survival_probabilities(
        self, backbone: Any, blocks: Sequence[Any], settings: StochasticDepthSettings
    ) -> List[float]:
        """One survival probability per block: our schedule, or the model's own rates."""
        if settings.final_survival_probability is not None:
            return settings.survival_probabilities(len(blocks))
        if self.private_rates is None:
            raise no_private_rates(backbone)
        return [1.0 - rate for rate in self.private_rates(blocks)]


class EfficientNetHandler:
    """KerasHub's EfficientNet: v1 blocks are graph adds, v2 blocks (`"unfused"`, `"fused"`) layers.

    Its `stackwise_block_types` says which, per stack: `"v1"` blocks are
    built in the graph (a drop-connect `Dropout` and an `Add`), the v2
    blocks `MBConvBlock` and `FusedMBConvBlock` make their `Dropout` and
    `Add` inside `call`. Every KerasHub preset uses one kind throughout; a
    mix of the two is refused.
    """

    keeps_layers = False

    def __init__(self) -> None:
        self.graph = GraphHandler(drop_connect=True)
        self.layers = EncoderBlockHandler(
            _convolutional.efficientnet_v2_blocks, private_rates=_convolutional.efficientnet_v2_rates
        )

    def transform(self, backbone: Any, settings: StochasticDepthSettings) -> Transformed:
        kinds = set(backbone.stackwise_block_types) & {"v1", "unfused", "fused"}
        if kinds <= {"v1"}:
            return self.graph.transform(backbone, settings)
        if "v1" in kinds:
            raise ValueError(
                "Invalid value received for argument `backbone`. Expected an "
                "EfficientNetBackbone whose stackwise_block_types are all 'v1' "
                "or all 'unfused' / 'fused' (v1 blocks are graph adds, v2 blocks "
                "layers; the one schedule over both is not supported). Received: "
                f"stackwise_block_types={list(backbone.stackwise_block_types)}"
            )
        return self.layers.transform(backbone, settings)


def no_private_rates(backbone: Any) -> ValueError:
    """The error for `final_survival_probability=None` on a backbone without a drop path of its own."""
    return ValueError(
        "Invalid value received for argument `final_survival_probability`. "
        "Expected a float in [0, 1] (None keeps a backbone's own drop path "
        f"rates, and {type(backbone).__name__} has none). Received: "
        "final_survival_probability=None"
    )


HANDLERS: Dict[type, Any] = {
    _compat.ResNetBackbone: GraphHandler(),
    _compat.XceptionBackbone: GraphHandler(),
    _compat.CSPNetBackbone: GraphHandler(),
    _compat.MobileNetBackbone: EncoderBlockHandler(_convolutional.mobilenet_blocks),
    _compat.EfficientNetBackbone: EfficientNetHandler(),
    _compat.HGNetV2Backbone: EncoderBlockHandler(_convolutional.hgnetv2_blocks),
    _compat.MobileNetV5Backbone: EncoderBlockHandler(
        _convolutional.mobilenet_v5_blocks, private_rates=_convolutional.mobilenet_v5_rates
    ),
    _compat.ViTBackbone: EncoderBlockHandler(_vision_transformer.encoder_blocks(_compat.ViTEncoder, "encoder_layers")),
    _compat.DeiTBackbone: EncoderBlockHandler(
        _vision_transformer.encoder_blocks(_compat.DeiTEncoder, "encoder_layers")
    ),
    _compat.DINOV2Backbone: EncoderBlockHandler(
        _vision_transformer.encoder_blocks(_compat.DINOV2Encoder, "layers"),
        private_rates=_vision_transformer.dino_rates,
    ),
    _compat.DINOV3Backbone: EncoderBlockHandler(
        _vision_transformer.encoder_blocks(_compat.DINOV3Encoder, "layers"),
        private_rates=_vision_transformer.dino_rates,
    ),
    _compat.SwinTransformerBackbone: EncoderBlockHandler(
        _vision_transformer.swin_blocks, private_rates=_vision_transformer.swin_rates
    ),
    _compat.ViTDetBackbone: EncoderBlockHandler(_vision_transformer.graph_blocks(_compat.WindowedTransformerEncoder)),
    _compat.MiTBackbone: EncoderBlockHandler(
        _vision_transformer.graph_blocks(_compat.HierarchicalTransformerEncoder),
        private_rates=_vision_transformer.mit_rates,
    ),
}
