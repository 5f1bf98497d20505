"""The registered subclass `StochasticDepth<Name>` of a KerasHub backbone class, and the weight copy into it.

Why a subclass and not the exact class: a preset records the registered name
of the backbone's class, and `from_preset` calls that class's `from_config`,
which for KerasHub's own class rejects any key it does not know. Keeping the
exact class would either lose the settings on reload or require patching
KerasHub's classes globally; a registered subclass does neither. Its config
is the original's plus `SETTINGS_KEY`, the settings as a dict; its
`__init__` takes them as a `StochasticDepthSettings` (from
`apply_stochastic_depth`) or that dict (from a config, read by
`validate_settings`), builds the plain backbone from the rest, hands it to
the class's handler (`_handlers`, `_text`) and takes over the attributes the
base class's `__init__` set, private ones included (`_token_embedding`,
which a causal LM reads through `token_embedding`). The backbone's
`stochastic_depth_settings` is the settings object.
"""

from __future__ import annotations

import functools
from typing import Any, Dict, FrozenSet, Mapping, Tuple, Type

import keras
import numpy as np

from stochastic_depth_tf._settings import StochasticDepthSettings
from stochastic_depth_tf.hub import SETTINGS_KEY, validate_settings
from stochastic_depth_tf.hub._compat import Backbone, version_message
from stochastic_depth_tf.hub._handlers import HANDLERS
from stochastic_depth_tf.hub._text import TextLayerHandler
from stochastic_depth_tf.surgery.apply import refuse_gates_per_layer


def register_all() -> None:
    """Makes and registers the subclass of every backbone class with a handler."""
    for backbone_class in HANDLERS:
        subclass(backbone_class)


@functools.cache
def subclass(base: Type[Any]) -> Type[Any]:
    """Makes (once) and registers the stochastic-depth subclass of `base`, a class of `HANDLERS`."""
    handler = HANDLERS[base]

    def __init__(self: Any, *, stochastic_depth: Mapping[str, Any], **config: Any) -> None:
        # Settings made by `apply_stochastic_depth` come validated; a config's dict is read here.
        settings = (
            stochastic_depth
            if isinstance(stochastic_depth, StochasticDepthSettings)
            else validate_settings(**stochastic_depth)
        )
        if not isinstance(handler, TextLayerHandler):
            refuse_gates_per_layer(settings, f"a {base.__name__}")
        plain = base(**config)
        inputs, output, pyramid, gates = handler.transform(plain, settings)
        # What the base class's __init__ set on top of a functional backbone's
        # own attributes: its config, its layers, `_token_embedding`, ...
        own = {key: value for key, value in vars(plain).items() if key not in _functional_attributes()}
        held = {key: value for key, value in own.items() if _holds_state(value)}
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
        Backbone.__init__(self, inputs=inputs, outputs=output, name=plain.name, dtype=plain.dtype_policy)
        # The attributes the base class's __init__ sets after building its
        # graph (its config, `pyramid_outputs`), read by get_config and tasks.
        for key, value in own.items():
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
            "stochastic_depth_layers": property(stochastic_depth_layers),
            "stochastic_depth_base_class": base,
            "__module__": "stochastic_depth_tf.hub",
            "__doc__": f"`{base.__name__}` with stochastic depth; see `stochastic_depth_tf.hub`.",
        },
    )
    cls.__qualname__ = name
    keras.saving.register_keras_serializable(package="stochastic_depth_tf", name=name)(cls)
    return cls


def copy_weights(source: keras.Model, target: keras.Model) -> None:
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
            version_message(
                f"The weights of '{source.name}' and of its copy differ in number or "
                "shape: the backbone's get_config does not describe it (KerasHub's "
                "EfficientNetBackbone leaves out num_features and "
                "stackwise_nores_option, so it rebuilds with their defaults), or "
                "this keras-hub builds it differently"
            )
        )
    for source_weight, target_weight in pairs:
        # Through a NumPy copy: JAX would otherwise share the buffer, which a
        # compiled step of one model donates (deletes) under the other.
        target_weight.assign(np.array(keras.ops.convert_to_numpy(source_weight)))


@functools.cache
def _functional_attributes() -> FrozenSet[str]:
    """The attributes Keras and `Backbone.__init__` give every functional backbone, read off a one-layer one.

    Its layers are named, so that Keras' automatic names of the user's layers
    do not move on.
    """
    inputs = keras.Input((1,), name="stochastic_depth_probe_input")
    outputs = keras.layers.Identity(name="stochastic_depth_probe_output")(inputs)
    return frozenset(vars(Backbone(inputs=inputs, outputs=outputs, name="stochastic_depth_probe")))


def _holds_state(value: Any) -> bool:
    """A layer or variable, or a list or tuple of them (Swin keeps its stages in a list)."""
    if isinstance(value, (list, tuple)):
        return any(_holds_state(item) for item in value)
    return isinstance(value, (keras.layers.Layer, keras.Variable))
