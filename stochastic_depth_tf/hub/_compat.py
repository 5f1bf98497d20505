"""Everything `stochastic_depth_tf.hub` takes from KerasHub, and the keras-hub versions it supports.

KerasHub keeps its encoder blocks in private modules (`keras_hub.src`), which
any release may change: this is the one module that imports them, with the
backbone classes (which come with releases). The block adapters subclass
what it exports. `stochastic_depth_tf.hub` imports it only once KerasHub is
known to be installed.

Supported: keras-hub from `MINIMUM_VERSION` (inclusive) up to
`MAXIMUM_VERSION` (exclusive; None while no release is known to break the
adapters); the test suite runs with `TESTED_VERSIONS`. Another version is not
refused on its number: it works, or it fails at its first use with one error
naming the installed and the supported versions: here, if a module or class
is gone, or when a backbone is given stochastic depth, if a block no longer
computes what its adapter assumes (each adapted block is compared with its
original `call`). A version outside the range gets a warning saying so.
"""

from __future__ import annotations

import importlib.metadata
import warnings
from typing import Optional

import keras_hub
from packaging.version import InvalidVersion, Version

MINIMUM_VERSION = "0.30.0"
MAXIMUM_VERSION: Optional[str] = None
TESTED_VERSIONS = ("0.30.0", "0.32.0")


def installed_version() -> str:
    """The version of the keras-hub that is imported (its `__version__`, else its distribution's)."""
    version = getattr(keras_hub, "__version__", None)
    if version is None:
        try:
            version = importlib.metadata.version("keras-hub")
        except importlib.metadata.PackageNotFoundError:
            return "unknown"
    return str(version)


def supported_versions() -> str:
    """The supported range as a requirement specifier, with the tested versions: `>=0.30.0 (tested: 0.30.0, 0.32.0)`."""
    upper = "" if MAXIMUM_VERSION is None else f",<{MAXIMUM_VERSION}"
    return f">={MINIMUM_VERSION}{upper} (tested: {', '.join(TESTED_VERSIONS)})"


def is_supported(version: str) -> bool:
    """Whether `version` is in the supported range (an unparsable version is not)."""
    try:
        parsed = Version(version)
    except InvalidVersion:
        return False
    return parsed >= Version(MINIMUM_VERSION) and (MAXIMUM_VERSION is None or parsed < Version(MAXIMUM_VERSION))


def version_message(problem: str) -> str:
    """`problem`, then the installed and the supported keras-hub versions and what to do."""
    return (
        f"{problem}. The installed keras-hub is {installed_version()}; "
        f"stochastic_depth_tf.hub supports keras-hub {supported_versions()}. "
        "Install a supported version (the line is stochastic_depth_tf.hub.INSTALL)."
    )


def check_installed_version() -> None:
    """Warns if the installed keras-hub is outside the supported range (it may still work)."""
    version = installed_version()
    if not is_supported(version):
        warnings.warn(
            f"keras-hub {version} is outside the range stochastic_depth_tf.hub "
            f"supports, {supported_versions()}. Each adapted block is checked "
            "against its original when a backbone is given stochastic depth, "
            "and raises if it differs.",
            UserWarning,
            stacklevel=2,
        )


check_installed_version()

try:
    from keras_hub.layers import TransformerDecoder, TransformerEncoder
    from keras_hub.models import (
        Backbone,
        BertBackbone,
        CSPNetBackbone,
        DeiTBackbone,
        DINOV2Backbone,
        DINOV3Backbone,
        DistilBertBackbone,
        EfficientNetBackbone,
        ElectraBackbone,
        Gemma3Backbone,
        GemmaBackbone,
        GPT2Backbone,
        HGNetV2Backbone,
        Llama3Backbone,
        LlamaBackbone,
        MistralBackbone,
        MiTBackbone,
        MobileNetBackbone,
        MobileNetV5Backbone,
        OPTBackbone,
        Phi3Backbone,
        Qwen3Backbone,
        QwenBackbone,
        ResNetBackbone,
        RobertaBackbone,
        SwinTransformerBackbone,
        ViTBackbone,
        ViTDetBackbone,
        XceptionBackbone,
        XLMRobertaBackbone,
    )
    from keras_hub.src.layers.modeling.transformer_layer_utils import merge_padding_and_attention_mask
    from keras_hub.src.models.deit.deit_layers import DeiTEncoder, DeiTEncoderBlock
    from keras_hub.src.models.dinov2.dinov2_layers import DINOV2Encoder, DINOV2Layer
    from keras_hub.src.models.dinov3.dinov3_layers import DINOV3Encoder, DINOV3Layer
    from keras_hub.src.models.efficientnet.fusedmbconv import FusedMBConvBlock
    from keras_hub.src.models.efficientnet.mbconv import BN_AXIS, MBConvBlock
    from keras_hub.src.models.gemma.gemma_decoder_block import GemmaDecoderBlock
    from keras_hub.src.models.gemma3.gemma3_decoder_block import Gemma3DecoderBlock
    from keras_hub.src.models.hgnetv2.hgnetv2_encoder import HGNetV2Encoder
    from keras_hub.src.models.hgnetv2.hgnetv2_layers import HGNetV2BasicLayer
    from keras_hub.src.models.llama.llama_decoder import LlamaTransformerDecoder
    from keras_hub.src.models.mistral.mistral_transformer_decoder import MistralTransformerDecoder
    from keras_hub.src.models.mit.mit_layers import HierarchicalTransformerEncoder
    from keras_hub.src.models.mobilenet.mobilenet_backbone import DepthwiseConvBlock, InvertedResidualBlock
    from keras_hub.src.models.mobilenetv5.mobilenetv5_attention import MobileAttention
    from keras_hub.src.models.mobilenetv5.mobilenetv5_blocks import EdgeResidual, UniversalInvertedResidual
    from keras_hub.src.models.phi3.phi3_decoder import Phi3Decoder
    from keras_hub.src.models.qwen.qwen_decoder import QwenTransformerDecoder
    from keras_hub.src.models.qwen3.qwen3_decoder import Qwen3TransformerDecoder
    from keras_hub.src.models.swin_transformer.swin_transformer_layers import (
        SwinTransformerBlock,
        SwinTransformerStage,
        window_partition,
        window_reverse,
    )
    from keras_hub.src.models.vit.vit_layers import ViTEncoder, ViTEncoderBlock
    from keras_hub.src.models.vit_det.vit_layers import WindowedTransformerEncoder
except ImportError as error:
    raise ImportError(
        version_message(f"stochastic_depth_tf.hub cannot import what it needs from keras-hub ({error})")
    ) from error

__all__ = [
    "MINIMUM_VERSION",
    "MAXIMUM_VERSION",
    "TESTED_VERSIONS",
    "installed_version",
    "supported_versions",
    "is_supported",
    "version_message",
    "check_installed_version",
    "Backbone",
    "CSPNetBackbone",
    "DeiTBackbone",
    "DINOV2Backbone",
    "DINOV3Backbone",
    "EfficientNetBackbone",
    "HGNetV2Backbone",
    "MiTBackbone",
    "MobileNetBackbone",
    "MobileNetV5Backbone",
    "ResNetBackbone",
    "SwinTransformerBackbone",
    "ViTBackbone",
    "ViTDetBackbone",
    "XceptionBackbone",
    "DeiTEncoder",
    "DeiTEncoderBlock",
    "DINOV2Encoder",
    "DINOV2Layer",
    "DINOV3Encoder",
    "DINOV3Layer",
    "FusedMBConvBlock",
    "BN_AXIS",
    "MBConvBlock",
    "HGNetV2Encoder",
    "HGNetV2BasicLayer",
    "HierarchicalTransformerEncoder",
    "DepthwiseConvBlock",
    "InvertedResidualBlock",
    "MobileAttention",
    "EdgeResidual",
    "UniversalInvertedResidual",
    "SwinTransformerBlock",
    "SwinTransformerStage",
    "window_partition",
    "window_reverse",
    "ViTEncoder",
    "ViTEncoderBlock",
    "WindowedTransformerEncoder",
    "TransformerDecoder",
    "TransformerEncoder",
    "BertBackbone",
    "DistilBertBackbone",
    "ElectraBackbone",
    "Gemma3Backbone",
    "GemmaBackbone",
    "GPT2Backbone",
    "Llama3Backbone",
    "LlamaBackbone",
    "MistralBackbone",
    "OPTBackbone",
    "Phi3Backbone",
    "Qwen3Backbone",
    "QwenBackbone",
    "RobertaBackbone",
    "XLMRobertaBackbone",
    "merge_padding_and_attention_mask",
    "Gemma3DecoderBlock",
    "GemmaDecoderBlock",
    "LlamaTransformerDecoder",
    "MistralTransformerDecoder",
    "Phi3Decoder",
    "Qwen3TransformerDecoder",
    "QwenTransformerDecoder",
]
