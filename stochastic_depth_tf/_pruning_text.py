"""`prune_blocks` for KerasHub text and LLM backbones with LayerDrop: whole transformer layers removed.

The blocks of such a backbone (or of a task model holding one) are its
`transformer_layers`, block `i` being layer `i`, and every one is removable:
the stack keeps its shape without it. Pruning builds the backbone anew from
its config with `num_layers` as many as stay (its task model around it) and
copies the kept layers' weights in; the greedy rule switches layers off in
place (`LayerDropBlock.layer_drop_removed`) instead of rebuilding a graph.

The backbones are recognized by what `stochastic_depth_tf.hub`'s classes
show (no import of the hub, which sits beside `pruning`, nor of KerasHub,
which is optional). `stochastic_depth_tf.pruning` checks the arguments and
numbers the blocks; this module does the rest for text models.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence

import keras
import numpy as np

from stochastic_depth_tf.layers._layer_drop import LayerDropBlock


class TextLayer:
    """One transformer layer of a text backbone with LayerDrop, as `prune_blocks` numbers it (from 0, as it runs)."""

    # Every layer can go: the stack keeps its shape without it.
    reason: Optional[str] = None

    def __init__(self, index: int, layer: keras.layers.Layer, gates: Sequence[keras.layers.Layer]) -> None:
        self.index = index
        self.layer = layer
        self.gates = list(gates)

    @property
    def survival_probability(self) -> float:
        """The layer's current survival probability (the lowest of its gates', when it has two)."""
        return min(float(keras.ops.convert_to_numpy(gate.survival_probability_variable.value)) for gate in self.gates)

    def describe(self) -> str:
        return f"layer {self.index} ('{self.layer.name}')"


def text_backbone(model: Any) -> Optional[keras.Model]:
    """The LayerDrop backbone of `model` (a KerasHub backbone, or a task holding one), else None."""
    backbone = getattr(model, "backbone", model)
    layers = getattr(backbone, "transformer_layers", None)
    if getattr(type(backbone), "stochastic_depth_base_class", None) is None or not layers:
        return None
    if not all(isinstance(layer, LayerDropBlock) for layer in layers):
        return None
    return backbone


def text_layers(model: Any) -> List[TextLayer]:
    """The transformer layers of the model's backbone, each with its gates (one or two per layer)."""
    backbone: Any = text_backbone(model)
    layers = list(backbone.transformer_layers)
    gates = list(backbone.stochastic_depth_layers)
    per_layer = len(gates) // len(layers)
    return [
        TextLayer(index, layer, gates[index * per_layer : (index + 1) * per_layer])
        for index, layer in enumerate(layers)
    ]


def removal_order(
    model: Any, found: Sequence[TextLayer], rule: str, validation_data: Any, stop_after: int
) -> List[int]:
    """Layer numbers in the order `rule` removes them (the first `stop_after` of it for greedy).

    Greedy removes each candidate layer in place (`layer_drop_removed`: the
    layer returns its input) and evaluates the model eagerly, so nothing is
    rebuilt or retraced; every layer is back in place when it returns.
    """
    by_survival = sorted(found, key=lambda layer: (layer.survival_probability, -layer.index))
    if rule == "lowest_survival":
        return [layer.index for layer in by_survival]
    cost = _cost(model, validation_data)
    order: List[int] = []
    remaining = list(by_survival)
    try:
        for _ in range(min(stop_after, len(remaining))):
            costs = []
            for candidate in remaining:
                candidate.layer.layer_drop_removed = True
                costs.append(cost())
                candidate.layer.layer_drop_removed = False
            best = remaining.pop(int(np.argmin(costs)))  # the first of equal costs: the lowest-survival order
            best.layer.layer_drop_removed = True
            order.append(best.index)
    finally:
        for layer in found:
            layer.layer.layer_drop_removed = False
    return order


def _cost(model: Any, validation_data: Any) -> Callable[[], float]:
    """The greedy rule's cost of the layers removed so far, on `validation_data`.

    A task model (`GemmaCausalLM`, `BertTextClassifier`, ...) is scored by
    its compiled loss on `(x, y)` or `(x, y, sample_weight)`. A backbone has
    no labels: it is scored by how far its output moves from the whole
    backbone's on `x` (its inputs, a dict), the mean squared difference over
    the tokens its padding mask keeps.
    """
    backbone: Any = text_backbone(model)
    if model is backbone:
        x = (
            validation_data[0]
            if isinstance(validation_data, (tuple, list)) and len(validation_data) == 1
            else validation_data
        )
        if not isinstance(x, dict) or not x:
            raise ValueError(
                "Invalid value received for argument `validation_data`. Expected the "
                "backbone's inputs, a dict of arrays (token_ids, padding_mask, ...), "
                "for rule='greedy' on a backbone (it has no labels: the cost is how far "
                "its output moves). Received: validation_data of type "
                f"{type(validation_data).__name__}"
            )
        weights = np.asarray(x["padding_mask"], dtype="float32")[..., None] if "padding_mask" in x else None
        reference = _sequence_output(model(x, training=False))

        def distance() -> float:
            squared = np.square(_sequence_output(model(x, training=False)) - reference)
            if weights is None:
                return float(np.mean(squared))
            return float(np.sum(squared * weights) / (np.sum(weights) * squared.shape[-1]))

        return distance
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        raise ValueError(
            "Invalid value received for argument `validation_data`. Expected `(x, y)` "
            "or `(x, y, sample_weight)` for rule='greedy' on a task model (its compiled "
            f"loss is the cost). Received: validation_data of type {type(validation_data).__name__}"
        )
    loss: Any = getattr(model, "loss", None) if model.compiled else None
    if isinstance(loss, str):
        loss = keras.losses.get(loss)
    if loss is None or not callable(loss):
        raise ValueError(
            "Invalid value received for argument `model`. Expected a task model "
            f"compiled with one loss for rule='greedy'. Received: '{model.name}' with loss={loss!r}"
        )
    x, y, *sample_weight = validation_data

    def task_loss() -> float:
        value = loss(y, model(x, training=False), *sample_weight)
        return float(keras.ops.convert_to_numpy(value))

    return task_loss


def _sequence_output(outputs: Any) -> np.ndarray:
    """A backbone's sequence output as NumPy (BERT and ELECTRA return a dict)."""
    if isinstance(outputs, dict):
        outputs = outputs["sequence_output"]
    return np.asarray(keras.ops.convert_to_numpy(outputs), dtype="float32")


def prune(model: Any, removed: Sequence[int]) -> keras.Model:
    """The model with the backbone's layers `removed` gone: same class, `num_layers` in the config to match.

    The backbone is built anew from its config (LayerDrop settings included)
    with fewer layers; kept layer `j` gets the weights and the current
    survival probabilities of the `j`-th kept layer, every other weight
    (embeddings, final norm) is copied by path. A task model is built anew
    around it, its own weights (a classifier's head) copied by path.
    """
    backbone: Any = text_backbone(model)
    old_layers = list(backbone.transformer_layers)
    kept = [index for index in range(len(old_layers)) if index not in set(removed)]
    config = backbone.get_config()
    if "num_layers" not in config:
        raise ValueError(
            "Invalid value received for argument `model`. Expected a backbone whose "
            f"config gives its depth as `num_layers`. Received: {type(backbone).__name__} '{backbone.name}'"
        )
    new = type(backbone).from_config({**config, "num_layers": len(kept)})
    for new_layer, index in zip(new.transformer_layers, kept):
        _check_same_layer(old_layers[index], new_layer, index)
    old_by_layer = {id(weight) for layer in old_layers for weight in layer.weights}
    _copy_by_path(
        [weight for weight in backbone.weights if id(weight) not in old_by_layer],
        [
            weight
            for weight in new.weights
            if id(weight) not in {id(w) for l in new.transformer_layers for w in l.weights}
        ],
    )
    old_found, new_found = text_layers(backbone), text_layers(new)
    for new_layer, index in zip(new_found, kept):
        for source, target in zip(old_layers[index].weights, new_layer.layer.weights):
            target.assign(np.array(keras.ops.convert_to_numpy(source)))
        for source_gate, target_gate in zip(old_found[index].gates, new_layer.gates):
            target_gate.survival_probability_variable.assign(source_gate.survival_probability_variable.value)
    if model is backbone:
        return new
    task_config = {**model.get_config(), "backbone": new, "preprocessor": model.preprocessor}
    task = type(model).from_config(task_config)
    own = {id(weight) for weight in backbone.weights}
    _copy_by_path(
        [weight for weight in model.weights if id(weight) not in own],
        [weight for weight in task.weights if id(weight) not in {id(w) for w in new.weights}],
    )
    return task


def _check_same_layer(old: keras.layers.Layer, new: keras.layers.Layer, index: int) -> None:
    """Raises if a kept layer is rebuilt differently at its new depth (Gemma's alternating sliding windows)."""
    before = {key: value for key, value in old.get_config().items() if key != "name"}
    after = {key: value for key, value in new.get_config().items() if key != "name"}
    if before != after:
        changed = sorted(key for key in set(before) | set(after) if before.get(key) != after.get(key))
        raise ValueError(
            "Invalid value received for argument `blocks`. Expected layers whose "
            "removal leaves every kept layer built as it was (the backbone builds "
            "its layers by depth). Received: a removal that moves layer "
            f"{index} ('{old.name}') to '{new.name}', built with other {', '.join(changed)}"
        )


def _copy_by_path(sources: Sequence[Any], targets: Sequence[Any]) -> None:
    by_path = {weight.path: weight for weight in targets}
    for source in sources:
        by_path[source.path].assign(np.array(keras.ops.convert_to_numpy(source)))
