"""What `stochastic_depth_tf.hub` needs from KerasHub: one handler per backbone family.

Imported only by `stochastic_depth_tf.hub`, and only once KerasHub is known to
be installed: this module imports `keras_hub` at the top.

A handler turns a freshly built, plain backbone into the inputs, outputs and
pyramid outputs of the same network with stochastic depth, and lists the
`StochasticDepth` layers it put in, in block order:

- `_GraphHandler` (ResNet, Xception, CSPNet, EfficientNet v1): the residual
  adds are `keras.layers.Add` layers of the functional graph, so surgery
  (`stochastic_depth_tf.surgery`) does the work, on a model whose outputs are
  the backbone's output and its pyramid outputs (so those tensors can be
  found in the new graph).
- `_EncoderBlockHandler` (MobileNet, MobileNetV5, EfficientNet v2, HGNetV2, ViT, DeiT,
  DINOv2, DINOv3, Swin, ViTDet, MiT): the residual adds are `x + y` (or an
  `Add` made on the fly) inside a block's `call`, out of reach of graph
  surgery. Each block of the (throwaway) backbone is given an adapter class:
  a subclass of its own class whose `call` is the original's with the
  residual adds routed through `StochasticDepth` layers. Only that
  instance's class changes, never KerasHub's classes. Every adapted block is
  checked once against its original class's `call` on a random input, with
  the gates bypassed: a KerasHub version whose block computes something else
  fails loudly here instead of training a different network silently.
- `_EfficientNetHandler` picks one of the two by EfficientNet's block types.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Type

import keras
import keras_hub
import numpy as np
from keras_hub.src.models.deit.deit_layers import DeiTEncoder, DeiTEncoderBlock
from keras_hub.src.models.dinov2.dinov2_layers import DINOV2Encoder, DINOV2Layer
from keras_hub.src.models.dinov3.dinov3_layers import DINOV3Encoder, DINOV3Layer
from keras_hub.src.models.efficientnet.fusedmbconv import FusedMBConvBlock
from keras_hub.src.models.efficientnet.mbconv import BN_AXIS, MBConvBlock
from keras_hub.src.models.hgnetv2.hgnetv2_encoder import HGNetV2Encoder
from keras_hub.src.models.hgnetv2.hgnetv2_layers import HGNetV2BasicLayer
from keras_hub.src.models.mit.mit_layers import HierarchicalTransformerEncoder
from keras_hub.src.models.mobilenet.mobilenet_backbone import DepthwiseConvBlock, InvertedResidualBlock
from keras_hub.src.models.mobilenetv5.mobilenetv5_attention import MobileAttention
from keras_hub.src.models.mobilenetv5.mobilenetv5_blocks import EdgeResidual, UniversalInvertedResidual
from keras_hub.src.models.swin_transformer.swin_transformer_layers import (
    SwinTransformerBlock,
    SwinTransformerStage,
    window_partition,
    window_reverse,
)
from keras_hub.src.models.vit.vit_layers import ViTEncoder, ViTEncoderBlock
from keras_hub.src.models.vit_det.vit_layers import WindowedTransformerEncoder

from stochastic_depth_tf import backend
from stochastic_depth_tf._validation import block_seed, validate_training
from stochastic_depth_tf.layers._collect import stochastic_depth_layers
from stochastic_depth_tf.layers._skipping import skip_dropped_examples, skips
from stochastic_depth_tf.layers.stochastic_depth import StochasticDepth
from stochastic_depth_tf.schedules import survival_probabilities
from stochastic_depth_tf.surgery.apply import _apply_with_probabilities, _drop_connect_rate

# The largest difference allowed between an adapter with its gates bypassed and
# the block's original `call`, relative to the output's scale (float32 maths).
_ADAPTER_TOLERANCE = 1e-5


class _GatedBlock:
    """Mixin of the adapters: the residual adds of `call` go through gates.

    `_stochastic_depth_gates` holds one `StochasticDepth` per residual add of
    the block, set with `object.__setattr__` so the (already built, state
    locked) block does not track them; the backbone tracks them instead.
    """

    residual_adds: int
    _stochastic_depth_gates: List[Any]

    @classmethod
    def example_call(cls, block: Any, backbone: Any) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
        """Arguments of a call of `block` as the backbone makes it, on a random input, batch 2."""
        if hasattr(block, "hidden_dim") and not block._inbound_nodes:
            # A block called inside an encoder's `call` has no graph node to
            # read its input shape from; any sequence length does.
            shape: Tuple[int, ...] = (2, 5, block.hidden_dim)
        else:
            shape = (2,) + tuple(block.input.shape[1:])
        return (_random(shape),), {}

    def _residual_add(self, index: int, shortcut: Any, residual: Any) -> Any:
        if getattr(self, "_stochastic_depth_bypass", False):
            return shortcut + residual
        return self._stochastic_depth_gates[index]([shortcut, residual])

    def _residual_branch(self, index: int, inputs: Any, branch: Callable[[Any], Any]) -> Any:
        """`inputs + branch(inputs)`, gated; `branch` must act on examples independently.

        The gate, a `_BranchGate`, runs `branch` on the kept examples only
        where it can (see `_BranchGate`), else on all of them.
        """
        if getattr(self, "_stochastic_depth_bypass", False):
            return inputs + branch(inputs)
        return self._stochastic_depth_gates[index](inputs, branch=branch)


class _BranchGate(StochasticDepth):
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


class _ViTEncoderBlockAdapter(_GatedBlock, ViTEncoderBlock):
    """`ViTEncoderBlock` with its two residual adds (attention, MLP) gated."""

    residual_adds = 2

    def call(self, inputs: Any) -> Any:
        x = self._residual_branch(0, inputs, self._attention_branch)
        return self._residual_branch(1, x, lambda x: self.mlp(self.layer_norm_2(x)))

    def _attention_branch(self, inputs: Any) -> Any:
        x = self.layer_norm_1(inputs)
        return self.dropout(self.mha(x, x))


class _HierarchicalTransformerEncoderAdapter(_GatedBlock, HierarchicalTransformerEncoder):
    """MiT's encoder block with its private `DropPath` replaced by gates."""

    residual_adds = 2

    def call(self, x: Any) -> Any:
        x = self._residual_branch(0, x, lambda x: self.attn(self.norm1(x)))
        return self._residual_branch(1, x, lambda x: self.mlp(self.norm2(x)))


class _DeiTEncoderBlockAdapter(_GatedBlock, DeiTEncoderBlock):
    """`DeiTEncoderBlock` with its two residual adds (attention, MLP) gated.

    Its MLP residual add is inside `DeiTOutput.call` (dense, dropout, `+
    input_tensor`): the adapter calls that layer's dense and dropout and
    makes the add itself.
    """

    residual_adds = 2

    def call(self, hidden_states: Any, attention_mask: Any = None, return_attention_scores: bool = False) -> Any:
        attention_scores = None
        if return_attention_scores or attention_mask is not None:
            # The scores and the mask are per example: the whole batch is computed.
            x = self.layer_norm_1(hidden_states)
            if return_attention_scores:
                x, attention_scores = self.mha(x, x, attention_mask=attention_mask, return_attention_scores=True)
            else:
                x = self.mha(x, x, attention_mask=attention_mask)
            x = self._residual_add(0, hidden_states, x)
        else:
            x = self._residual_branch(0, hidden_states, self._attention_branch)
        return self._residual_branch(1, x, self._mlp_branch), attention_scores

    def _attention_branch(self, inputs: Any) -> Any:
        x = self.layer_norm_1(inputs)
        return self.mha(x, x)

    def _mlp_branch(self, x: Any) -> Any:
        return self.output_layer.dropout(self.output_layer.dense(self.mlp(self.layer_norm_2(x))))


class _DINOV2LayerAdapter(_GatedBlock, DINOV2Layer):
    """`DINOV2Layer` with its two residual adds gated; its private `DropPath` is no longer called.

    Its own drop path scales the branch by `(u + 1 - rate) / (1 - rate)`, `u ~
    U[0, 1)`, unseeded: a random factor, never a zero (timm floors `u + 1 -
    rate` to a Bernoulli draw). The gates replace it.
    """

    residual_adds = 2

    def call(self, inputs: Any, training: Any = None) -> Any:
        def attention(x: Any) -> Any:
            x = self.attention(self.norm1(x, training=training), training=training)
            return self.layer_scale1(x, training=training)

        def mlp(x: Any) -> Any:
            x = self.mlp(self.norm2(x, training=training), training=training)
            return self.layer_scale2(x, training=training)

        return self._residual_branch(1, self._residual_branch(0, inputs, attention), mlp)


class _DINOV3LayerAdapter(_GatedBlock, DINOV3Layer):
    """`DINOV3Layer` with its two residual adds gated; its private `DropPath` is no longer called.

    Its drop path is DINOv2's (a random factor with no floor, unseeded).
    """

    residual_adds = 2

    @classmethod
    def example_call(cls, block: Any, backbone: Any) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
        # The backbone's own rotary position embeddings, so the check covers them.
        images = _random((2,) + tuple(backbone.image_shape))
        tokens = backbone.pyramid_outputs["stem"].shape[1]
        return (_random((2, tokens, block.hidden_dim)),), {
            "position_embeddings": backbone.rope_embedding(images),
            "num_prefix_tokens": 1 + backbone.num_register_tokens,
        }

    def call(
        self,
        inputs: Any,
        attention_mask: Any = None,
        position_embeddings: Any = None,
        num_prefix_tokens: int = 0,
        training: Any = None,
    ) -> Any:
        # The rotary position embeddings are per position, not per example.
        def attention(x: Any) -> Any:
            x = self.attention(
                self.norm1(x),
                attention_mask=attention_mask,
                position_embeddings=position_embeddings,
                num_prefix_tokens=num_prefix_tokens,
                training=training,
            )
            return self.layer_scale1(x, training=training)

        def mlp(x: Any) -> Any:
            x = self.mlp(self.norm2(x, training=training), training=training)
            return self.layer_scale2(x, training=training)

        if attention_mask is not None:  # a mask per example: the whole batch is computed
            hidden_states = self._residual_add(0, inputs, attention(inputs))
        else:
            hidden_states = self._residual_branch(0, inputs, attention)
        return self._residual_branch(1, hidden_states, mlp)


class _InvertedResidualBlockAdapter(_GatedBlock, InvertedResidualBlock):
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


class _DepthwiseConvBlockAdapter(_GatedBlock, DepthwiseConvBlock):
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


class _WindowedTransformerEncoderAdapter(_GatedBlock, WindowedTransformerEncoder):
    """ViTDet's (and so SAM's image encoder's) block with its two residual adds gated."""

    residual_adds = 2

    def call(self, x: Any) -> Any:
        x = self._residual_branch(0, x, self._attention_branch)
        return self._residual_branch(1, x, lambda x: self.mlp_block(self.layer_norm2(x)))

    def _attention_branch(self, x: Any) -> Any:
        # Windows are cut within each example, so the branch acts on examples independently.
        x = self.layer_norm1(x)
        if self.window_size > 0:
            height, width = keras.ops.shape(x)[1], keras.ops.shape(x)[2]
            x, height_width_padded = self.window_partitioning.partition(x)
        x = self.attention(x)
        if self.window_size > 0:
            x = self.window_partitioning.unpartition(
                x, height_width_padded=height_width_padded, height_width=(height, width)
            )
        return x


class _SwinTransformerBlockAdapter(_GatedBlock, SwinTransformerBlock):
    """Swin's block with its two residual adds gated; its private `DropPath` is no longer called.

    Its `call` is one piece, the shifted-window attention written out in it:
    the attention branch below is that code as KerasHub 0.32 writes it
    (`_check_adapter` compares the whole block with the original).
    """

    residual_adds = 2

    @classmethod
    def example_call(cls, block: Any, backbone: Any) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
        height, width = block.input_resolution
        return (_random((2, height * width, block.dim)),), {}

    def call(self, x: Any) -> Any:
        # Windows are cut within each example and the shift mask is the same
        # for all: the branches act on examples independently.
        x = self._residual_branch(0, x, self._attention_branch)
        return self._residual_branch(1, x, lambda x: self.mlp(self.norm2(x)))

    def _attention_branch(self, x: Any) -> Any:
        ops = keras.ops
        H, W = self.input_resolution
        B, L, C = ops.shape(x)
        x = self.norm1(x)
        x = ops.reshape(x, (B, H, W, C))
        attn_mask = None
        if self.shift_size > 0:
            shifted_x = ops.roll(x, shift=(-self.shift_size, -self.shift_size), axis=(1, 2))
            img_mask = ops.zeros((1, H, W, 1), dtype="int32")
            cnt = 0
            h_slices = [
                (0, H - self.window_size),
                (H - self.window_size, H - self.shift_size),
                (H - self.shift_size, H),
            ]
            w_slices = [
                (0, W - self.window_size),
                (W - self.window_size, W - self.shift_size),
                (W - self.shift_size, W),
            ]
            for h_start, h_end in h_slices:
                for w_start, w_end in w_slices:
                    mask_slice = ops.ones((1, int(h_end - h_start), int(w_end - w_start), 1), dtype="int32") * cnt
                    img_mask = ops.slice_update(img_mask, [0, h_start, w_start, 0], mask_slice)
                    cnt += 1
            mask_windows = window_partition(img_mask, self.window_size)[0]
            mask_windows = ops.reshape(mask_windows, (-1, self.window_size * self.window_size))
            attn_mask = (
                ops.cast(ops.expand_dims(mask_windows, 1) != ops.expand_dims(mask_windows, 2), dtype="float32") * -100.0
            )
        else:
            shifted_x = x
        x_windows, (H_pad, W_pad) = window_partition(x=shifted_x, window_size=self.window_size)
        x_windows = ops.reshape(x_windows, (-1, self.window_size * self.window_size, C))
        attn_windows = self.attn(x_windows, mask=attn_mask)
        attn_windows = ops.reshape(attn_windows, (-1, self.window_size, self.window_size, C))
        shifted_x = window_reverse(attn_windows, self.window_size, H_pad, W_pad, C)
        if self.shift_size > 0:
            x = ops.roll(shifted_x, shift=(self.shift_size, self.shift_size), axis=(1, 2))
        else:
            x = shifted_x
        if H_pad > H or W_pad > W:
            x = x[:, :H, :W, :]
        return ops.reshape(x, (B, H * W, C))


class _EdgeResidualAdapter(_GatedBlock, EdgeResidual):
    """MobileNetV5's `EdgeResidual` with its residual add gated; its private `DropPath` is no longer called."""

    residual_adds = 1

    def call(self, x: Any, training: Any = False) -> Any:
        shortcut = x
        x = self.conv_exp(x, training=training)
        x = self.se(x, training=training)
        x = self.conv_pwl(x, training=training)
        return self._residual_add(0, shortcut, x)


class _UniversalInvertedResidualAdapter(_GatedBlock, UniversalInvertedResidual):
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


class _MobileAttentionAdapter(_GatedBlock, MobileAttention):
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


class _HGNetV2BasicLayerAdapter(_GatedBlock, HGNetV2BasicLayer):
    """HGNetV2's block with its residual add gated; its drop-path `Dropout` (rate 0 in the backbone) no longer called.

    Only for a block built with `residual=True` (every block of a stage but
    the first).
    """

    residual_adds = 1

    @classmethod
    def example_call(cls, block: Any, backbone: Any) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
        # Called inside its stage's `call`: no graph node to read a shape from.
        channels = block.in_channels_arg
        shape = (2, 4, 4, channels) if block.data_format == "channels_last" else (2, channels, 4, 4)
        return (_random(shape),), {}

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


class _MBConvBlockAdapter(_GatedBlock, MBConvBlock):
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


class _FusedMBConvBlockAdapter(_GatedBlock, FusedMBConvBlock):
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


_ADAPTERS: Dict[type, Type[_GatedBlock]] = {
    ViTEncoderBlock: _ViTEncoderBlockAdapter,
    DeiTEncoderBlock: _DeiTEncoderBlockAdapter,
    DINOV2Layer: _DINOV2LayerAdapter,
    SwinTransformerBlock: _SwinTransformerBlockAdapter,
    WindowedTransformerEncoder: _WindowedTransformerEncoderAdapter,
    InvertedResidualBlock: _InvertedResidualBlockAdapter,
    HGNetV2BasicLayer: _HGNetV2BasicLayerAdapter,
    EdgeResidual: _EdgeResidualAdapter,
    UniversalInvertedResidual: _UniversalInvertedResidualAdapter,
    MobileAttention: _MobileAttentionAdapter,
    MBConvBlock: _MBConvBlockAdapter,
    FusedMBConvBlock: _FusedMBConvBlockAdapter,
    DepthwiseConvBlock: _DepthwiseConvBlockAdapter,
    DINOV3Layer: _DINOV3LayerAdapter,
    HierarchicalTransformerEncoder: _HierarchicalTransformerEncoderAdapter,
}


class _GraphHandler:
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

    def transform(self, backbone: Any, settings: Dict[str, Any]) -> Tuple[Any, Any, Any, List[Any]]:
        pyramid = dict(getattr(backbone, "pyramid_outputs", None) or {})
        outputs = [backbone.output, *pyramid.values()]
        # Surgery finds the pyramid tensors in the new graph only if they are outputs.
        probe = keras.Model(backbone.inputs, outputs, name=backbone.name)
        final = settings["final_survival_probability"]
        if final is not None:

            def probabilities_of(adds: List[Any]) -> List[float]:
                return survival_probabilities(len(adds), final, settings["distribution"])

        elif self.drop_connect:

            def probabilities_of(adds: List[Any]) -> List[float]:
                return [1.0 - _drop_connect_rate(add) for add in adds]

        else:
            raise _no_private_rates(backbone)
        new = _apply_with_probabilities(
            probe,
            probabilities_of,
            mode=settings["mode"],
            inverted=settings["inverted"],
            seed=settings["seed"],
            replace_drop_connect=True,
        )
        new_outputs = list(new.outputs)
        new_pyramid = dict(zip(pyramid.keys(), new_outputs[1:]))
        gates = stochastic_depth_layers(new)
        return new.inputs[0], new_outputs[0], new_pyramid, gates


class _EfficientNetHandler:
    """KerasHub's EfficientNet: v1 blocks are graph adds, v2 blocks (`"unfused"`, `"fused"`) layers.

    Its `stackwise_block_types` says which, per stack: `"v1"` blocks are
    built in the graph (a drop-connect `Dropout` and an `Add`), the v2
    blocks `MBConvBlock` and `FusedMBConvBlock` make their `Dropout` and
    `Add` inside `call`. Every KerasHub preset uses one kind throughout; a
    mix of the two is refused.
    """

    def __init__(self) -> None:
        self.graph = _GraphHandler(drop_connect=True)
        self.layers = _EncoderBlockHandler(_efficientnet_v2_blocks, private_rates=_efficientnet_v2_rates)
        self.keeps_layers = False

    def transform(self, backbone: Any, settings: Dict[str, Any]) -> Tuple[Any, Any, Any, List[Any]]:
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


class _EncoderBlockHandler:
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

    def transform(self, backbone: Any, settings: Dict[str, Any]) -> Tuple[Any, Any, Any, List[Any]]:
        blocks = list(self.blocks(backbone))
        probabilities = block_survival_probabilities(self, backbone, blocks, settings)
        gates: List[StochasticDepth] = []
        for block, probability in zip(blocks, probabilities):
            adapter = _ADAPTERS.get(type(block))
            if adapter is None:
                raise TypeError(
                    f"Invalid block in backbone '{backbone.name}'. Expected one of "
                    f"{sorted(cls.__name__ for cls in _ADAPTERS)}. Received: "
                    f"{type(block).__name__} '{block.name}' (this KerasHub "
                    f"version, {keras_hub.__version__}, builds its blocks differently)"
                )
            original_class = type(block)
            example = adapter.example_call(block, backbone)
            block.__class__ = adapter
            block_gates: List[Any] = []
            for _ in range(adapter.residual_adds):
                gate = _BranchGate(
                    survival_probability=probability,
                    mode=settings["mode"],
                    inverted=settings["inverted"],
                    seed=block_seed(settings["seed"], len(gates) + len(block_gates)),
                    skip_compute=settings["skip_compute"],
                    dtype=block.dtype_policy,
                    name=f"{block.name}_stochastic_depth_{len(block_gates)}",
                )
                object.__setattr__(gate, "_block", weakref.ref(block))
                block_gates.append(gate)
            object.__setattr__(block, "_stochastic_depth_gates", tuple(block_gates))
            _check_adapter(block, original_class, example)
            gates.extend(block_gates)
        pyramid = dict(getattr(backbone, "pyramid_outputs", None) or {})
        # `input`, not `inputs[0]`: DINOv2's and DINOv3's inputs are a dict.
        return backbone.input, backbone.output, pyramid, gates


def block_survival_probabilities(
    handler: Any, backbone: Any, blocks: Sequence[Any], settings: Dict[str, Any]
) -> List[float]:
    """One survival probability per block: our schedule, or the model's own rates."""
    if settings["final_survival_probability"] is not None:
        return survival_probabilities(len(blocks), settings["final_survival_probability"], settings["distribution"])
    if handler.private_rates is None:
        raise _no_private_rates(backbone)
    return [1.0 - rate for rate in handler.private_rates(blocks)]


def _no_private_rates(backbone: Any) -> ValueError:
    return ValueError(
        "Invalid value received for argument `final_survival_probability`. "
        "Expected a float in [0, 1] (None keeps a backbone's own drop path "
        f"rates, and {type(backbone).__name__} has none). Received: "
        "final_survival_probability=None"
    )


def _random(shape: Tuple[int, ...]) -> Any:
    return keras.ops.convert_to_tensor(np.random.default_rng(0).normal(size=shape).astype("float32"))


def _check_adapter(block: Any, original_class: Type[Any], example: Tuple[Tuple[Any, ...], Dict[str, Any]]) -> None:
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
        expected, received, rtol=0.0, atol=_ADAPTER_TOLERANCE * scale
    ):
        raise RuntimeError(
            f"KerasHub {keras_hub.__version__}'s {original_class.__name__} no "
            "longer computes what stochastic_depth_tf's adapter for it assumes "
            f"(block '{block.name}': outputs differ by up to "
            f"{float(np.max(np.abs(expected - received))):.3g}). Use a KerasHub "
            "version in the tested range (see stochastic_depth_tf.hub)."
        )


def _first_output(output: Any) -> np.ndarray:
    """The block's output tensor (DeiT's blocks also return attention scores), as NumPy."""
    if isinstance(output, (tuple, list)):
        output = output[0]
    # stop_gradient: PyTorch refuses NumPy of a tensor that requires grad.
    result: np.ndarray = keras.ops.convert_to_numpy(keras.ops.stop_gradient(output))
    return result


def _encoder_blocks(encoder_class: type, attribute: str) -> Callable[[Any], Sequence[Any]]:
    """The blocks of the backbone's one encoder layer of `encoder_class`, in its `attribute`."""

    def blocks(backbone: Any) -> Sequence[Any]:
        encoders = [layer for layer in backbone.layers if isinstance(layer, encoder_class)]
        if len(encoders) != 1:
            raise TypeError(
                f"Invalid backbone. Expected a {type(backbone).__name__} with one "
                f"{encoder_class.__name__}. Received: '{backbone.name}' with {len(encoders)}"
            )
        found: Sequence[Any] = getattr(encoders[0], attribute)
        return found

    return blocks


def _graph_blocks(block_class: type) -> Callable[[Any], Sequence[Any]]:
    def blocks(backbone: Any) -> Sequence[Any]:
        return [layer for layer in backbone.layers if isinstance(layer, block_class)]

    return blocks


def _mobilenet_blocks(backbone: Any) -> Sequence[Any]:
    """MobileNet's blocks that have a residual add, in graph order."""
    return [
        layer
        for layer in backbone.layers
        if (isinstance(layer, DepthwiseConvBlock) and layer.residual)
        or (isinstance(layer, InvertedResidualBlock) and layer.stride == 1 and layer.infilters == layer.filters)
    ]


def _mobilenet_v5_blocks(backbone: Any) -> Sequence[Any]:
    """MobileNetV5's blocks that have a residual add, in graph order (MobileNet's blocks among them too)."""
    return [
        layer for layer in backbone.layers if getattr(layer, "has_skip", False) or layer in _mobilenet_blocks(backbone)
    ]


def _mobilenet_v5_rates(blocks: Sequence[Any]) -> List[float]:
    # MobileNet's blocks (its "ir" and "ds" types) have no drop path.
    return [float(getattr(block, "drop_path_rate", 0.0)) for block in blocks]


def _hgnetv2_blocks(backbone: Any) -> Sequence[Any]:
    """HGNetV2's blocks with a residual add, stage by stage."""
    encoders = [layer for layer in backbone.layers if isinstance(layer, HGNetV2Encoder)]
    return [
        block for encoder in encoders for stage in encoder.stages_list for block in stage.blocks_list if block.residual
    ]


def _efficientnet_v2_blocks(backbone: Any) -> Sequence[Any]:
    """EfficientNet v2's blocks that have a residual add, in graph order."""
    return [
        layer
        for layer in backbone.layers
        if isinstance(layer, (MBConvBlock, FusedMBConvBlock))
        and layer.strides == 1
        and layer.input_filters == layer.output_filters
        and not layer.nores
    ]


def _efficientnet_v2_rates(blocks: Sequence[Any]) -> List[float]:
    return [float(block.dropout) for block in blocks]


def _swin_blocks(backbone: Any) -> Sequence[Any]:
    """Swin's blocks, stage by stage."""
    stages = [layer for layer in backbone.layers if isinstance(layer, SwinTransformerStage)]
    return [block for stage in stages for block in stage.blocks]


def _swin_rates(blocks: Sequence[Any]) -> List[float]:
    # A block built with rate 0 holds an Identity instead of a DropPath.
    return [float(getattr(block.drop_path, "drop_prob", 0.0)) for block in blocks]


def _mit_rates(blocks: Sequence[Any]) -> List[float]:
    return [float(block.drop_path.rate) for block in blocks]


def _dino_rates(blocks: Sequence[Any]) -> List[float]:
    return [float(block.drop_path_rate) for block in blocks]


HANDLERS: Dict[type, Any] = {
    keras_hub.models.ResNetBackbone: _GraphHandler(),
    keras_hub.models.XceptionBackbone: _GraphHandler(),
    keras_hub.models.CSPNetBackbone: _GraphHandler(),
    keras_hub.models.MobileNetBackbone: _EncoderBlockHandler(_mobilenet_blocks),
    keras_hub.models.EfficientNetBackbone: _EfficientNetHandler(),
    keras_hub.models.HGNetV2Backbone: _EncoderBlockHandler(_hgnetv2_blocks),
    keras_hub.models.MobileNetV5Backbone: _EncoderBlockHandler(_mobilenet_v5_blocks, private_rates=_mobilenet_v5_rates),
    keras_hub.models.ViTBackbone: _EncoderBlockHandler(_encoder_blocks(ViTEncoder, "encoder_layers")),
    keras_hub.models.DeiTBackbone: _EncoderBlockHandler(_encoder_blocks(DeiTEncoder, "encoder_layers")),
    keras_hub.models.DINOV2Backbone: _EncoderBlockHandler(
        _encoder_blocks(DINOV2Encoder, "layers"), private_rates=_dino_rates
    ),
    keras_hub.models.DINOV3Backbone: _EncoderBlockHandler(
        _encoder_blocks(DINOV3Encoder, "layers"), private_rates=_dino_rates
    ),
    keras_hub.models.SwinTransformerBackbone: _EncoderBlockHandler(_swin_blocks, private_rates=_swin_rates),
    keras_hub.models.ViTDetBackbone: _EncoderBlockHandler(_graph_blocks(WindowedTransformerEncoder)),
    keras_hub.models.MiTBackbone: _EncoderBlockHandler(
        _graph_blocks(HierarchicalTransformerEncoder), private_rates=_mit_rates
    ),
}
