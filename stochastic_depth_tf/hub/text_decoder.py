"""LayerDrop for KerasHub's decoder-only LLMs: GPT-2, OPT, Gemma, Gemma 3, Llama, Mistral, Qwen, Qwen 3, Phi-3.

Each layer of a backbone's `transformer_layers` is given the adapter of its
class, a subclass of it (`stochastic_depth_tf.layers._layer_drop.
LayerDropBlock`):

| backbones | layer class | sub-layers (two-gate form) |
|---|---|---|
| GPT-2, OPT | `TransformerDecoder` (pre-norm; post-norm too) | self-attention, feed-forward |
| Gemma | `GemmaDecoderBlock` | pre-norm attention (+ post-norm), gated GELU feed-forward |
| Gemma 3 | `Gemma3DecoderBlock` (float16 clipping kept) | the same |
| Llama, Llama 3, Mistral, Qwen (Qwen 2), Qwen 3 | `LlamaTransformerDecoder` and its twins | pre-norm attention, SwiGLU feed-forward |
| Phi-3 | `Phi3Decoder` | the same, its own attribute names |

One gate (the default) runs the layer's own `call` as a whole; two gates
run the two sub-layers, each `x + branch(x)`, through a gate each. A call
with a key/value cache (`CausalLM.call_with_cache`, which `generate` runs)
is the original call: generation is untouched. The causal mask is built by
the layer from the sequence it is given, so a subset of sequences is
masked as the whole batch is; the padding mask travels with its rows.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple, Type

import keras

from stochastic_depth_tf.hub import _compat
from stochastic_depth_tf.hub._text import SubLayers, TextLayerHandler, transformer_sublayers
from stochastic_depth_tf.layers._layer_drop import LayerDropBlock


class TransformerDecoderLayerDrop(LayerDropBlock, _compat.TransformerDecoder):
    """`TransformerDecoder` (GPT-2, OPT) with LayerDrop; a call with cross-attention is the original call."""

    sequence_argument = "decoder_sequence"
    mask_arguments = ("decoder_padding_mask", "decoder_attention_mask")
    passthrough_arguments = ("encoder_sequence", "self_attention_cache", "cross_attention_cache")

    def sublayers(self, arguments: Dict[str, Any]) -> SubLayers:
        def attention_mask(x: Any, masks: Tuple[Any, ...]) -> Any:
            padding_mask, attention_mask = masks
            return self._compute_self_attention_mask(
                decoder_sequence=x,
                decoder_padding_mask=padding_mask,
                decoder_attention_mask=attention_mask,
                use_causal_mask=arguments["use_causal_mask"],
                self_attention_cache=None,
                self_attention_cache_update_index=None,
            )

        return transformer_sublayers(self, attention_mask, arguments["training"])


class _GemmaShaped(LayerDropBlock):
    """Gemma's and Gemma 3's decoder block: pre-norm attention and a gated GELU feed-forward, post-norms optional."""

    sequence_argument = "x"
    passthrough_arguments = ("cache",)

    def _attention_mask(self: Any, normalized: Any, masks: Tuple[Any, ...]) -> Any:
        # Abstract: Gemma's and Gemma 3's adapters build their own masks (a
        # test checks that every adapter in ADAPTERS defines it).
        raise NotImplementedError(f"{type(self).__name__} must define _attention_mask")

    def _add(self: Any, x: Any, y: Any) -> Any:
        return x + y

    def sublayers(self: Any, arguments: Dict[str, Any]) -> SubLayers:
        def attention(x: Any, masks: Tuple[Any, ...]) -> Any:
            x = self._clip(x)
            normalized = self.pre_attention_norm(x)
            output = self.attention(normalized, attention_mask=self._attention_mask(normalized, masks))
            if self.use_post_attention_norm:
                output = self.post_attention_norm(output)
            if self.dropout:
                output = self.attention_dropout(output)
            return self._add(x, output)

        def feedforward(x: Any) -> Any:
            normalized = self.pre_ffw_norm(x)
            hidden = keras.activations.gelu(self.gating_ffw(normalized), approximate=True) * self.gating_ffw_2(
                normalized
            )
            output = self.ffw_linear(hidden)
            if self.use_post_ffw_norm:
                output = self.post_ffw_norm(output)
            return self._add(output, x)

        return attention, feedforward

    def _clip(self: Any, x: Any) -> Any:
        return x


class GemmaDecoderBlockLayerDrop(_GemmaShaped, _compat.GemmaDecoderBlock):
    """`GemmaDecoderBlock` with LayerDrop."""

    mask_arguments = ("padding_mask",)

    def _attention_mask(self, normalized: Any, masks: Tuple[Any, ...]) -> Any:
        return self._compute_attention_mask(normalized, masks[0], None, 0)


class Gemma3DecoderBlockLayerDrop(_GemmaShaped, _compat.Gemma3DecoderBlock):
    """`Gemma3DecoderBlock` with LayerDrop; in float16 its residual adds clip in float32, as the block's do."""

    mask_arguments = ("padding_mask", "vision_mask")

    def _attention_mask(self, normalized: Any, masks: Tuple[Any, ...]) -> Any:
        padding_mask, vision_mask = masks
        return self._compute_attention_mask(normalized, padding_mask, vision_mask, None, 0)

    def _float16(self, x: Any) -> bool:
        return bool(keras.backend.standardize_dtype(x.dtype) == "float16")

    def _clip(self, x: Any) -> Any:
        return keras.ops.clip(x, -65504, 65504) if self._float16(x) else x

    def _add(self, x: Any, y: Any) -> Any:
        if not self._float16(x):
            return x + y
        total = keras.ops.add(keras.ops.cast(x, "float32"), keras.ops.cast(y, "float32"))
        return keras.ops.cast(keras.ops.clip(total, -65504, 65504), "float16")


class _LlamaShaped(LayerDropBlock):
    """Llama's decoder layer and its twins (Mistral, Qwen, Qwen 3): pre-norm attention, SwiGLU in float32."""

    sequence_argument = "decoder_sequence"
    mask_arguments = ("decoder_padding_mask", "decoder_attention_mask")
    passthrough_arguments = ("self_attention_cache",)

    def sublayers(self: Any, arguments: Dict[str, Any]) -> SubLayers:
        def attention(x: Any, masks: Tuple[Any, ...]) -> Any:
            output = _uncached_attention(self, x, masks, self._self_attention_layernorm, self._self_attention_layer)
            return self._self_attention_dropout(output, training=arguments["training"]) + x

        def feedforward(x: Any) -> Any:
            normalized = self._feedforward_layernorm(x)
            denses = (
                self._feedforward_gate_dense,
                self._feedforward_intermediate_dense,
                self._feedforward_output_dense,
            )
            return _swiglu(self, normalized, *denses) + x

        return attention, feedforward


class LlamaTransformerDecoderLayerDrop(_LlamaShaped, _compat.LlamaTransformerDecoder):
    """`LlamaTransformerDecoder` (Llama, Llama 3) with LayerDrop."""


class MistralTransformerDecoderLayerDrop(_LlamaShaped, _compat.MistralTransformerDecoder):
    """`MistralTransformerDecoder` with LayerDrop."""


class QwenTransformerDecoderLayerDrop(_LlamaShaped, _compat.QwenTransformerDecoder):
    """`QwenTransformerDecoder` (Qwen, Qwen 2) with LayerDrop."""


class Qwen3TransformerDecoderLayerDrop(_LlamaShaped, _compat.Qwen3TransformerDecoder):
    """`Qwen3TransformerDecoder` with LayerDrop."""


class Phi3DecoderLayerDrop(LayerDropBlock, _compat.Phi3Decoder):
    """`Phi3Decoder` with LayerDrop: Llama's shape under other attribute names, dropouts in both sub-layers."""

    sequence_argument = "decoder_sequence"
    mask_arguments = ("decoder_padding_mask", "decoder_attention_mask")
    passthrough_arguments = ("attention_cache",)

    def sublayers(self, arguments: Dict[str, Any]) -> SubLayers:
        def attention(x: Any, masks: Tuple[Any, ...]) -> Any:
            return (
                self.attention_dropout(
                    _uncached_attention(self, x, masks, self.pre_attention_layernorm, self.attention)
                )
                + x
            )

        def feedforward(x: Any) -> Any:
            normalized = self.post_attention_layernorm(x)
            denses = (self.feedforward_gate_dense, self.feedforward_intermediate_dense, self.feedforward_output_dense)
            return self.feedforward_dropout(_swiglu(self, normalized, *denses)) + x

        return attention, feedforward


def _uncached_attention(layer: Any, x: Any, masks: Tuple[Any, ...], norm: Any, attention: Any) -> Any:
    """The causal self-attention of a Llama-shaped layer (Phi-3's too) on `norm(x)`, with no cache, before dropout.

    The layer's `_compute_self_attention_mask` names its cache arguments after
    the cache argument of its `call`, the adapter's passthrough argument.
    """
    padding_mask, attention_mask = masks
    cache = layer.passthrough_arguments[0]
    mask = layer._compute_self_attention_mask(
        decoder_sequence=x,
        decoder_padding_mask=padding_mask,
        decoder_attention_mask=attention_mask,
        **{cache: None, f"{cache}_update_index": None},
    )
    return attention(hidden_states=norm(x), attention_mask=mask, cache=None, cache_update_index=None)


def _swiglu(layer: Any, normalized: Any, gate_dense: Any, intermediate_dense: Any, output_dense: Any) -> Any:
    """The SwiGLU feed-forward of Llama's and Phi-3's layers: the gate's activation in float32, as theirs."""
    gate = keras.ops.cast(gate_dense(normalized), "float32")
    gate = keras.ops.cast(layer.activation(gate), layer.compute_dtype)
    return output_dense(keras.ops.multiply(intermediate_dense(normalized), gate))


ADAPTERS: Dict[type, Type[LayerDropBlock]] = {
    _compat.TransformerDecoder: TransformerDecoderLayerDrop,
    _compat.GemmaDecoderBlock: GemmaDecoderBlockLayerDrop,
    _compat.Gemma3DecoderBlock: Gemma3DecoderBlockLayerDrop,
    _compat.LlamaTransformerDecoder: LlamaTransformerDecoderLayerDrop,
    _compat.MistralTransformerDecoder: MistralTransformerDecoderLayerDrop,
    _compat.QwenTransformerDecoder: QwenTransformerDecoderLayerDrop,
    _compat.Qwen3TransformerDecoder: Qwen3TransformerDecoderLayerDrop,
    _compat.Phi3Decoder: Phi3DecoderLayerDrop,
}

_HANDLER = TextLayerHandler(ADAPTERS)

HANDLERS: Dict[type, TextLayerHandler] = {
    _compat.GPT2Backbone: _HANDLER,
    _compat.OPTBackbone: _HANDLER,
    _compat.GemmaBackbone: _HANDLER,
    _compat.Gemma3Backbone: _HANDLER,
    _compat.LlamaBackbone: _HANDLER,
    _compat.Llama3Backbone: _HANDLER,
    _compat.MistralBackbone: _HANDLER,
    _compat.QwenBackbone: _HANDLER,
    _compat.Qwen3Backbone: _HANDLER,
    _compat.Phi3Backbone: _HANDLER,
}
