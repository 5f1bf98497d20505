"""Adapters of KerasHub's vision transformer blocks, and where each backbone keeps them.

ViT, DeiT, DINOv2, DINOv3, Swin, ViTDet (SAM's image encoder) and MiT
(SegFormer's encoder) make their two residual adds (attention, MLP) inside a
block's `call`: each adapter below is that `call` with both adds routed
through gates, two per block, drawn independently. Each branch is `x + f(x)`
with `f` acting on examples independently (pre-norm attention or MLP;
windows are cut within each example), so the gates can run `f` on the kept
examples only (`BranchGate`). Where a block had a drop path of its own
(DINOv2, DINOv3, Swin, MiT) the adapter no longer calls it.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Sequence, Type

import keras

from stochastic_depth_tf.hub._adapter import ExampleCall, GatedBlock, random_input
from stochastic_depth_tf.hub._compat import (
    DeiTEncoderBlock,
    DINOV2Layer,
    DINOV3Layer,
    HierarchicalTransformerEncoder,
    SwinTransformerBlock,
    SwinTransformerStage,
    ViTEncoderBlock,
    WindowedTransformerEncoder,
    window_partition,
    window_reverse,
)


class ViTEncoderBlockAdapter(GatedBlock, ViTEncoderBlock):
    """`ViTEncoderBlock` with its two residual adds (attention, MLP) gated."""

    residual_adds = 2

    def call(self, inputs: Any) -> Any:
        return self._attention_then_mlp(inputs, self._attention_branch, lambda x: self.mlp(self.layer_norm_2(x)))

    def _attention_branch(self, inputs: Any) -> Any:
        x = self.layer_norm_1(inputs)
        return self.dropout(self.mha(x, x))


class HierarchicalTransformerEncoderAdapter(GatedBlock, HierarchicalTransformerEncoder):
    """MiT's encoder block with its private `DropPath` replaced by gates."""

    residual_adds = 2

    def call(self, x: Any) -> Any:
        return self._attention_then_mlp(x, lambda x: self.attn(self.norm1(x)), lambda x: self.mlp(self.norm2(x)))


class DeiTEncoderBlockAdapter(GatedBlock, DeiTEncoderBlock):
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


class DINOV2LayerAdapter(GatedBlock, DINOV2Layer):
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

        return self._attention_then_mlp(inputs, attention, mlp)


class DINOV3LayerAdapter(GatedBlock, DINOV3Layer):
    """`DINOV3Layer` with its two residual adds gated; its private `DropPath` is no longer called.

    Its drop path is DINOv2's (a random factor with no floor, unseeded).
    """

    residual_adds = 2

    @classmethod
    def example_call(cls, block: Any, backbone: Any) -> ExampleCall:
        # The backbone's own rotary position embeddings, so the check covers them.
        images = random_input((2,) + tuple(backbone.image_shape))
        tokens = backbone.pyramid_outputs["stem"].shape[1]
        return (random_input((2, tokens, block.hidden_dim)),), {
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


class WindowedTransformerEncoderAdapter(GatedBlock, WindowedTransformerEncoder):
    """ViTDet's (and so SAM's image encoder's) block with its two residual adds gated."""

    residual_adds = 2

    def call(self, x: Any) -> Any:
        return self._attention_then_mlp(x, self._attention_branch, lambda x: self.mlp_block(self.layer_norm2(x)))

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


class SwinTransformerBlockAdapter(GatedBlock, SwinTransformerBlock):
    """Swin's block with its two residual adds gated; its private `DropPath` is no longer called.

    Its `call` is one piece, the shifted-window attention written out in it:
    the attention branch below is that code as KerasHub 0.32 writes it
    (`check_adapter` compares the whole block with the original).
    """

    residual_adds = 2

    @classmethod
    def example_call(cls, block: Any, backbone: Any) -> ExampleCall:
        height, width = block.input_resolution
        return (random_input((2, height * width, block.dim)),), {}

    def call(self, x: Any) -> Any:
        # Windows are cut within each example and the shift mask is the same
        # for all: the branches act on examples independently.
        return self._attention_then_mlp(x, self._attention_branch, lambda x: self.mlp(self.norm2(x)))

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


ADAPTERS: Dict[type, Type[GatedBlock]] = {
    ViTEncoderBlock: ViTEncoderBlockAdapter,
    DeiTEncoderBlock: DeiTEncoderBlockAdapter,
    DINOV2Layer: DINOV2LayerAdapter,
    DINOV3Layer: DINOV3LayerAdapter,
    SwinTransformerBlock: SwinTransformerBlockAdapter,
    WindowedTransformerEncoder: WindowedTransformerEncoderAdapter,
    HierarchicalTransformerEncoder: HierarchicalTransformerEncoderAdapter,
}


def encoder_blocks(encoder_class: type, attribute: str) -> Callable[[Any], Sequence[Any]]:
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


def graph_blocks(block_class: type) -> Callable[[Any], Sequence[Any]]:
    """The backbone's layers of `block_class`, in graph order."""

    def blocks(backbone: Any) -> Sequence[Any]:
        return [layer for layer in backbone.layers if isinstance(layer, block_class)]

    return blocks


def swin_blocks(backbone: Any) -> Sequence[Any]:
    """Swin's blocks, stage by stage."""
    stages = [layer for layer in backbone.layers if isinstance(layer, SwinTransformerStage)]
    return [block for stage in stages for block in stage.blocks]


def swin_rates(blocks: Sequence[Any]) -> List[float]:
    # A block built with rate 0 holds an Identity instead of a DropPath.
    return [float(getattr(block.drop_path, "drop_prob", 0.0)) for block in blocks]


def mit_rates(blocks: Sequence[Any]) -> List[float]:
    return [float(block.drop_path.rate) for block in blocks]


def dino_rates(blocks: Sequence[Any]) -> List[float]:
    return [float(block.drop_path_rate) for block in blocks]
