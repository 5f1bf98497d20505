"""Stochastic depth for KerasHub vision backbones, and LayerDrop for its text and LLM backbones, with the class kept.

`stochastic_depth_tf.apply_stochastic_depth` hands a KerasHub backbone here
(this package registers the kind with surgery, which sits below it);
`apply_stochastic_depth` below is that same function. The result is a
backbone of class `StochasticDepth<Name>` (say
`StochasticDepthResNetBackbone`), a subclass of the backbone's own class
registered with Keras under the package `stochastic_depth_tf`, holding a copy
of every weight of the original. It is an instance of the original class, so
task models (`keras_hub.models.ResNetImageClassifier(backbone=...)`) take it;
its `get_config()` is the original's plus one key, `SETTINGS_KEY`, so
`save_to_preset` and `from_preset` (of the base class, of
`keras_hub.models.Backbone` or of the subclass) round-trip it, as do `.keras`
files of a task model. `strip_stochastic_depth(backbone)` is the inverse, for
export: a backbone of the original class with the same weights and inference.

The arguments left out of `apply_stochastic_depth` get the defaults it
gives every kind of model, fine-tuning's drop path (KerasHub's and timm's
convention): `mode="sample"` (one gate per example), `inverted=True`
(inference is the plain backbone's), linear decay to
`final_survival_probability=0.9` (drop path rate 0.1 on the last block), and
compute skipped wherever the blocks can. `apply_stochastic_depth` validates
them once, as a `StochasticDepthSettings`, and hands them here.

Text and LLM backbones (BERT, GPT-2, Gemma, Llama and their kin: `text_encoder`,
`text_decoder`) get LayerDrop: one gate per transformer layer, both residual
branches dropped together, with the same defaults; their causal LMs'
`generate` is untouched (the text guide, docs/guides/text.md).

Which backbones are supported, where their residual adds are, what becomes
of a backbone's own drop path and which blocks skip dropped examples: the
KerasHub guide (docs/guides/keras-hub.md). Every other KerasHub backbone is
refused with its reason (`UNSUPPORTED_BACKBONES`). Which keras-hub versions:
`_compat`, the one module that imports KerasHub's private modules.

A preset saved with stochastic depth names the class
`stochastic_depth_tf>StochasticDepth<Name>`: call `register_backbones()` (any
function of this package does it) before `from_preset` in a new process.
Requires KerasHub; see `INSTALL` for the install line.
"""

from __future__ import annotations

import sys
from typing import Any, Dict, Type

import keras

from stochastic_depth_tf._settings import StochasticDepthSettings
from stochastic_depth_tf.hub._text_backbones import TEXT_SUPPORTED_BACKBONES, TEXT_UNSUPPORTED_BACKBONES
from stochastic_depth_tf.schedules import DISTRIBUTIONS
from stochastic_depth_tf.surgery.apply import ModelKind, apply_stochastic_depth, register_model_kind

__all__ = [
    "DISTRIBUTIONS",
    "INSTALL",
    "SETTINGS_KEY",
    "SUPPORTED_BACKBONES",
    "UNSUPPORTED_BACKBONES",
    "apply_stochastic_depth",
    "register_backbones",
    "stochastic_depth_class",
    "strip_stochastic_depth",
    "validate_settings",
]

# keras-hub declares tensorflow-text as a dependency, which pulls the full
# `tensorflow` package beside `tensorflow-cpu`; vision backbones need neither.
# The version is the tested one (`_compat.TESTED_VERSIONS`).
INSTALL = 'pip install "stochastic_depth_tf[hub]" && pip install --no-deps "keras-hub==0.32.0"'

# The key of a backbone's config that holds its stochastic-depth settings, as a dict.
SETTINGS_KEY = "stochastic_depth"

SUPPORTED_BACKBONES = (
    "ResNetBackbone",
    "XceptionBackbone",
    "CSPNetBackbone",
    "MobileNetBackbone",
    "MobileNetV5Backbone",
    "EfficientNetBackbone",
    "HGNetV2Backbone",
    "ViTBackbone",
    "DeiTBackbone",
    "DINOV2Backbone",
    "DINOV3Backbone",
    "SwinTransformerBackbone",
    "ViTDetBackbone",
    "MiTBackbone",
    *TEXT_SUPPORTED_BACKBONES,
)

UNSUPPORTED_BACKBONES: Dict[str, str] = {
    "SAMBackbone": (
        "it joins an image encoder, a prompt encoder and a mask decoder: give its "
        "image_encoder (a ViTDetBackbone) stochastic depth with "
        "stochastic_depth_tf.apply_stochastic_depth and build the SAMBackbone on it"
    ),
    "SegFormerBackbone": (
        "it wraps an image_encoder (a MiTBackbone) in a head of its own: give the "
        "image_encoder stochastic depth with stochastic_depth_tf.apply_stochastic_depth "
        "and build the SegFormerBackbone on it"
    ),
    "DepthAnythingBackbone": (
        "it wraps an image_encoder (a DINOV2Backbone) in a head of its own: give the "
        "image_encoder stochastic depth with stochastic_depth_tf.apply_stochastic_depth "
        "and build the DepthAnythingBackbone on it"
    ),
    "RetinaNetBackbone": (
        "it wraps an image_encoder (a ResNetBackbone, say) in a head of its own: give the "
        "image_encoder stochastic depth with stochastic_depth_tf.apply_stochastic_depth "
        "and build the RetinaNetBackbone on it"
    ),
    "DeepLabV3Backbone": (
        "it wraps an image_encoder (a ResNetBackbone, say) in a head of its own: give the "
        "image_encoder stochastic depth with stochastic_depth_tf.apply_stochastic_depth "
        "and build the DeepLabV3Backbone on it"
    ),
    "VGGBackbone": "it has no residual connections",
    "DenseNetBackbone": "it has no residual adds (dense blocks concatenate)",
    **TEXT_UNSUPPORTED_BACKBONES,
}


def strip_stochastic_depth(backbone: keras.Model) -> keras.Model:
    """Returns a backbone of the original KerasHub class with the same weights and inference.

    The inverse of `apply_stochastic_depth` on a KerasHub backbone, for
    export (`stochastic_depth_tf.strip_stochastic_depth` hands such a
    backbone here): the result is a plain `ResNetBackbone` (or whichever
    class it came from) holding copies of the backbone's weights. Its output
    is the stochastic-depth backbone's inference output: with
    `inverted=True` the inference of a gate is a plain add, so nothing is
    lost; with `inverted=False` every gate must have survival probability 1
    (the current value, which a schedule may have moved), since `shortcut +
    p * residual` has no place in the plain class.

    Args:
        backbone: a backbone returned by `apply_stochastic_depth` or loaded
            from a preset saved from one.

    Returns:
        A new backbone of the original class.

    Raises:
        TypeError: `backbone` has no stochastic depth from this package.
        ValueError: `inverted=False` with a survival probability below 1.

    Example:

    ```python
    import keras_hub
    import stochastic_depth_tf as sdt

    backbone = keras_hub.models.ViTBackbone(
        image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32
    )
    backbone = sdt.apply_stochastic_depth(backbone, seed=0)
    # ... fine-tune ...
    plain = sdt.hub.strip_stochastic_depth(backbone)  # a ViTBackbone, same inference
    ```
    """
    loaded = _load()
    base = getattr(type(backbone), "stochastic_depth_base_class", None)
    if base is None:
        raise TypeError(
            "Invalid type received for argument `backbone`. Expected a KerasHub "
            "backbone returned by stochastic_depth_tf.apply_stochastic_depth. "
            f"Received: backbone of type {type(backbone).__name__}"
        )
    if not backbone.stochastic_depth_settings.inverted:
        for gate in backbone.stochastic_depth_layers:
            probability = float(keras.ops.convert_to_numpy(gate.survival_probability_variable))
            if probability != 1.0:
                raise ValueError(
                    "Invalid value received for argument `backbone`. Expected "
                    "inverted=True or survival probability 1 everywhere (the "
                    "plain class cannot scale a residual by p at inference). "
                    f"Received: gate '{gate.name}' with inverted=False and "
                    f"survival probability {probability}"
                )
    plain = base.from_config({"name": backbone.name, **base.get_config(backbone)})
    loaded.copy_weights(backbone, plain)
    return plain


def validate_settings(**settings: Any) -> StochasticDepthSettings:
    """The stochastic-depth settings a backbone's config stores (under `SETTINGS_KEY`), read back and validated.

    A backbone's config stores them as a dict: `final_survival_probability`,
    `distribution`, `mode`, `inverted`, `seed`, `skip_compute` and, where
    given, `gates_per_layer`. `skip_compute` is True for a config saved
    before it existed.

    Returns:
        The validated settings, a frozen object that reads as that dict too.

    Raises:
        TypeError, ValueError: as `stochastic_depth_tf.apply_stochastic_depth`
            for a bad setting.
    """
    return StochasticDepthSettings(**{"skip_compute": True, **settings})


def register_backbones() -> None:
    """Registers `StochasticDepth<Name>` for every supported backbone class with Keras.

    `from_preset` finds the class of a saved backbone by its registered name,
    so a process that loads a preset saved with stochastic depth calls this
    first (every other function of this package calls it).

    Raises:
        ImportError: KerasHub is not installed, or a keras-hub whose modules
            the adapters need are gone (the message names the installed and
            the supported versions).
    """
    _load()


def stochastic_depth_class(backbone_class: type) -> Type[Any]:
    """The registered subclass `StochasticDepth<Name>` of a supported KerasHub backbone class.

    Args:
        backbone_class: a class of `SUPPORTED_BACKBONES`, say
            `keras_hub.models.ResNetBackbone`.

    Returns:
        The subclass (the same object on every call).
    """
    loaded = _load()
    if backbone_class not in loaded.HANDLERS:
        raise ValueError(
            "Invalid value received for argument `backbone_class`. Expected one "
            f"of {SUPPORTED_BACKBONES}. Received: backbone_class={backbone_class!r}"
        )
    subclass: Type[Any] = loaded.subclass(backbone_class)
    return subclass


def _apply(backbone: keras.Model, settings: StochasticDepthSettings, *, replace_drop_connect: bool) -> keras.Model:
    """`apply_stochastic_depth` for a KerasHub backbone, with the settings it validated."""
    loaded = _load()
    base = _supported_class(backbone, loaded.HANDLERS)
    if not replace_drop_connect:
        raise ValueError(
            "Invalid value received for argument `replace_drop_connect`. Expected "
            "True or left out for a KerasHub backbone (its own drop path is always "
            "replaced by the gates). Received: replace_drop_connect=False"
        )
    # MobileNetV5Backbone's get_config leaves the name out; keep it anyway.
    config = {"name": backbone.name, **base.get_config(backbone)}
    new = loaded.subclass(base).from_config({**config, SETTINGS_KEY: settings})
    loaded.copy_weights(backbone, new)
    return new


def _load() -> Any:
    """The KerasHub-dependent module `_backbone_class`, imported on first use; registers the subclasses."""
    try:
        import keras_hub  # noqa: F401  (only whether it imports: the message below says how to install it)
    except ImportError:
        raise ImportError(
            f"stochastic_depth_tf.hub needs KerasHub, which is not installed. Install it with: {INSTALL}"
        ) from None
    from stochastic_depth_tf.hub import _backbone_class, _handlers, text_decoder, text_encoder

    # The text handlers live with their adapters; one registry holds them all.
    _handlers.HANDLERS.update({**text_encoder.HANDLERS, **text_decoder.HANDLERS})
    _backbone_class.register_all()
    return _backbone_class


def _is_keras_hub_backbone(model: Any) -> bool:
    """Whether `model` is a KerasHub backbone; never imports KerasHub (a backbone exists only once it is imported)."""
    keras_hub = sys.modules.get("keras_hub")
    return keras_hub is not None and isinstance(model, keras_hub.models.Backbone)


def _has_stochastic_depth(model: Any) -> bool:
    return getattr(type(model), "stochastic_depth_base_class", None) is not None


def _supported_class(backbone: Any, handlers: Dict[type, Any]) -> Type[Any]:
    base = type(backbone)
    if _has_stochastic_depth(backbone):
        raise ValueError(
            "Invalid value received for argument `backbone`. Expected a backbone "
            "without stochastic depth (strip it first with "
            "stochastic_depth_tf.strip_stochastic_depth). Received: "
            f"'{backbone.name}' of type {base.__name__}"
        )
    if base not in handlers:
        reason = UNSUPPORTED_BACKBONES.get(
            base.__name__, "not a KerasHub backbone with residual blocks this package knows"
        )
        raise ValueError(
            "Invalid value received for argument `backbone`. Expected a backbone "
            f"of one of {SUPPORTED_BACKBONES}. Received: {base.__name__} "
            f"'{backbone.name}' ({reason})"
        )
    return base


register_model_kind(
    ModelKind(
        name="KerasHub backbone",
        is_kind=_is_keras_hub_backbone,
        apply=_apply,
        has_stochastic_depth=_has_stochastic_depth,
        strip=strip_stochastic_depth,
    )
)
