"""Which KerasHub text and LLM backbones get LayerDrop, and why the others do not.

Data only, with no KerasHub import: `stochastic_depth_tf.hub` lists them in
`SUPPORTED_BACKBONES` and `UNSUPPORTED_BACKBONES` before KerasHub is loaded.
The supported ones stack KerasHub's `TransformerEncoder` (`text_encoder`),
its `TransformerDecoder` or one of the decoder blocks of `text_decoder`.
"""

from __future__ import annotations

from typing import Dict, Tuple

TEXT_SUPPORTED_BACKBONES: Tuple[str, ...] = (
    "BertBackbone",
    "RobertaBackbone",
    "XLMRobertaBackbone",
    "DistilBertBackbone",
    "ElectraBackbone",
    "GPT2Backbone",
    "OPTBackbone",
    "GemmaBackbone",
    "Gemma3Backbone",
    "LlamaBackbone",
    "Llama3Backbone",
    "MistralBackbone",
    "QwenBackbone",
    "Qwen3Backbone",
    "Phi3Backbone",
)

_ENCODER_DECODER = (
    "an encoder-decoder: LayerDrop of its two stacks (fairseq's --encoder-layerdrop and "
    "--decoder-layerdrop) is not implemented"
)
_MIXTURE_OF_EXPERTS = (
    "a mixture of experts: each layer's router adds its load-balancing loss inside the "
    "layer's call, which a dropped layer would not add; not implemented"
)


def _not_adapted(layer_class: str) -> str:
    return f"its layer class, {layer_class}, has no LayerDrop adapter in this version"


# The other text and LLM backbones, and why.
TEXT_UNSUPPORTED_BACKBONES: Dict[str, str] = {
    "AlbertBackbone": (
        "its transformer layers are shared across depth (num_groups layers called "
        "num_layers times), so one layer is several depths at once"
    ),
    "BartBackbone": _ENCODER_DECODER,
    "T5Backbone": _ENCODER_DECODER,
    "T5GemmaBackbone": _ENCODER_DECODER,
    "T5Gemma2Backbone": _ENCODER_DECODER,
    "WhisperBackbone": _ENCODER_DECODER,
    "MoonshineBackbone": _ENCODER_DECODER,
    "MixtralBackbone": _MIXTURE_OF_EXPERTS,
    "QwenMoeBackbone": _MIXTURE_OF_EXPERTS,
    "Qwen3MoeBackbone": _MIXTURE_OF_EXPERTS,
    "Qwen3_5MoeBackbone": _MIXTURE_OF_EXPERTS,
    "GptOssBackbone": "a mixture of experts (its router is inside each layer); not implemented",
    "XLNetBackbone": "its layers carry two streams (content and query) from layer to layer",
    "RWKV7Backbone": "a recurrent network: its layers pass a state (v_first) from layer to layer",
    "Gemma4Backbone": "its trailing layers share key/value projections with earlier ones",
    "Gemma3nBackbone": "its layers (AltUp, Laurel) keep several streams per layer",
    "PaliGemmaBackbone": _not_adapted("PaliGemmaDecoderBlock (image-prefix attention)"),
    "Qwen3_5Backbone": _not_adapted("its hybrid linear-attention and attention layers"),
    "BloomBackbone": _not_adapted("BloomDecoder"),
    "FalconBackbone": _not_adapted("FalconTransformerDecoder"),
    "GPTNeoXBackbone": _not_adapted("GPTNeoXDecoder"),
    "SmolLM3Backbone": _not_adapted("SmolLM3DecoderLayer"),
    "DebertaV3Backbone": _not_adapted("DisentangledAttentionEncoder"),
    "ESMBackbone": _not_adapted("ESMEncoder"),
    "FNetBackbone": _not_adapted("FNetEncoder"),
    "RoformerV2Backbone": _not_adapted("RoformerV2Encoder"),
}
