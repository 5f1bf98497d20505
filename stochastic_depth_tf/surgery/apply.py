"""`apply_stochastic_depth`: every residual add of a model made a `StochasticDepth`.

The one front door for every kind of model: a functional model is rewritten
here (graph surgery); a kind of model whose residual adds surgery cannot
reach, or whose class must be kept, is handed to the `ModelKind` registered
for it. `stochastic_depth_tf.hub` registers KerasHub backbones: it sits above
surgery, so surgery never imports it. `apply_survival_probabilities` is the
entry with one given survival probability per residual add.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import keras

from stochastic_depth_tf._settings import StochasticDepthSettings
from stochastic_depth_tf._validation import (
    block_seed,
    validate_bool,
    validate_survival_probability,
)
from stochastic_depth_tf.layers.stochastic_depth import StochasticDepth
from stochastic_depth_tf.surgery.graph import ResidualMerge, check_functional, producer_node, residual_merges
from stochastic_depth_tf.surgery.rebuild import Rebuild, rebuild

# One survival probability per residual add, in block order: a list, or a
# function of the adds (which `drop_connect_rate` can read).
SurvivalProbabilities = Union[Sequence[float], Callable[[List[ResidualMerge]], Sequence[float]]]


@dataclasses.dataclass(frozen=True)
class ModelKind:
    """A kind of model with an `apply` and a `strip` of its own, which the front doors hand it to.

    Attributes:
        name: what the kind is called in messages, say "KerasHub backbone".
        is_kind: whether a model is of this kind; `apply_stochastic_depth`
            hands such a model to `apply`.
        apply: called as `apply(model, settings, replace_drop_connect=...)`
            with the `StochasticDepthSettings` that `apply_stochastic_depth`
            validated (`skip_compute` True when left out) and its validated
            `replace_drop_connect`; returns the model with stochastic depth.
            A kind whose models have no text transformer layers refuses
            `settings.gates_per_layer` (`refuse_gates_per_layer`).
        has_stochastic_depth: whether a model came from `apply`;
            `strip_stochastic_depth` hands such a model to `strip`.
        strip: the inverse of `apply`, for export.
    """

    name: str
    is_kind: Callable[[Any], bool]
    apply: Callable[..., keras.Model]
    has_stochastic_depth: Callable[[Any], bool]
    strip: Callable[[Any], keras.Model]


_KINDS: Dict[str, ModelKind] = {}


def register_model_kind(kind: ModelKind) -> None:
    """Hands models of `kind` to its own `apply` and `strip`; a kind of the same name is replaced."""
    _KINDS[kind.name] = kind


def model_kind(model: Any) -> Optional[ModelKind]:
    """The registered kind `model` is of, or None (a model for graph surgery)."""
    return next((kind for kind in _KINDS.values() if kind.is_kind(model)), None)


def apply_stochastic_depth(
    model: keras.Model,
    final_survival_probability: Optional[float] = 0.9,
    distribution: str = "linear",
    mode: str = "sample",
    inverted: bool = True,
    seed: Optional[int] = None,
    replace_drop_connect: bool = True,
    skip_compute: Optional[bool] = None,
    gates_per_layer: Optional[int] = None,
) -> keras.Model:
    """Returns a copy of a model with stochastic depth on every residual add: a functional model or a KerasHub backbone.

    Every residual add becomes a `stochastic_depth_tf.StochasticDepth`
    called as `[shortcut, residual]`, with `b ~ Bernoulli(p_l)` drawn per
    example: in training `shortcut + (b / p_l) * residual`, at inference the
    plain `shortcut + residual` (with `inverted=False`, the paper's scaling:
    `shortcut + b * residual` in training, `shortcut + p_l * residual` at
    inference); Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016.
    Block `l = 1 .. L`, counted in topological order (the order the blocks are
    applied), gets `p_l = 1 - (l / L) * (1 - p_L)` with
    `distribution="linear"` (the paper's rule: the last block gets `p_L`), or
    `p_L` everywhere with `distribution="uniform"`.

    One set of defaults for every kind of model (a functional model or a
    KerasHub backbone): surgery never changes what the model computes at
    inference (`inverted=True`), gates are drawn per example
    (`mode="sample"`, as timm's drop path and KerasHub's backbones fine-tune),
    and the last block survives with `final_survival_probability=0.9` (drop
    path rate 0.1), because surgery is mostly applied to a trained model to
    fine-tune it, where a light rate regularizes without undoing what it
    learned, and the paper's 0.5 was for training a deep network from
    scratch. The layers and the builders of `stochastic_depth_tf.models`
    keep the paper's defaults (`mode="batch"`, `inverted=False`).

    **`inverted=False` on trained weights** changes the model the moment
    surgery returns: at inference every residual is scaled by its `p_l`, so
    a trained network predicts something else until it is trained again
    with its gates. Pass it when training from scratch, or to reproduce the
    paper.

    **Functional models** (`keras.Model(inputs, outputs)`, as every
    keras.applications model is). A residual add is a `keras.layers.Add`
    with exactly two inputs, or the op node that `x + y` /
    `keras.ops.add(x, y)` leaves in the graph (ConvNeXt writes its residuals
    so), whose two inputs have the same shape and are in a residual
    relation. Which input is the shortcut is read from the graph, never from
    the argument order (keras.applications ResNet adds `[shortcut, x]`,
    EfficientNet `[x, inputs]`): the nearest common ancestor of the two
    inputs is the block input, and the shortcut is the input with the
    shorter path back to it. It is the block input itself in an identity
    block, and one projection (convolution and normalization, or pooling)
    away from it in a projection block. Adds with more than two inputs, of
    inputs with no common ancestor (say, two model inputs), or of two paths
    of equal length are left as they are. Residual adds inside nested
    functional models are replaced too, numbered where the nested model is
    called.

    Keras' EfficientNet puts a drop-connect `Dropout(noise_shape=(None, 1, 1,
    1))` on the residual just before the add, which is per-example inverted
    stochastic depth already. With `replace_drop_connect=True` that dropout is
    removed (its input becomes the residual) so blocks are not dropped twice;
    with False it is kept. ConvNeXt's own stochastic depth (its private
    `StochasticDepth` layer when built with `drop_path_rate > 0`, a linear
    `Activation` otherwise) is left alone: build it with the default
    `drop_path_rate=0.0` before surgery.

    The new model is a copy: every layer is re-created from its config and
    given a copy of the original's weights (BatchNormalization statistics
    included), so the two models are independent. Layers that cannot be
    re-created from their config and hold no state (a `Lambda` of a Python
    lambda, say) are shared, which is harmless as they hold nothing to train.
    A compiled model's compile config is carried over (not the optimizer's
    state). With `final_survival_probability=1.0` the new model computes
    exactly what the original does.

    Surgery writes merge layers, never `StochasticDepthBlock`s, so the new
    model computes every branch (in any mode). A block needs its branch as
    one layer; moving a keras.applications branch into a nested model would
    change its layers' paths and the order of `get_weights()`, and the
    point of surgery is a model that still loads the original's weight files
    and `set_weights`. To skip compute, build the network on blocks
    (`stochastic_depth_tf.models`, or `StochasticDepthBlock` in your own).

    **KerasHub backbones** (`keras_hub.models.Backbone`, handed to
    `stochastic_depth_tf.hub`): the result is of the class
    `StochasticDepth<Name>` (say `StochasticDepthResNetBackbone`), a
    registered subclass of the backbone's own class holding a copy of every
    weight, so task models take it and `save_to_preset` / `from_preset`
    round-trip it (its config is the original's plus the settings). The
    residual adds of graph backbones (ResNet, Xception, CSPNet, EfficientNet
    v1) are rewritten as above; those inside encoder blocks (ViT, DeiT,
    DINOv2, DINOv3, Swin, ViTDet, MiT, MobileNet, MobileNetV5, EfficientNet
    v2, HGNetV2) are routed through gates by block adapters, two per
    transformer block (attention and MLP branches, same probability,
    independent draws). A backbone's own drop path is replaced;
    `final_survival_probability=None` keeps its rates as `p_l = 1 - rate_l`.
    Which backbones, where their blocks are and which KerasHub versions:
    the KerasHub guide (docs/guides/keras-hub.md).

    **KerasHub text and LLM backbones** (BERT, RoBERTa, DistilBERT,
    ELECTRA, GPT-2, OPT, Gemma, Gemma 3, Llama, Mistral, Qwen, Qwen 3,
    Phi-3) get LayerDrop (Fan et al., ICLR 2020): each layer of
    `backbone.transformer_layers` `y = f(x)` becomes `x + s * (f(x) - x)`,
    one gate per layer by default (both residual branches dropped together,
    as fairseq and torchtune drop a layer), or one gate per residual branch
    (attention, feed-forward) with `gates_per_layer=2`. The same defaults
    apply; `CausalLM.generate` is untouched. See the text guide
    (docs/guides/text.md).

    Args:
        model: a functional `keras.Model` with at least one residual add,
            or a KerasHub backbone of `stochastic_depth_tf.hub.SUPPORTED_BACKBONES`.
        final_survival_probability: `p_L` in `[0, 1]`: the last block's
            survival probability with `"linear"`, every block's with
            `"uniform"`. Must be greater than 0 with `inverted=True`. None
            (KerasHub backbones with a drop path of their own only: MiT,
            Swin, DINOv2, DINOv3, MobileNetV5, EfficientNet) keeps the
            backbone's own per-block rates.
        distribution: `"linear"` (the paper's decay) or `"uniform"`.
        mode: `"batch"` (one gate per call, the paper), `"sample"` (one gate
            per example, as Keras' EfficientNet drop-connect and timm) or
            `"subset"` (a fixed number of kept examples, DINOv2).
        inverted: True (the default) for the inverted scaling in training,
            which leaves inference as it was; False for the paper's scaling
            at inference, which changes what trained weights predict.
        seed: None or a non-negative int. With an int, the `l`-th layer (from
            0, in block order) gets the seed `seed + l`, so runs are
            reproducible and the layers draw different gates; with None every
            layer is unseeded.
        replace_drop_connect: whether to remove an EfficientNet-style
            drop-connect `Dropout` (noise shape 1 on every axis but the batch)
            found directly on a residual branch. A KerasHub backbone's own
            drop path is always replaced (False is refused).
        skip_compute: KerasHub transformer backbones (ViT, DeiT, DINOv2,
            DINOv3, MiT, Swin, ViTDet): True to compute the attention and MLP
            branches on the kept examples only, in training with
            `mode="sample"` or `"subset"`, as `StochasticDepthBlock` does;
            False to compute them and multiply by the gate (the same seed
            draws the same gates either way). Convolutional blocks always
            compute their branch, and so do the merges of a functional
            model (True is refused there). None (the default): skip wherever
            the model's blocks can (True for a KerasHub backbone, False for
            a functional model).
        gates_per_layer: KerasHub text and LLM backbones only: 1 (LayerDrop,
            one gate per transformer layer) or 2 (one gate per residual
            branch, attention and feed-forward, drawn independently, with the
            layer's survival probability). None (the default) is 1 for a
            text backbone; any other model refuses a value. Stored in the
            backbone's config, so presets and `.keras` files keep it.

    Returns:
        For a functional model, a new functional `keras.Model`, with the name
        of `model`; of `model`'s own class when that class is built as
        `cls(inputs, outputs)` (the rule of `keras.models.clone_model`,
        which rebuilds it). For a KerasHub backbone, a backbone of class
        `stochastic_depth_tf.hub.stochastic_depth_class(type(model))`, with
        the same name.

    Raises:
        TypeError: `model` is not a `keras.Model`; a setting has the wrong
            type; a layer that holds weights cannot be re-created from its
            config.
        ValueError: `model` is Sequential, subclassed, or has no residual
            add; a KerasHub backbone of a class not supported (the message
            says why) or that has stochastic depth already; a bad
            `distribution`, `mode`, `seed`, `final_survival_probability` or
            `gates_per_layer`, or `gates_per_layer` for a model without text
            transformer layers.
        ImportError: a KerasHub version whose modules the adapters need are
            gone (the message names the installed and supported versions).
        RuntimeError: the installed KerasHub's block no longer computes what
            its adapter assumes (the same message).

    Example:

    ```python
    import keras
    import stochastic_depth_tf as sdt

    base = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=10)
    model = sdt.apply_stochastic_depth(base, seed=0)
    # 16 StochasticDepth layers, 0.99375, 0.9875, ..., 0.9 in block order,
    # per-example gates; model.predict(x) is base.predict(x)
    ```

    A KerasHub backbone keeps its class, so its task model takes it:

    ```python
    import keras_hub
    import stochastic_depth_tf as sdt

    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 16], stackwise_num_blocks=[2, 2],
        stackwise_num_strides=[1, 2], block_type="basic_block",
        use_pre_activation=False, image_shape=(32, 32, 3),
    )
    backbone = sdt.apply_stochastic_depth(backbone, final_survival_probability=0.8, seed=0)
    classifier = keras_hub.models.ResNetImageClassifier(backbone=backbone, num_classes=10)
    ```
    """
    kind = model_kind(model)
    if kind is None:
        check_functional(model)
    if skip_compute is None:
        # Left out: skip wherever the blocks can (a registered kind's blocks; merges never).
        skip_compute = kind is not None
    # Positional, in the order of the settings' fields, which these arguments are named after.
    settings = StochasticDepthSettings(
        final_survival_probability, distribution, mode, inverted, seed, skip_compute, gates_per_layer
    )
    replace_drop_connect = validate_bool(replace_drop_connect, name="replace_drop_connect")
    if kind is not None:
        return kind.apply(model, settings, replace_drop_connect=replace_drop_connect)
    if settings.final_survival_probability is None:
        # None keeps a KerasHub backbone's own drop path rates; a functional model has none to keep.
        raise TypeError(
            "Invalid type received for argument `final_survival_probability`. "
            "Expected a float between 0 and 1. "
            "Received: final_survival_probability=None of type NoneType"
        )
    if settings.skip_compute:
        raise ValueError(
            "Invalid value received for argument `skip_compute`. Expected False "
            "or left out for a functional model (surgery writes merge layers, "
            "which compute every branch; StochasticDepthBlock skips). Received: "
            "skip_compute=True"
        )
    refuse_gates_per_layer(settings, f"a functional model ('{model.name}')")
    return gate_residual_adds(
        model,
        lambda adds: settings.survival_probabilities(len(adds)),
        settings,
        replace_drop_connect=replace_drop_connect,
    )


def apply_survival_probabilities(
    model: keras.Model,
    survival_probabilities: SurvivalProbabilities,
    *,
    mode: str = "sample",
    inverted: bool = True,
    seed: Optional[int] = None,
    replace_drop_connect: bool = True,
) -> keras.Model:
    """Returns a copy of a functional model with stochastic depth on every residual add, at given probabilities.

    `apply_stochastic_depth` for a functional model, with one survival
    probability per residual add instead of a schedule: the adds are found,
    numbered, seeded and replaced as there, the defaults are the same
    (per-example gates, inverted: inference unchanged), and the new model is
    a copy.

    Args:
        model: a functional `keras.Model` with at least one residual add.
        survival_probabilities: one survival probability in `[0, 1]` per
            residual add, in block order (greater than 0 with
            `inverted=True`); or a function that takes the residual adds
            (`stochastic_depth_tf.surgery.graph.ResidualMerge`, in block
            order) and returns them, say from their drop-connect rates
            (`drop_connect_rate`).
        mode: `"batch"`, `"sample"` or `"subset"`.
        inverted: True for the inverted scaling in training, which leaves
            inference as it was; False for the paper's scaling at inference.
        seed: None or a non-negative int; the `l`-th layer gets `seed + l`.
        replace_drop_connect: whether to remove an EfficientNet-style
            drop-connect `Dropout` found directly on a residual branch.

    Returns:
        A new functional `keras.Model`, as `apply_stochastic_depth` returns.

    Raises:
        TypeError: `model` is not a `keras.Model`, or a setting or survival
            probability has the wrong type.
        ValueError: `model` is Sequential, subclassed, or has no residual
            add; not one survival probability per residual add; a bad
            `mode`, `seed` or survival probability.

    Example:

    ```python
    import keras
    from stochastic_depth_tf.surgery import apply_survival_probabilities

    inputs = keras.Input((8,))
    x = keras.layers.Dense(8)(inputs)
    x = keras.layers.Add()([x, keras.layers.Dense(8)(x)])
    x = keras.layers.Add()([x, keras.layers.Dense(8)(x)])
    model = apply_survival_probabilities(keras.Model(inputs, x), [0.9, 0.7], seed=0)
    ```
    """
    check_functional(model)
    # No schedule (the probabilities are given), and merges compute every branch.
    settings = StochasticDepthSettings(None, None, mode, inverted, seed, False, distributions=(None,))
    replace_drop_connect = validate_bool(replace_drop_connect, name="replace_drop_connect")

    def probabilities_of(adds: List[ResidualMerge]) -> List[float]:
        probabilities = list(
            survival_probabilities(adds) if callable(survival_probabilities) else survival_probabilities
        )
        if len(probabilities) != len(adds):
            raise ValueError(
                "Invalid value received for argument `survival_probabilities`. "
                f"Expected one survival probability per residual add of model '{model.name}' "
                f"({len(adds)}, in block order). Received: {len(probabilities)}"
            )
        return [
            validate_survival_probability(
                probability, inverted=settings.inverted, name=f"survival_probabilities[{index}]"
            )
            for index, probability in enumerate(probabilities)
        ]

    return gate_residual_adds(model, probabilities_of, settings, replace_drop_connect=replace_drop_connect)


def refuse_gates_per_layer(settings: StochasticDepthSettings, model: str) -> None:
    """Raises if `settings` ask for gates per layer of a model that has no text transformer layers (`model` says which)."""
    if settings.gates_per_layer is not None:
        raise ValueError(
            "Invalid value received for argument `gates_per_layer`. Expected None "
            f"(left out) for {model}: gates per layer are for the transformer layers "
            "of KerasHub text and LLM backbones. Received: "
            f"gates_per_layer={settings.gates_per_layer}"
        )


def drop_connect_rate(add: ResidualMerge) -> float:
    """The rate of the EfficientNet-style drop-connect `Dropout` on a residual add's branch, 0 if it has none."""
    layer = _drop_connect(add.residual) if add.residual is not None else None
    return 0.0 if layer is None else float(layer.rate)


def gate_residual_adds(
    model: keras.Model,
    probabilities_of: Callable[[List[ResidualMerge]], Sequence[float]],
    settings: StochasticDepthSettings,
    *,
    replace_drop_connect: bool,
) -> keras.Model:
    """The surgery of both entries, and of KerasHub's graph backbones: their arguments are validated already.

    Args:
        model: a functional `keras.Model` (checked by `check_functional`).
        probabilities_of: the residual adds, in block order, to one valid
            survival probability per add.
        settings: the gates' `mode`, `inverted` and `seed` (its schedule is
            `probabilities_of`'s business; merges compute every branch).
        replace_drop_connect: whether to remove the EfficientNet-style
            drop-connect `Dropout` on a residual branch.

    Returns:
        A new functional `keras.Model`, as `apply_stochastic_depth` returns.
    """
    adds = [merge for merge in residual_merges(model) if merge.is_add]
    if not adds:
        raise ValueError(
            "Invalid value received for argument `model`. Expected a "
            "functional keras.Model with at least one residual add (a "
            "keras.layers.Add or `x + y` of exactly two inputs, a shortcut and "
            "a branch computed from it). Received: model "
            f"'{model.name}' has none"
        )
    probabilities = list(probabilities_of(adds))
    replaced = {id(add.node.operation) for add in adds}
    names: Dict[int, _NameScope] = {}
    replacements = {}
    for index, (add, probability) in enumerate(zip(adds, probabilities)):
        if id(add.model) not in names:
            names[id(add.model)] = _NameScope(layer.name for layer in add.model.layers if id(layer) not in replaced)
        operation = add.node.operation
        # An add's residual is never None (only a block's is): `adds` holds adds.
        residual: Any = add.residual
        if replace_drop_connect:
            residual = _before_drop_connect(residual)
        replacements[id(add.node)] = functools.partial(
            _stochastic_depth,
            add=add,
            residual=residual,
            survival_probability=probability,
            mode=settings.mode,
            inverted=settings.inverted,
            seed=block_seed(settings.seed, index),
            name=names[id(add.model)].unique(operation.name),
            # Keep the Add's dtype policy (mixed precision); an op node has
            # none, so compute in the dtype it added in.
            dtype=(
                operation.dtype_policy
                if isinstance(operation, keras.layers.Layer)
                else keras.backend.standardize_dtype(residual.dtype)
            ),
        )
    return rebuild(model, replacements)


def _stochastic_depth(node: Any, state: Rebuild, *, add: ResidualMerge, residual: Any, **config: Any) -> Any:
    """The `Replacement` of a residual add: a `StochasticDepth` called as `[shortcut, residual]`.

    A scaled merge's `residual_scale` (`x + s * branch`) goes on the residual
    first, as a `keras.layers.Rescaling` named `<name>_residual_scale`.
    """
    residual = state.tensor(residual)
    if add.residual_scale != 1.0:
        residual = keras.layers.Rescaling(
            add.residual_scale, name=f"{config['name']}_residual_scale", dtype=config["dtype"]
        )(residual)
    return StochasticDepth(**config)([state.tensor(add.shortcut), residual])


def _before_drop_connect(residual: keras.KerasTensor) -> keras.KerasTensor:
    """The input of the EfficientNet-style drop-connect `Dropout` producing `residual`, if one does."""
    node = producer_node(residual)
    if _drop_connect(residual) is None:
        return residual
    return node.input_tensors[0]


def _drop_connect(residual: keras.KerasTensor) -> Optional[keras.layers.Dropout]:
    """The EfficientNet-style drop-connect `Dropout` producing `residual`, or None."""
    layer = producer_node(residual).operation
    if type(layer) is not keras.layers.Dropout or layer.noise_shape is None:
        return None
    noise_shape = tuple(layer.noise_shape)
    if len(noise_shape) != len(residual.shape) or any(size != 1 for size in noise_shape[1:]):
        return None
    return layer


class _NameScope:
    """Hands out layer names unique within one model."""

    def __init__(self, taken: Any) -> None:
        self.taken = set(taken)

    def unique(self, name: str) -> str:
        candidate, suffix = name, 1
        while candidate in self.taken:
            candidate = f"{name}_{suffix}"
            suffix += 1
        self.taken.add(candidate)
        return candidate
