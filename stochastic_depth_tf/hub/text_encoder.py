"""LayerDrop for KerasHub's text encoders: BERT, RoBERTa, XLM-RoBERTa, DistilBERT and ELECTRA.

All five stack KerasHub's shared `TransformerEncoder`
(`keras_hub.layers.TransformerEncoder`), post-norm as BERT is
(`x = norm(x + attention(x))`, then `norm(x + feedforward(x))`) or pre-norm
(`normalize_first=True`). Its residual adds are inline in `call`, so each
layer of a backbone is given `TransformerEncoderLayerDrop`, a subclass of
its own class (`stochastic_depth_tf.layers._layer_drop.LayerDropBlock`):

- one gate (LayerDrop, the default): the layer's output is `x + s * (layer(x)
  - x)`, the original `call` run as a whole;
- two gates: the attention sub-layer and the feed-forward sub-layer each as
  a whole, norm included, so a dropped post-norm sub-layer returns its input
  rather than `norm(x)`.

The padding mask (and an attention mask) goes to the layer with the rows it
belongs to; a call asking for attention scores is the original call.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple, Type

from stochastic_depth_tf.hub import _compat
from stochastic_depth_tf.hub._text import SubLayers, TextLayerHandler, transformer_sublayers
from stochastic_depth_tf.layers._layer_drop import LayerDropBlock


class TransformerEncoderLayerDrop(LayerDropBlock, _compat.TransformerEncoder):
    """`TransformerEncoder` with LayerDrop: the whole layer, or its two sub-layers, gated."""

    sequence_argument = "inputs"
    mask_arguments = ("padding_mask", "attention_mask")
    passthrough_arguments = ("return_attention_scores",)

    def sublayers(self, arguments: Dict[str, Any]) -> SubLayers:
        def attention_mask(x: Any, masks: Tuple[Any, ...]) -> Any:
            return _compat.merge_padding_and_attention_mask(x, *masks)

        return transformer_sublayers(self, attention_mask, arguments["training"])


ADAPTERS: Dict[type, Type[LayerDropBlock]] = {_compat.TransformerEncoder: TransformerEncoderLayerDrop}

_HANDLER = TextLayerHandler(ADAPTERS)

HANDLERS: Dict[type, TextLayerHandler] = {
    _compat.BertBackbone: _HANDLER,
    _compat.RobertaBackbone: _HANDLER,
    _compat.XLMRobertaBackbone: _HANDLER,
    _compat.DistilBertBackbone: _HANDLER,
    _compat.ElectraBackbone: _HANDLER,
}
