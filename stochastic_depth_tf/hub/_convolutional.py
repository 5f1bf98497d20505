"""Adapters of KerasHub's convolutional residual blocks, and where each backbone keeps them.

MobileNet (v3), MobileNetV5, EfficientNet v2 and HGNetV2 make their residual
adds inside a block's `call`: each adapter below is that `call` with the add
routed through a gate (one per block with a residual add). Their branches
hold BatchNormalization, so the branch is always computed and merged (per
example skipping would take the statistics from the kept examples only).
Where a block had a drop path of its own (MobileNetV5's `DropPath`,
EfficientNet's drop-connect `Dropout`) the adapter no longer calls it.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Type

import keras

from stochastic_depth_tf.hub._adapter import ExampleCall, GatedBlock, random_input
from stochastic_depth_tf.hub._compat import (
    BN_AXIS,
    DepthwiseConvBlock,
    EdgeResidual,
    FusedMBConvBlock,
    HGNetV2BasicLayer,
    HGNetV2Encoder,
    InvertedResidualBlock,
    MBConvBlock,
    MobileAttention,
    UniversalInvertedResidual,
)


class InvertedResidualBlockAdapter(GatedBlock, InvertedResidualBlock):
    """MobileNet's `InvertedResidualBlock` with its residual add gated.

    Only for a block that has one (stride 1, as many filters out as in).
    """

    residual_adds = 1

    def call(self, inputs: Any) -> Any:
        x = self.conv1(inputs)
        x = self.batch_normalization1(x)
        x = self.activation1(x)
        x = self.pad(x)
        x = self.conv2(x)
        x = self.batch_normalization2(x)
        x = self.activation2(x)
        if self.squeeze_excite:
            x = self.squeeze_excite(x)
        x = self.conv3(x)
        x = self.batch_normalization3(x)
        return self._residual_add(0, inputs, x)


class DepthwiseConvBlockAdapter(GatedBlock, DepthwiseConvBlock):
    """MobileNet's first block, `DepthwiseConvBlock`, with its residual add gated (`residual=True` only)."""

    residual_adds = 1

    def call(self, inputs: Any) -> Any:
        x = self.pad(inputs)
        x = self.conv1(x)
        x = self.batch_normalization1(x)
        x = self.activation1(x)
        if self.squeeze_excite_ratio:
            x = self.se_layer(x)
        x = self.conv2(x)
        x = self.batch_normalization2(x)
        return self._residual_add(0, inputs, x)


class EdgeResidualAdapter(GatedBlock, EdgeResidual):
    """MobileNetV5's `EdgeResidual` with its residual add gated; its private `DropPath` is no longer called."""

    residual_adds = 1

    def call(self, x: Any, training: Any = False) -> Any:
        shortcut = x
        x = self.conv_exp(x, training=training)
        x = self.se(x, training=training)
        x = self.conv_pwl(x, training=training)
        return self._residual_add(0, shortcut, x)


class UniversalInvertedResidualAdapter(GatedBlock, UniversalInvertedResidual):
    """MobileNetV5's `UniversalInvertedResidual` with its residual add gated; its `DropPath` is no longer called."""

    residual_adds = 1

    def call(self, x: Any, training: Any = False) -> Any:
        shortcut = x
        x = self.dw_start(x, training=training)
        x = self.pw_exp(x, training=training)
        x = self.dw_mid(x, training=training)
        x = self.se(x, training=training)
        x = self.pw_proj(x, training=training)
        x = self.dw_end(x, training=training)
        x = self.layer_scale(x)
        return self._residual_add(0, shortcut, x)


class MobileAttentionAdapter(GatedBlock, MobileAttention):
    """MobileNetV5's `MobileAttention` with its residual add gated; its `DropPath` is no longer called.

    Its optional conditional position encoding (`x + conv_cpe_dw(x)`) is part
    of the block's input, not a branch: it stays a plain add.
    """

    residual_adds = 1

    def call(self, x: Any, training: Any = False) -> Any:
        if self.conv_cpe_dw is not None:
            x = x + self.conv_cpe_dw(x)
        shortcut = x
        x = self.norm(x, training=training)
        x = self.attn(x, training=training)
        x = self.layer_scale(x)
        return self._residual_add(0, shortcut, x)


class HGNetV2BasicLayerAdapter(GatedBlock, HGNetV2BasicLayer):
    """HGNetV2's block with its residual add gated; its drop-path `Dropout` (rate 0 in the backbone) no longer called.

    Only for a block built with `residual=True` (every block of a stage but
    the first).
    """

    residual_adds = 1

    @classmethod
    def example_call(cls, block: Any, backbone: Any) -> ExampleCall:
        # Called inside its stage's `call`: no graph node to read a shape from.
        channels = block.in_channels_arg
        shape = (2, 4, 4, channels) if block.data_format == "channels_last" else (2, channels, 4, 4)
        return (random_input(shape),), {}

    def call(self, hidden_state: Any, training: Any = None) -> Any:
        output_tensors = [hidden_state]
        current_feature_map = hidden_state
        for layer_block in self.layer_list:
            current_feature_map = layer_block(current_feature_map, training=training)
            output_tensors.append(current_feature_map)
        aggregated = self.concatenate_layer(output_tensors)
        aggregated = self.aggregation_squeeze_conv(aggregated, training=training)
        aggregated = self.aggregation_excitation_conv(aggregated, training=training)
        return self._residual_add(0, hidden_state, aggregated)


def _squeeze_excite(block: Any, x: Any) -> Any:
    """The squeeze-and-excite of KerasHub's `MBConvBlock` and `FusedMBConvBlock`, as their `call` makes it."""
    se = keras.layers.GlobalAveragePooling2D(name=block.name + "se_squeeze", data_format=block.data_format)(x)
    se_shape = (block.filters, 1, 1) if BN_AXIS == 1 else (1, 1, block.filters)
    se = keras.layers.Reshape(se_shape, name=block.name + "se_reshape")(se)
    se = block.se_conv1(se)
    se = block.se_conv2(se)
    return keras.layers.multiply([x, se], name=block.name + "se_excite")


class MBConvBlockAdapter(GatedBlock, MBConvBlock):
    """EfficientNet v2's `MBConvBlock` with its residual add gated; its drop-connect `Dropout` is no longer called.

    Only for a block that has a residual add (stride 1, as many filters out
    as in, `nores=False`).
    """

    residual_adds = 1

    def call(self, inputs: Any) -> Any:
        if self.expand_ratio != 1:
            x = self.act(self.bn1(self.conv1(inputs)))
        else:
            x = inputs
        x = self.act(self.bn2(self.depthwise(x)))
        if 0 < self.se_ratio <= 1:
            x = _squeeze_excite(self, x)
        x = self.bn3(self.output_conv(self.output_conv_pad(x)))
        return self._residual_add(0, inputs, x)


class FusedMBConvBlockAdapter(GatedBlock, FusedMBConvBlock):
    """EfficientNet v2's `FusedMBConvBlock` with its residual add gated; its drop-connect `Dropout` is no longer called."""

    residual_adds = 1

    def call(self, inputs: Any) -> Any:
        x = self.act(self.bn1(self.conv1(self.conv1_pad(inputs))))
        if 0 < self.se_ratio <= 1:
            x = _squeeze_excite(self, x)
        x = self.bn2(self.output_conv(self.output_conv_pad(x)))
        if self.expand_ratio == 1 and self.projection_activation:
            x = self.projection_act(x)
        return self._residual_add(0, inputs, x)


ADAPTERS: Dict[type, Type[GatedBlock]] = {
    InvertedResidualBlock: InvertedResidualBlockAdapter,
    DepthwiseConvBlock: DepthwiseConvBlockAdapter,
    EdgeResidual: EdgeResidualAdapter,
    UniversalInvertedResidual: UniversalInvertedResidualAdapter,
    MobileAttention: MobileAttentionAdapter,
    HGNetV2BasicLayer: HGNetV2BasicLayerAdapter,
    MBConvBlock: MBConvBlockAdapter,
    FusedMBConvBlock: FusedMBConvBlockAdapter,
}


def mobilenet_blocks(backbone: Any) -> Sequence[Any]:
    """MobileNet's blocks that have a residual add, in graph order."""
    return [
        layer
        for layer in backbone.layers
        if (isinstance(layer, DepthwiseConvBlock) and layer.residual)
        or (isinstance(layer, InvertedResidualBlock) and layer.stride == 1 and layer.infilters == layer.filters)
    ]


def mobilenet_v5_blocks(backbone: Any) -> Sequence[Any]:
    """MobileNetV5's blocks that have a residual add, in graph order (MobileNet's blocks among them too)."""
    return [
        layer for layer in backbone.layers if getattr(layer, "has_skip", False) or layer in mobilenet_blocks(backbone)
    ]


def mobilenet_v5_rates(blocks: Sequence[Any]) -> List[float]:
    # MobileNet's blocks (its "ir" and "ds" types) have no drop path.
    return [float(getattr(block, "drop_path_rate", 0.0)) for block in blocks]


def hgnetv2_blocks(backbone: Any) -> Sequence[Any]:
    """HGNetV2's blocks with a residual add, stage by stage."""
    encoders = [layer for layer in backbone.layers if isinstance(layer, HGNetV2Encoder)]
    return [
        block for encoder in encoders for stage in encoder.stages_list for block in stage.blocks_list if block.residual
    ]


def efficientnet_v2_blocks(backbone: Any) -> Sequence[Any]:
    """EfficientNet v2's blocks that have a residual add, in graph order."""
    return [
        layer
        for layer in backbone.layers
        if isinstance(layer, (MBConvBlock, FusedMBConvBlock))
        and layer.strides == 1
        and layer.input_filters == layer.output_filters
        and not layer.nores
    ]


def efficientnet_v2_rates(blocks: Sequence[Any]) -> List[float]:
    return [float(block.dropout) for block in blocks]
