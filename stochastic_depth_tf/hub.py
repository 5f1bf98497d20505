"""Stochastic depth for KerasHub vision backbones, with the backbone's class kept.

`stochastic_depth_tf.apply_stochastic_depth` works on a functional graph and
returns a plain `keras.Model`: a KerasHub backbone put through it stops being a
`ResNetBackbone`, so its task model, `save_to_preset` and `from_preset` no
longer take it, and transformer backbones are refused outright (their residual
adds are inside the encoder blocks' `call`). This module is the KerasHub-aware
entry point:

- `apply_stochastic_depth(backbone, ...)` returns a backbone of the class
  `StochasticDepth<Name>` (say `StochasticDepthResNetBackbone`), a subclass of
  the backbone's own class registered with Keras under the package
  `stochastic_depth_tf`, holding a copy of every weight of the original.
  It is an instance of the original class, so task models
  (`keras_hub.models.ResNetImageClassifier(backbone=...)`) take it.
- Its `get_config()` is the original's plus one key, `"stochastic_depth"`,
  holding the settings; `from_config` builds the plain backbone from the rest
  and puts stochastic depth back on it the same way. So `save_to_preset` and
  `from_preset` (of the base class, of `keras_hub.models.Backbone` or of the
  subclass) round-trip it, as do `.keras` files of a task model.
- `strip_stochastic_depth(backbone)` is the inverse, for export: a backbone
  of the original class with the same weights and inference function.

Why a subclass and not the exact class: a preset records the registered name
of the backbone's class, and `from_preset` calls that class's `from_config`,
which for KerasHub's own class rejects any key it does not know. Keeping the
exact class would either lose the settings on reload or require patching
KerasHub's classes globally; a registered subclass does neither.

Where stochastic depth goes, per backbone (one survival probability per block,
counted in the order the blocks run; two gates per transformer block, one for
the attention branch and one for the MLP branch, with the same probability
and independent draws):

| backbone | residual adds | private drop path | ours |
|---|---|---|---|
| `ResNetBackbone` (v1, v2, basic, bottleneck, vd) | `keras.layers.Add` in the graph | none | graph surgery, one gate per block |
| `XceptionBackbone` | `keras.layers.Add` in the graph (middle blocks) | none | graph surgery, one gate per block |
| `CSPNetBackbone` (dark, bottleneck and edge blocks; csp, cs3 and dark stages) | `keras.layers.add` in the graph, one per block inside a stage | none | graph surgery, one gate per block |
| `MobileNetBackbone` (v3) | `x + y` in `InvertedResidualBlock.call` (stride 1, filters in = out) and `DepthwiseConvBlock.call` (`depthwise_residual=True`) | none | adapter, one gate per block with a residual add |
| `MobileNetV5Backbone` | `+` in `EdgeResidual.call`, `UniversalInvertedResidual.call`, `MobileAttention.call` (and MobileNet's blocks for its `"ir"` / `"ds"` types) | `DropPath(rate_b)`, `rate_b = drop_path_rate * b / B`, unseeded | adapter, one gate per block with a skip; its `DropPath` is no longer called |
| `EfficientNetBackbone` (v1 blocks) | `keras.layers.Add` in the graph | drop connect: `Dropout(rate_b, noise_shape=(None, 1, 1, 1))` before the add, `rate_b = dropout * b / B` (`b` counts every block from 0, `B` all blocks) | graph surgery, one gate per residual block; the `Dropout` removed |
| `EfficientNetBackbone` (v2: `"unfused"`, `"fused"` blocks) | `keras.layers.Add` made inside `MBConvBlock.call` / `FusedMBConvBlock.call` | the same drop connect, made inside the block | adapter, one gate per residual block; its `Dropout` no longer called |
| `HGNetV2Backbone` | `keras.layers.Add` called inside `HGNetV2BasicLayer.call` (`residual=True`: every block of a stage but the first) | a drop-path `Dropout`, built with rate 0 by the backbone | adapter, one gate per residual block |
| `ViTBackbone` | `x + y` in `ViTEncoderBlock.call` | none | adapter, two gates per block |
| `DeiTBackbone` | `x + y` in `DeiTEncoderBlock.call` (attention) and in `DeiTOutput.call` (MLP) | none | adapter, two gates per block |
| `DINOV2Backbone` | `ops.add` in `DINOV2Layer.call`, after a layer scale | `DINOV2DropPath(drop_path_rate)`, the same rate in every block | adapter, two gates per block; its drop path is no longer called |
| `DINOV3Backbone` | `+` in `DINOV3Layer.call`, after a layer scale | `DINOV3DropPath(rate_l)`, `rate_l = linspace(0, drop_path_rate, L)` | adapter, two gates per block; its drop path is no longer called |
| `SwinTransformerBackbone` | `x + y` in `SwinTransformerBlock.call` | `DropPath(rate_l)`, `rate_l = linspace(0, drop_path, L)` over all blocks (seeded, timm's mask) | adapter, two gates per block; its `DropPath` is no longer called |
| `ViTDetBackbone` (SAM's image encoder) | `x + y` in `WindowedTransformerEncoder.call` | none | adapter, two gates per block |
| `MiTBackbone` (SegFormer's encoder) | `x + y` in `HierarchicalTransformerEncoder.call` | `DropPath(rate)` per block, `rate = linspace(0, max_drop_path_rate, L)` | adapter, two gates per block; its `DropPath` is no longer called |

Rate mapping: a private drop path of rate `r` is inverted per-example
stochastic depth with survival probability `1 - r`, and
`final_survival_probability=None` keeps exactly the backbone's own per-block
rates as `p_l = 1 - rate_l` (a float applies our schedule instead):

- MiT: `rate_l = linspace(0, max_drop_path_rate, L)`, so block 1 gets `p = 1`
  and the last `1 - max_drop_path_rate`; Swin alike with `drop_path`.
- MobileNetV5 and EfficientNet (drop connect, a `Dropout` with noise shape
  `(None, 1, 1, 1)`): `rate_b = rate * b / B`, `b` counting every block from
  0 and `B` all blocks, residual or not. An EfficientNet mixing v1 and v2
  block types is refused.
- DINOv2: `p_l = 1 - drop_path_rate` in every block; DINOv3: `rate_l =
  linspace(0, drop_path_rate, L)`. Their own drop path was meant as the same
  thing but is not: it multiplies the branch by `(u + 1 - rate) / (1 - rate)`
  with `u ~ U[0, 1)` drawn unseeded, a random factor that never drops the
  branch (timm floors `u + 1 - rate` to 0 or 1). Ours drops it with
  probability `1 - p_l`, seeded.

Every other KerasHub backbone is refused with its reason
(`UNSUPPORTED_BACKBONES`).

Per-example compute skipping (`skip_compute=True`, the default): in the
transformer blocks (ViT, DeiT, DINOv2, DINOv3, MiT, Swin, ViTDet) each
residual branch is `x + f(x)` with `f` acting on examples independently
(pre-norm attention or MLP; windows are cut within each example), so in
training with `mode="sample"` or `"subset"` the gate runs `f` on the kept
examples only and scatter-adds the result into their rows, as
`StochasticDepthBlock` does, and drawing the same gates as the merge (the same
seed gives the same kept rows, outputs and gradients with `skip_compute=
False`). Where that cannot pay or compile the branch is computed and merged:
inference, `mode="batch"`, `p > 0.9`, `mode="sample"` under XLA and JAX (a
varying count), DeiT's calls with an attention mask or returned scores. The
convolutional blocks (MobileNet, EfficientNet v2, HGNetV2, MobileNetV5) keep
the merge: their branches hold BatchNormalization, whose statistics would
then come from the kept examples only.

Defaults follow the KerasHub and timm convention of fine-tuning (drop path):
`mode="sample"` (one gate per example), `inverted=True` (scale in training, so
inference is the plain backbone), linear decay to `final_survival_probability=
0.9` (drop path rate 0.1 on the last block).

A preset saved with stochastic depth names the class
`stochastic_depth_tf>StochasticDepth<Name>`: call `register_backbones()` (any
function of this module does it) before `from_preset` in a new process.
Requires KerasHub; see `INSTALL` for the install line.
"""

from __future__ import annotations

import functools
from typing import Any, Dict, Optional, Tuple, Type

import keras
import numpy as np

from stochastic_depth_tf._validation import (
    validate_bool,
    validate_choice,
    validate_inverted,
    validate_mode,
    validate_seed,
    validate_survival_probability,
)
from stochastic_depth_tf.schedules import DISTRIBUTIONS

# keras-hub declares tensorflow-text as a dependency, which pulls the full
# `tensorflow` package beside `tensorflow-cpu`; vision backbones need neither.
INSTALL = 'pip install "stochastic_depth_tf[hub]" && pip install --no-deps "keras-hub==0.32.0"'


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
)

UNSUPPORTED_BACKBONES: Dict[str, str] = {
    "SAMBackbone": (
        "it joins an image encoder, a prompt encoder and a mask decoder: give its "
        "image_encoder (a ViTDetBackbone) stochastic depth with "
        "stochastic_depth_tf.hub.apply_stochastic_depth and build the SAMBackbone on it"
    ),
    "SegFormerBackbone": (
        "it wraps an image_encoder (a MiTBackbone) in a head of its own: give the "
        "image_encoder stochastic depth with stochastic_depth_tf.hub.apply_stochastic_depth "
        "and build the SegFormerBackbone on it"
    ),
    "DepthAnythingBackbone": (
        "it wraps an image_encoder (a DINOV2Backbone) in a head of its own: give the "
        "image_encoder stochastic depth with stochastic_depth_tf.hub.apply_stochastic_depth "
        "and build the DepthAnythingBackbone on it"
    ),
    "RetinaNetBackbone": (
        "it wraps an image_encoder (a ResNetBackbone, say) in a head of its own: give the "
        "image_encoder stochastic depth with stochastic_depth_tf.hub.apply_stochastic_depth "
        "and build the RetinaNetBackbone on it"
    ),
    "DeepLabV3Backbone": (
        "it wraps an image_encoder (a ResNetBackbone, say) in a head of its own: give the "
        "image_encoder stochastic depth with stochastic_depth_tf.hub.apply_stochastic_depth "
        "and build the DeepLabV3Backbone on it"
    ),
    "VGGBackbone": "it has no residual connections",
    "DenseNetBackbone": "it has no residual adds (dense blocks concatenate)",
}


def apply_stochastic_depth(
    backbone: keras.Model,
    final_survival_probability: Optional[float] = 0.9,
    distribution: str = "linear",
    mode: str = "sample",
    inverted: bool = True,
    seed: Optional[int] = None,
    skip_compute: bool = True,
) -> keras.Model:
    """Returns a copy of a KerasHub backbone with stochastic depth, of the backbone's class.

    Every residual block `l = 1 .. L` (counted in the order the blocks run)
    gets survival probability `p_l = 1 - (l / L) * (1 - p_L)` with
    `distribution="linear"` (Huang et al., "Deep Networks with Stochastic
    Depth", ECCV 2016), or `p_L` everywhere with `"uniform"`. Each residual
    add becomes a `stochastic_depth_tf.StochasticDepth`: in training
    `shortcut + (b / p) * residual` (`inverted=True`) or `shortcut + b *
    residual`, at inference `shortcut + residual` or `shortcut + p *
    residual`, with `b ~ Bernoulli(p)` per example (`mode="sample"`) or per
    batch (`mode="batch"`). Where the blocks are and what is done with a
    backbone's own drop path: see the module docstring.

    The result is a new backbone: every weight is a copy of the original's,
    and training one never changes the other.

    Args:
        backbone: a KerasHub backbone whose class is in `SUPPORTED_BACKBONES`.
        final_survival_probability: `p_L` in `[0, 1]` (greater than 0 with
            `inverted=True`), or None to keep the backbone's own drop path
            rates (only for a backbone that has them: EfficientNet,
            MobileNetV5, MiT, Swin, DINOv2, DINOv3).
        distribution: `"linear"` or `"uniform"`.
        mode: `"sample"`, `"batch"` or `"subset"` (see `stochastic_depth_tf.ops.MODES`).
        inverted: True (timm's drop path: the inference function is the
            plain backbone's) or False (the paper's scaling at inference).
        seed: None or a non-negative int; with an int the `k`-th gate
            (from 0, in block order) gets the seed `seed + k`.
        skip_compute: True (default) to compute the attention and MLP
            branches of transformer blocks (ViT, DeiT, DINOv2, DINOv3, MiT,
            Swin, ViTDet) on the kept examples only, in training with
            `mode="sample"` or `"subset"`, as `StochasticDepthBlock` does;
            False to always compute them and multiply by the gate. The same
            seed draws the same gates either way. Convolutional blocks
            always compute their branch (it holds BatchNormalization).

    Returns:
        A backbone of class `stochastic_depth_class(type(backbone))`, a
        subclass of `type(backbone)`, with the same name.

    Raises:
        ImportError: KerasHub is not installed.
        TypeError: `backbone` is not a KerasHub backbone, or a setting has
            the wrong type.
        ValueError: the backbone's class is not supported (the message says
            why), it already has stochastic depth, or a setting is invalid.
        RuntimeError: the installed KerasHub's encoder block no longer
            computes what our adapter for it assumes.

    Example:

    ```python
    import keras_hub
    import stochastic_depth_tf as sdt

    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 16], stackwise_num_blocks=[2, 2],
        stackwise_num_strides=[1, 2], block_type="basic_block",
        use_pre_activation=False, image_shape=(32, 32, 3),
    )
    backbone = sdt.hub.apply_stochastic_depth(backbone, final_survival_probability=0.8, seed=0)
    classifier = keras_hub.models.ResNetImageClassifier(backbone=backbone, num_classes=10)
    ```
    """
    hub_backbones = _hub_backbones()
    base = _supported_class(backbone, hub_backbones)
    settings = validate_settings(
        final_survival_probability=final_survival_probability,
        distribution=distribution,
        mode=mode,
        inverted=inverted,
        seed=seed,
        skip_compute=skip_compute,
    )
    # MobileNetV5Backbone's get_config leaves the name out; keep it anyway.
    config = {"name": backbone.name, **base.get_config(backbone)}
    new = stochastic_depth_class(base).from_config({**config, SETTINGS_KEY: settings})
    _copy_weights(backbone, new)
    return new


def strip_stochastic_depth(backbone: keras.Model) -> keras.Model:
    """Returns a backbone of the original KerasHub class with the same weights and inference.

    The inverse of `apply_stochastic_depth`, for export: the result is a
    plain `ResNetBackbone` (or whichever class it came from) holding copies
    of the backbone's weights. Its output is the stochastic-depth backbone's
    inference output: with `inverted=True` the inference of a gate is a plain
    add, so nothing is lost; with `inverted=False` every gate must have
    survival probability 1 (the current value, which a schedule may have
    moved), since `shortcut + p * residual` has no place in the plain class.

    Args:
        backbone: a backbone returned by `apply_stochastic_depth` or loaded
            from a preset saved from one.

    Returns:
        A new backbone of the original class.

    Raises:
        TypeError: `backbone` has no stochastic depth from this module.
        ValueError: `inverted=False` with a survival probability below 1.

    Example:

    ```python
    plain = sdt.hub.strip_stochastic_depth(backbone)
    ```
    """
    _hub_backbones()
    base = getattr(type(backbone), "stochastic_depth_base_class", None)
    if base is None:
        raise TypeError(
            "Invalid type received for argument `backbone`. Expected a KerasHub "
            "backbone returned by stochastic_depth_tf.hub.apply_stochastic_depth. "
            f"Received: backbone of type {type(backbone).__name__}"
        )
    if not backbone.stochastic_depth_settings["inverted"]:
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
    _copy_weights(backbone, plain)
    return plain


def register_backbones() -> None:
    """Registers `StochasticDepth<Name>` for every supported backbone class with Keras.

    `from_preset` finds the class of a saved backbone by its registered name,
    so a process that loads a preset saved with stochastic depth calls this
    first (every other function of this module calls it).

    Raises:
        ImportError: KerasHub is not installed.
    """
    _hub_backbones()


def stochastic_depth_class(backbone_class: type) -> Type[Any]:
    """The registered subclass `StochasticDepth<Name>` of a supported KerasHub backbone class.

    Args:
        backbone_class: a class of `SUPPORTED_BACKBONES`, say
            `keras_hub.models.ResNetBackbone`.

    Returns:
        The subclass (the same object on every call).
    """
    hub_backbones = _hub_backbones()
    if backbone_class not in hub_backbones.HANDLERS:
        raise ValueError(
            "Invalid value received for argument `backbone_class`. Expected one "
            f"of {SUPPORTED_BACKBONES}. Received: backbone_class={backbone_class!r}"
        )
    return _subclass(backbone_class)


def validate_settings(
    *,
    final_survival_probability: Any,
    distribution: Any,
    mode: Any,
    inverted: Any,
    seed: Any,
    skip_compute: Any = True,
) -> Dict[str, Any]:
    """The stochastic-depth settings a backbone's config stores, validated.

    `skip_compute` defaults to True for configs saved before it existed.
    """
    inverted = validate_inverted(inverted)
    if final_survival_probability is not None:
        final_survival_probability = validate_survival_probability(
            final_survival_probability, inverted=inverted, name="final_survival_probability"
        )
    validate_choice(distribution, tuple(DISTRIBUTIONS), name="distribution")
    seed = validate_seed(seed)
    return {
        "final_survival_probability": final_survival_probability,
        "distribution": distribution,
        "mode": validate_mode(mode),
        "inverted": inverted,
        "seed": seed,
        "skip_compute": validate_bool(skip_compute, name="skip_compute"),
    }


def _hub_backbones() -> Any:
    """The KerasHub-dependent module, imported on first use; registers the subclasses."""
    try:
        import keras_hub  # noqa: F401  (only whether it imports: the message below says how to install it)
    except ImportError:
        raise ImportError(
            f"stochastic_depth_tf.hub needs KerasHub, which is not installed. Install it with: {INSTALL}"
        ) from None
    from stochastic_depth_tf import _hub_backbones as hub_backbones

    for backbone_class in hub_backbones.HANDLERS:
        _subclass(backbone_class)
    return hub_backbones


def _supported_class(backbone: Any, hub_backbones: Any) -> Type[Any]:
    import keras_hub

    if not isinstance(backbone, keras_hub.models.Backbone):
        raise TypeError(
            "Invalid type received for argument `backbone`. Expected a KerasHub "
            f"backbone (keras_hub.models.Backbone). Received: backbone of type "
            f"{type(backbone).__name__}"
        )
    base = type(backbone)
    if getattr(base, "stochastic_depth_base_class", None) is not None:
        raise ValueError(
            "Invalid value received for argument `backbone`. Expected a backbone "
            "without stochastic depth (strip it first with "
            "stochastic_depth_tf.hub.strip_stochastic_depth). Received: "
            f"'{backbone.name}' of type {base.__name__}"
        )
    if base not in hub_backbones.HANDLERS:
        reason = UNSUPPORTED_BACKBONES.get(
            base.__name__, "not a KerasHub vision backbone with residual blocks this module knows"
        )
        raise ValueError(
            "Invalid value received for argument `backbone`. Expected a backbone "
            f"of one of {SUPPORTED_BACKBONES}. Received: {base.__name__} "
            f"'{backbone.name}' ({reason})"
        )
    return base


def _copy_weights(source: keras.Model, target: keras.Model) -> None:
    """Copies every weight of `source` into `target`, which holds the same weights.

    By variable path when both models have the same unique paths (graph
    surgery keeps layer names but may list the layers in another order, as
    for Xception), else by position (a backbone whose unnamed sublayers get
    new automatic names in every build, as MiT's, keeps its order).
    """
    source_weights = source.weights
    target_weights = target.weights
    source_paths = [weight.path for weight in source_weights]
    target_by_path = {weight.path: weight for weight in target_weights}
    if len(set(source_paths)) == len(source_paths) == len(target_by_path) and set(source_paths) == set(target_by_path):
        pairs = [(weight, target_by_path[weight.path]) for weight in source_weights]
    else:
        pairs = list(zip(source_weights, target_weights))
    if len(source_weights) != len(target_weights) or any(
        tuple(one.shape) != tuple(other.shape) for one, other in pairs
    ):
        raise RuntimeError(
            f"The weights of '{source.name}' and of its copy differ in number or "
            "shape: the backbone's get_config does not describe it (KerasHub's "
            "EfficientNetBackbone leaves out num_features and "
            "stackwise_nores_option, so it rebuilds with their defaults), or the "
            "installed KerasHub builds it differently from the tested versions."
        )
    for source_weight, target_weight in pairs:
        # Through a NumPy copy: JAX would otherwise share the buffer, which a
        # compiled step of one model donates (deletes) under the other.
        target_weight.assign(np.array(keras.ops.convert_to_numpy(source_weight)))


def _holds_state(value: Any) -> bool:
    """A layer or variable, or a list or tuple of them (Swin keeps its stages in a list)."""
    if isinstance(value, (list, tuple)):
        return any(_holds_state(item) for item in value)
    return isinstance(value, (keras.layers.Layer, keras.Variable))


@functools.cache
def _subclass(base: Type[Any]) -> Type[Any]:
    """Makes (once) and registers the stochastic-depth subclass of `base`."""
    import keras_hub

    from stochastic_depth_tf import _hub_backbones as hub_backbones

    handler = hub_backbones.HANDLERS[base]

    def __init__(self: Any, *, stochastic_depth: Dict[str, Any], **config: Any) -> None:
        settings = validate_settings(**stochastic_depth)
        plain = base(**config)
        inputs, output, pyramid, gates = handler.transform(plain, settings)
        public = {key: value for key, value in vars(plain).items() if not key.startswith("_")}
        held = {key: value for key, value in public.items() if _holds_state(value)}
        if held and not handler.keeps_layers:
            raise RuntimeError(
                f"{base.__name__} holds a layer or variable in attribute "
                f"`{next(iter(held))}`, which stochastic_depth_tf.hub does not "
                "know how to carry over."
            )
        # Layers the base class keeps as attributes (DINOv2's `embeddings`),
        # set before the graph is built, as the base class does: the new graph
        # is the plain backbone's own, so they are its layers.
        for key, value in held.items():
            setattr(self, key, value)
        keras_hub.models.Backbone.__init__(
            self, inputs=inputs, outputs=output, name=plain.name, dtype=plain.dtype_policy
        )
        # The attributes the base class's __init__ sets after building its
        # graph (its config, `pyramid_outputs`), read by get_config and tasks.
        for key, value in public.items():
            if key not in vars(self):
                setattr(self, key, value)
        if isinstance(getattr(base, "pyramid_outputs", None), property):
            # FeaturePyramidBackbone keeps them privately, behind a property.
            self.pyramid_outputs = pyramid
        self.stochastic_depth_settings = settings
        # Tracked here (saved with the weights, found by `_flatten_layers`):
        # the gates of encoder blocks are in no graph node of their own.
        self._stochastic_depth_gates = list(gates)
        self.trainable = plain.trainable

    def get_config(self: Any) -> Dict[str, Any]:
        return {**base.get_config(self), SETTINGS_KEY: dict(self.stochastic_depth_settings)}

    def _stochastic_depth_strip(self: Any) -> Any:
        # Called by the top-level `stochastic_depth_tf.strip_stochastic_depth`.
        return strip_stochastic_depth(self)

    def stochastic_depth_layers(self: Any) -> Tuple[Any, ...]:
        """The `StochasticDepth` layers, one per residual add, in block order."""
        return tuple(self._stochastic_depth_gates)

    name = f"StochasticDepth{base.__name__}"
    cls = type(
        name,
        (base,),
        {
            "__init__": __init__,
            "get_config": get_config,
            "_stochastic_depth_strip": _stochastic_depth_strip,
            "stochastic_depth_layers": property(stochastic_depth_layers),
            "stochastic_depth_base_class": base,
            "__module__": __name__,
            "__doc__": f"`{base.__name__}` with stochastic depth; see `stochastic_depth_tf.hub`.",
        },
    )
    cls.__qualname__ = name
    keras.saving.register_keras_serializable(package="stochastic_depth_tf", name=name)(cls)
    return cls
