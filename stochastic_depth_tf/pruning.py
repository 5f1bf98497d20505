"""Depth on demand: serve a shallower network from the one you trained.

A network trained with stochastic depth has learned to work with blocks
missing: deleting single blocks of a stochastic-depth ResNet at test time
costs far less than it does for a plain one (Veit et al., "Residual Networks
Behave Like Ensembles of Relatively Shallow Networks", NeurIPS 2016).
LayerDrop (Fan et al., "Reducing Transformer Depth on Demand with Structured
Dropout", ICLR 2020) made that a deployment feature: train once, then serve
sub-networks of any depth without retraining. `prune_blocks` does it for the
models of this package: it returns a copy of a functional model with chosen
residual blocks removed outright (the branch is gone from the graph, the
shortcut stays), so the shallower network costs less to run.

Blocks are numbered from 0 in the order of
`stochastic_depth_tf.layers.stochastic_depth_layers(model)`: every
`StochasticDepth`, `ShakeDrop` and `StochasticDepthBlock` of the model, in
the order of `model.layers` (the order the blocks are applied), nested
models included. Block `i` is `stochastic_depth_layers(model)[i]`.

The model is rebuilt by `stochastic_depth_tf.surgery.rebuild` (the call of
each removed block is replaced by its shortcut); every layer is a copy
holding the original's variables, so the two models are independent.

KerasHub text and LLM backbones given LayerDrop by
`stochastic_depth_tf.apply_stochastic_depth` (and the task models holding
them) are pruned by layer, LayerDrop's own way: the blocks are the
backbone's `transformer_layers` (block `i` is layer `i`), and the result is
a backbone of the same class built with `num_layers` as many as stay (its
task model around it), which trains, generates and saves as any other.
"""

from __future__ import annotations

import functools
import math
import numbers
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple, Union

import keras
import numpy as np

from stochastic_depth_tf import _pruning_text
from stochastic_depth_tf._validation import Shape, validate_choice
from stochastic_depth_tf.layers import StochasticDepthBlock, stochastic_depth_layers
from stochastic_depth_tf.surgery.graph import check_functional
from stochastic_depth_tf.surgery.rebuild import Rebuild, rebuild

RULES = ("lowest_survival", "every_k", "greedy")
# The rules whose removals are nested (keeping k blocks removes a prefix of one order).
ORDERED_RULES = ("lowest_survival", "greedy")


def prune_blocks(
    model: keras.Model,
    *,
    blocks: Optional[Sequence[Union[int, str]]] = None,
    keep: Optional[Union[int, float]] = None,
    rule: str = "lowest_survival",
    validation_data: Optional[Tuple[Any, Any]] = None,
) -> keras.Model:
    """Returns a copy of `model` with chosen residual blocks removed, for inference.

    A removed block computes `shortcut(x)` and nothing else: for a merge
    layer (`StochasticDepth`, `ShakeDrop`, called as `[shortcut,
    residual]`) the layer's output becomes its shortcut input, and the layers
    that only fed the residual leave the graph; for a `StochasticDepthBlock`
    the block becomes its shortcut layer (identity, projection or
    `ZeroPadShortcut`). Every other layer, kept blocks included, is a copy
    with the original's weights and state, so kept blocks keep their
    inference scaling (`shortcut + p * residual`, or a plain add with
    `inverted=True`) with `p` the current value of their
    `survival_probability_variable`. Kept blocks are still our layers: the
    pruned model can be fine-tuned with stochastic depth, or passed to
    `stochastic_depth_tf.strip_stochastic_depth` for a graph of stock Keras
    layers. Its inference graph (`predict`, `model.export`) draws no random
    number. A compiled model's compile config is carried over.

    Blocks are numbered as in the module docstring: block `i` is
    `stochastic_depth_tf.layers.stochastic_depth_layers(model)[i]`. A
    block is *removable* when its shortcut has exactly the shape of its
    output (otherwise removing the branch would change a shape) and it is
    called in a functional graph (not from inside a `Sequential` or a
    block's branch, which `clone_model` cannot rewrite). Naming a block that
    is not removable is an error; under `keep` such blocks are kept, with a
    `UserWarning` that lists them and why.

    Choose the blocks in one of two ways:

    - `blocks`: an explicit list of block numbers or layer names.
    - `keep`: how many of the R removable blocks stay, an int count in
      `[0, R]` or a float fraction in `[0.0, 1.0]` (rounded half up: `keep=0.5`
      of 9 keeps 5). Note `keep=1` keeps one block and `keep=1.0` all of
      them. `rule` says which `R - keep` blocks go:

      - `"lowest_survival"` (default): lowest survival probability first
        (the current `survival_probability_variable`), ties broken deepest
        first. Under the paper's linear rule that is deepest first, and a
        plain network given survival probability 1 everywhere
        (`sdt.apply_stochastic_depth(model, final_survival_probability=1.0)`
        keeps its outputs) is pruned deepest first too.
      - `"every_k"`: LayerDrop's rule, every k-th removable block with
        `k = R / (R - keep)`, counted from the first: keeping 27 of 54
        removes blocks 2, 4, ..., 54 (1-based among the removable ones).
        When `k` is not an integer the `m = R - keep` removals are spread
        evenly: the i-th removable block (1-based) goes when
        `floor(i * m / R) > floor((i - 1) * m / R)`.
      - `"greedy"`: on `validation_data`, repeatedly remove the block whose
        removal costs least, until `keep` remain. The cost is the compiled
        loss (`evaluate`) when the model is compiled with a loss, otherwise
        the classification error (argmax of the output against integer
        labels, or against the argmax of one-hot labels). Ties go to the
        `"lowest_survival"` order. It evaluates `R + (R - 1) + ...` candidate
        models, each one pass over `validation_data`; the candidates share
        one rebuilt model with a switch per block, so nothing is retraced.

    A KerasHub text or LLM backbone with LayerDrop (or a task model holding
    one: `GemmaCausalLM`, `BertTextClassifier`, ...) loses whole transformer
    layers: the result is of the model's own class, its backbone built from
    its config with `num_layers` set to the layers that stay, the kept
    layers' weights and current survival probabilities copied in order, the
    other weights (embeddings, final norm, a classifier's head) by path.
    Every layer is removable. A backbone that builds its layers by depth
    (Gemma's sliding windows in every other layer) refuses a removal that
    would rebuild a kept layer differently. Greedy evaluates eagerly with
    each candidate layer switched off in place; a task model's cost is its
    compiled loss on `validation_data=(x, y)` or `(x, y, sample_weight)`,
    a backbone's (no labels) is the mean squared change of its sequence
    output over the unpadded tokens, on `validation_data=x`, its inputs.

    Args:
        model: a functional `keras.Model` with at least one
            `StochasticDepth`, `ShakeDrop` or `StochasticDepthBlock` (an
            `sdt.models` network, a surgery result, your own); or a KerasHub
            text backbone with LayerDrop, or a task model holding one.
        blocks: the blocks to remove, as block numbers or layer names. Give
            either `blocks` or `keep`.
        keep: how many removable blocks stay: an int count or a float
            fraction, see above.
        rule: `"lowest_survival"`, `"every_k"` or `"greedy"`; with `keep` only.
        validation_data: `(x, y)`, two arrays with as many examples each;
            with `rule="greedy"` only, and required there. For KerasHub
            text models see above.

    Returns:
        A new functional `keras.Model` with the name of `model`; for a
        KerasHub text model, a model of its class with fewer layers.

    Raises:
        TypeError: `model` is not a `keras.Model`; an argument of the wrong type.
        ValueError: `model` is Sequential, subclassed or has none of our
            layers; both or neither of `blocks` and `keep`; a block out of
            range, unknown, repeated or not removable; `keep` out of range;
            an unknown `rule`; `validation_data` missing for, or given
            without, `rule="greedy"`.

    Example:

    ```python
    import stochastic_depth_tf as sdt

    model = sdt.models.cifar_resnet(depth=20, final_survival_probability=0.5)
    half = sdt.prune_blocks(model, keep=0.5)             # 4 of 9 blocks removed, the deepest
    two = sdt.prune_blocks(model, blocks=[7, 8])         # the last two blocks
    sparse = sdt.prune_blocks(model, keep=6, rule="every_k")   # blocks 2, 5, 8 removed
    ```
    """
    text, found = _blocks_of(model)
    if (blocks is None) == (keep is None):
        raise ValueError(
            "Invalid arguments received by prune_blocks. Expected exactly one of "
            "`blocks` (which to remove) and `keep` (how many stay). "
            f"Received: blocks={blocks!r}, keep={keep!r}"
        )
    rule = validate_choice(rule, RULES, name="rule")
    if blocks is not None:
        if rule != "lowest_survival" or validation_data is not None:
            raise ValueError(
                "Invalid arguments received by prune_blocks. Expected `rule` and "
                "`validation_data` only with `keep` (explicit `blocks` need no "
                f"rule). Received: blocks={blocks!r}, rule={rule!r}, "
                f"validation_data of type {type(validation_data).__name__}"
            )
        removed = _validate_blocks(blocks, found)
    else:
        # Every transformer layer can go: its removal keeps every shape.
        removable = found if text else _removable(found, warn=True)
        count = len(removable) - _validate_keep(keep, len(removable))
        if rule == "every_k":
            _check_no_validation_data(validation_data, rule)
            removed = _every_k(removable, count)
        else:
            order = _removal_order(model, text, found, removable, rule, validation_data, stop_after=count)
            removed = [found[index] for index in order[:count]]
    if text:
        return _pruning_text.prune(model, [block.index for block in removed])
    return _rebuild(model, found, _remove(set(removed)))


def removal_order(
    model: keras.Model,
    *,
    rule: str = "lowest_survival",
    validation_data: Optional[Tuple[Any, Any]] = None,
) -> List[int]:
    """The order in which `prune_blocks` removes the removable blocks under `rule`.

    For `"lowest_survival"` and `"greedy"` the removals are nested:
    `prune_blocks(model, keep=k, rule=rule, ...)` removes the first `R - k`
    blocks of this list, so one call gives every depth (and `greedy` runs
    its evaluations once). `"every_k"` has no such order.

    Args:
        model: as for `prune_blocks`.
        rule: `"lowest_survival"` or `"greedy"`.
        validation_data: `(x, y)`, with `rule="greedy"` only.

    Returns:
        Block numbers (see the module docstring), removed first to last.

    Example:

    ```python
    import stochastic_depth_tf as sdt

    model = sdt.models.cifar_resnet(depth=20, final_survival_probability=0.5)
    order = sdt.pruning.removal_order(model)            # [8, 7, ..., 0]
    pruned = sdt.prune_blocks(model, blocks=order[:3])  # == prune_blocks(model, keep=6)
    ```
    """
    text, found = _blocks_of(model)
    rule = validate_choice(rule, RULES, name="rule")
    validate_choice(
        rule, ORDERED_RULES, name="rule", expected=f"one of {ORDERED_RULES} (the rules whose removals are nested)"
    )
    removable = found if text else _removable(found, warn=True)
    return _removal_order(model, text, found, removable, rule, validation_data, stop_after=len(removable))


def _blocks_of(model: keras.Model) -> Tuple[bool, List[Any]]:
    """Whether `model` is a KerasHub text model with LayerDrop, and its blocks in block order.

    The blocks are `_Block`s of a functional model (checked to be one) or
    the `_pruning_text.TextLayer`s of a text backbone.
    """
    if _pruning_text.text_backbone(model) is not None:
        return True, list(_pruning_text.text_layers(model))
    check_functional(model)
    return False, list(_find_blocks(model))


def _removal_order(
    model: keras.Model,
    text: bool,
    found: List[Any],
    removable: List[Any],
    rule: str,
    validation_data: Any,
    stop_after: int,
) -> List[int]:
    """Block numbers in the order an ordered `rule` removes them (the first `stop_after` of it for greedy)."""
    if rule != "greedy":
        _check_no_validation_data(validation_data, rule)
    if text:
        return _pruning_text.removal_order(model, found, rule, validation_data, stop_after=stop_after)
    return _order(model, found, removable, rule, validation_data, stop_after=stop_after)


class _Block:
    """One of our layers, as found in the model: its number, and why it cannot go (None if it can)."""

    def __init__(self, index: int, layer: keras.layers.Layer) -> None:
        self.index = index
        self.layer = layer
        self.calls: List[Tuple[Shape, Shape]] = []  # (shortcut shape, output shape) per call

    @property
    def survival_probability(self) -> float:
        return float(keras.ops.convert_to_numpy(self.layer.survival_probability_variable.value))

    @property
    def reason(self) -> Optional[str]:
        if not self.calls:
            return (
                "it is not called in a functional graph (it sits inside a Sequential model "
                "or a block's branch), so its call cannot be cut out"
            )
        for shortcut_shape, output_shape in self.calls:
            if shortcut_shape != output_shape:
                return (
                    f"its shortcut has shape {shortcut_shape} and its output {output_shape}: "
                    "removing the branch would change a shape"
                )
        return None

    def describe(self) -> str:
        return f"block {self.index} ('{self.layer.name}'): {self.reason}"


class _Switch(keras.layers.Layer):
    """`output` when on, `shortcut` when off: a block removed without rebuilding (greedy only)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on = self.add_weight(
            shape=(), dtype="float32", initializer="ones", trainable=False, autocast=False, name="on"
        )

    def call(self, inputs: Any) -> Any:
        shortcut, output = inputs
        return keras.ops.where(keras.ops.greater(self.on, 0.5), output, shortcut)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape[1]


# What a rebuild does with one call of one of our layers: given the block and
# functions that make the copied call and that compute the block's shortcut in
# the new graph, return the call's output.
_Replace = Callable[[_Block, Callable[[], Any], Callable[[], Any]], Any]


def _find_blocks(model: keras.Model) -> List[_Block]:
    """Our layers in block order, each with the shapes of its calls (from a rebuild that removes nothing)."""
    found = [_Block(index, layer) for index, layer in enumerate(stochastic_depth_layers(model))]
    if not found:
        raise ValueError(
            "Invalid value received for argument `model`. Expected a functional "
            "keras.Model with at least one StochasticDepth, ShakeDrop or "
            "StochasticDepthBlock (for a plain network, "
            "sdt.apply_stochastic_depth(model, final_survival_probability=1.0) "
            f"adds them without changing its outputs). Received: model '{model.name}' has none"
        )

    def record(block: _Block, call: Callable[[], Any], shortcut: Callable[[], Any]) -> Any:
        output = call()
        block.calls.append((tuple(shortcut().shape), tuple(output.shape)))
        return output

    _rebuild(model, found, record, copy_state=False)
    return found


def _removable(found: List[_Block], *, warn: bool) -> List[_Block]:
    removable = [block for block in found if block.reason is None]
    kept = [block for block in found if block.reason is not None]
    if warn and kept:
        warnings.warn(
            f"prune_blocks: {len(kept)} of {len(found)} blocks cannot be removed and are "
            "kept: " + "; ".join(block.describe() for block in kept),
            UserWarning,
            stacklevel=3,
        )
    return removable


def _validate_blocks(blocks: Any, found: List[_Block]) -> List[_Block]:
    if isinstance(blocks, (str, bytes)) or not isinstance(blocks, (list, tuple)):
        raise TypeError(
            "Invalid type received for argument `blocks`. Expected a list or tuple "
            f"of block numbers or layer names. Received: blocks={blocks!r} of type {type(blocks).__name__}"
        )
    by_name = {block.layer.name: block for block in found}
    chosen: List[_Block] = []
    for item in blocks:
        if isinstance(item, str) and item in by_name:
            block = by_name[item]
        elif (
            isinstance(item, numbers.Integral)
            and not isinstance(item, (bool, np.bool_))
            and 0 <= int(item) < len(found)
        ):
            block = found[int(item)]
        else:
            raise ValueError(
                "Invalid value received for argument `blocks`. Expected block numbers "
                f"in [0, {len(found) - 1}] or names of the model's blocks "
                f"({', '.join(repr(block.layer.name) for block in found[:3])}, ...). "
                f"Received: {item!r} in blocks={blocks!r}"
            )
        if block in chosen:
            raise ValueError(
                "Invalid value received for argument `blocks`. Expected each block "
                f"at most once. Received: block {block.index} twice in blocks={blocks!r}"
            )
        chosen.append(block)
    refused = [block for block in chosen if block.reason is not None]
    if refused:
        raise ValueError(
            "Invalid value received for argument `blocks`. Expected removable "
            "blocks only (a block whose removal keeps every shape, called in a "
            f"functional graph). Received: blocks={blocks!r}, where " + "; ".join(block.describe() for block in refused)
        )
    return chosen


def _validate_keep(keep: Any, removable: int) -> int:
    """The number of removable blocks that stay."""
    if isinstance(keep, (bool, np.bool_)) or not isinstance(keep, numbers.Real):
        raise TypeError(
            "Invalid type received for argument `keep`. Expected an int count or a "
            f"float fraction of the removable blocks. Received: keep={keep!r} of type {type(keep).__name__}"
        )
    if isinstance(keep, numbers.Integral):
        if not 0 <= int(keep) <= removable:
            raise ValueError(
                "Invalid value received for argument `keep`. Expected an int count "
                f"in [0, {removable}] (the model's removable blocks). Received: keep={keep!r}"
            )
        return int(keep)
    fraction = float(keep)
    if not (math.isfinite(fraction) and 0.0 <= fraction <= 1.0):
        raise ValueError(
            "Invalid value received for argument `keep`. Expected a float fraction "
            f"in [0.0, 1.0] of the {removable} removable blocks. Received: keep={keep!r}"
        )
    return int(math.floor(fraction * removable + 0.5))


def _check_no_validation_data(validation_data: Any, rule: str) -> None:
    if validation_data is not None:
        raise ValueError(
            "Invalid value received for argument `validation_data`. Expected None "
            f"unless rule='greedy' (rule={rule!r} does not evaluate). Received: "
            f"validation_data of type {type(validation_data).__name__}"
        )


def _validate_validation_data(validation_data: Any) -> Tuple[Any, Any]:
    if validation_data is None:
        raise ValueError(
            "Invalid value received for argument `validation_data`. Expected "
            "`(x, y)` with rule='greedy', which evaluates the candidates on it. "
            "Received: validation_data=None"
        )
    if (
        not isinstance(validation_data, (tuple, list))
        or len(validation_data) != 2
        or not hasattr(validation_data[0], "shape")
        or not hasattr(validation_data[1], "shape")
        or len(validation_data[0]) != len(validation_data[1])
        or len(validation_data[0]) == 0
    ):
        raise ValueError(
            "Invalid value received for argument `validation_data`. Expected `(x, y)`, "
            "two arrays with the same positive number of examples. Received: "
            f"validation_data of type {type(validation_data).__name__}"
            + (f" and length {len(validation_data)}" if isinstance(validation_data, (tuple, list)) else "")
        )
    return validation_data[0], validation_data[1]


def _every_k(removable: List[_Block], count: int) -> List[_Block]:
    total = len(removable)
    return [
        block
        for position, block in enumerate(removable, start=1)
        if (position * count) // total > ((position - 1) * count) // total
    ]


def _order(
    model: keras.Model, found: List[_Block], removable: List[_Block], rule: str, validation_data: Any, stop_after: int
) -> List[int]:
    """Block numbers, in the order `rule` removes them (the first `stop_after` of it for greedy)."""
    by_survival = sorted(removable, key=lambda block: (block.survival_probability, -block.index))
    if rule == "lowest_survival":
        return [block.index for block in by_survival]
    x, y = _validate_validation_data(validation_data)
    switches: Dict[int, _Switch] = {}

    def switch(block: _Block, call: Callable[[], Any], shortcut: Callable[[], Any]) -> Any:
        if block.reason is not None:
            return call()
        output = call()
        layer = switches.setdefault(block.index, _Switch(name=f"{block.layer.name}_prune_switch"))
        return layer([shortcut(), output])

    candidate = _rebuild(model, found, switch)
    cost = _cost(model, candidate, x, y)
    order: List[int] = []
    remaining = list(by_survival)
    for _ in range(min(stop_after, len(remaining))):
        costs = []
        for block in remaining:
            switches[block.index].on.assign(0.0)
            costs.append(cost())
            switches[block.index].on.assign(1.0)
        best = remaining.pop(int(np.argmin(costs)))  # the first of equal costs: the lowest-survival order
        switches[best.index].on.assign(0.0)
        order.append(best.index)
    return order


def _cost(model: keras.Model, candidate: keras.Model, x: Any, y: Any) -> Callable[[], float]:
    """The greedy rule's cost of the candidate's current switches: the compiled loss, or the error.

    The candidate runs through `predict_on_batch`, batch by batch: it
    traces its inference step once (the switches are variables), without
    the fixed cost of each `evaluate` or `predict` call, which the many
    small evaluations of the greedy rule would pay again and again.
    """
    loss = getattr(model, "loss", None) if model.compiled else None
    if isinstance(loss, str):
        loss = keras.losses.get(loss)
    if loss is not None and not callable(loss):
        raise ValueError(
            "Invalid value received for argument `model`. Expected a model compiled "
            "with one loss (or not compiled: the classification error is used) for "
            f"rule='greedy'. Received: a model compiled with loss={loss!r}"
        )
    x = keras.ops.convert_to_numpy(x)
    labels = np.asarray(keras.ops.convert_to_numpy(y))

    def cost() -> float:
        scores = np.concatenate(
            [np.asarray(candidate.predict_on_batch(x[start : start + 256])) for start in range(0, len(x), 256)]
        )
        if loss is not None:
            return float(np.mean(keras.ops.convert_to_numpy(loss(labels, scores))))
        expected = labels.argmax(-1) if labels.ndim == scores.ndim else labels.reshape(len(scores))
        return float(np.mean(scores.argmax(-1) != expected))

    return cost


def _remove(removed: Set[_Block]) -> _Replace:
    removed_ids = {id(block) for block in removed}

    def replace(block: _Block, call: Callable[[], Any], shortcut: Callable[[], Any]) -> Any:
        return shortcut() if id(block) in removed_ids else call()

    return replace


def _rebuild(model: keras.Model, found: List[_Block], replace: _Replace, copy_state: bool = True) -> keras.Model:
    """`model` rebuilt by `surgery.rebuild`, every call of our layers going through `replace`.

    With `copy_state=False` the layers are copies without the original's
    variables (enough to read shapes).
    """
    replacements = {
        id(node): functools.partial(_replace_call, block, replace)
        for block in found
        for node in block.layer._inbound_nodes
    }
    if copy_state:
        return rebuild(model, replacements)
    return Rebuild(replacements).model(model)


def _replace_call(block: _Block, replace: _Replace, node: Any, state: Rebuild) -> Any:
    """The `surgery.rebuild.Replacement` of one call of a block: `replace` given the copied call and the shortcut.

    A removed block's layer is never copied: only its shortcut layer is.
    """
    layer = block.layer
    args, kwargs = node.arguments.fill_in(state.new_tensors)
    inputs = args[0] if args else kwargs["inputs"]
    training = {"training": kwargs["training"]} if "training" in kwargs else {}

    def shortcut() -> Any:
        if not isinstance(layer, StochasticDepthBlock):
            return inputs[0]
        return inputs if layer.shortcut is None else state.copy(layer.shortcut)(inputs, **training)

    return replace(block, lambda: state.copy(layer)(*args, **kwargs), shortcut)
