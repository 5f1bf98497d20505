"""Model surgery: turn the residual adds of a functional model into stochastic depth, and back.

`apply_stochastic_depth` returns a new functional model in which every residual
add (`keras.layers.Add` or the `x + y` op node, with one input the block's
shortcut and the other a branch computed from it) is a
`stochastic_depth_tf.StochasticDepth` called as `[shortcut, residual]`, with a
survival probability per block. `strip_stochastic_depth` is the inverse for
export: every `StochasticDepth` (and `ShakeDrop`) becomes a plain `Add`, with
the inference scale folded in front of it as a `keras.layers.Rescaling`.

Both functions copy: the new model has new layers holding copies of the
original's weights, so training one never changes the other.

Keras 3 has no public API to read the call graph of a functional model node
by node (which tensor came from which call, with which arguments), so the two
helpers `_producer_node` and `_call_arguments` read the attributes Keras itself
uses for that (`KerasTensor._keras_history`, `Operation._inbound_nodes`,
`Node.arguments`); nothing is imported from `keras.src`.
"""

from __future__ import annotations

import collections
import functools
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import keras

from stochastic_depth_tf import ops
from stochastic_depth_tf._validation import (
    check_pair,
    validate_bool,
    validate_choice,
    validate_inverted,
    validate_mode,
    validate_seed,
    validate_survival_probability,
)
from stochastic_depth_tf.layers.shake_drop import ShakeDrop
from stochastic_depth_tf.layers.stochastic_depth import StochasticDepth
from stochastic_depth_tf.layers.stochastic_depth_block import StochasticDepthBlock
from stochastic_depth_tf.schedules import DISTRIBUTIONS, survival_probabilities


def apply_stochastic_depth(
    model: keras.Model,
    final_survival_probability: float = 0.5,
    distribution: str = "linear",
    mode: str = "batch",
    inverted: bool = False,
    seed: Optional[int] = None,
    replace_drop_connect: bool = True,
) -> keras.Model:
    """Returns a copy of a functional model with stochastic depth on every residual add.

    Every residual add of `model` becomes a `stochastic_depth_tf.StochasticDepth`
    called as `[shortcut, residual]`: in training `shortcut + b * residual`
    with `b ~ Bernoulli(p_l)`, at inference `shortcut + p_l * residual` (or,
    with `inverted=True`, `(b / p_l)` in training and a plain add at
    inference); Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016.
    Block `l = 1 .. L`, counted in topological order (the order the blocks are
    applied), gets `p_l = 1 - (l / L) * (1 - p_L)` with
    `distribution="linear"` (the paper's rule: the last block gets `p_L`), or
    `p_L` everywhere with `distribution="uniform"`.

    A residual add is a `keras.layers.Add` with exactly two inputs, or the op
    node that `x + y` / `keras.ops.add(x, y)` leaves in the graph (ConvNeXt
    writes its residuals so), whose two inputs have the same shape and are in
    a residual relation. Which input is the shortcut is read from the graph,
    never from the argument order (keras.applications ResNet adds
    `[shortcut, x]`, EfficientNet `[x, inputs]`): the nearest common ancestor
    of the two inputs is the block input, and the shortcut is the input with
    the shorter path back to it. It is the block input itself in an identity
    block, and one projection (convolution and normalization, or pooling)
    away from it in a projection block. Adds with more than two inputs, of
    inputs with no common ancestor (say, two model inputs), or of two paths of
    equal length are left as they are. Residual adds inside nested functional
    models are replaced too, numbered where the nested model is called.

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

    Args:
        model: a functional `keras.Model` (built with `keras.Model(inputs,
            outputs)`, as every keras.applications model is), with at least
            one residual add.
        final_survival_probability: `p_L` in `[0, 1]`: the last block's
            survival probability with `"linear"`, every block's with
            `"uniform"`. Must be greater than 0 with `inverted=True`.
        distribution: `"linear"` (the paper's decay) or `"uniform"`.
        mode: `"batch"` (one gate per call, the paper), `"sample"` (one gate
            per example, as Keras' EfficientNet drop-connect and timm) or
            `"subset"` (a fixed number of kept examples, DINOv2).
        inverted: False for the paper's scaling at inference, True for the
            inverted scaling in training.
        seed: None or a non-negative int. With an int, the `l`-th layer (from
            0) gets the seed `seed + l`, so runs are reproducible and the
            layers draw different gates; with None every layer is unseeded.
        replace_drop_connect: whether to remove an EfficientNet-style
            drop-connect `Dropout` (noise shape 1 on every axis but the batch)
            found directly on a residual branch.

    Returns:
        A new functional `keras.Model`, with the name of `model`.

    Raises:
        TypeError: `model` is not a `keras.Model`; `seed`, `inverted`,
            `replace_drop_connect` or `final_survival_probability` has the
            wrong type; a layer that holds weights cannot be re-created from
            its config.
        ValueError: `model` is Sequential, subclassed, or has no residual
            add; a bad `distribution`, `mode`, `seed` or
            `final_survival_probability`.

    Example:

    ```python
    import keras
    import stochastic_depth_tf as sdt

    base = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=10)
    model = sdt.apply_stochastic_depth(base, final_survival_probability=0.5, seed=0)
    # 16 StochasticDepth layers, 0.96875, 0.9375, ..., 0.5 in block order
    ```
    """
    _check_functional(model)
    inverted = validate_inverted(inverted)
    mode = validate_mode(mode)
    final_survival_probability = validate_survival_probability(
        final_survival_probability, inverted=inverted, name="final_survival_probability"
    )
    validate_choice(distribution, tuple(DISTRIBUTIONS), name="distribution")
    seed = validate_seed(seed)
    replace_drop_connect = validate_bool(replace_drop_connect, name="replace_drop_connect")

    blocks = _find_residual_adds(model, replace_drop_connect)
    if not blocks:
        raise ValueError(
            "Invalid value received for argument `model`. Expected a "
            "functional keras.Model with at least one residual add (a "
            "keras.layers.Add or `x + y` of exactly two inputs, a shortcut and "
            "a branch computed from it). Received: model "
            f"'{model.name}' has none"
        )
    probabilities = survival_probabilities(len(blocks), final_survival_probability, distribution)
    plans = {}
    for index, (block, probability) in enumerate(zip(blocks, probabilities)):
        plans[id(block.node)] = _stochastic_depth_plan(
            block,
            survival_probability=probability,
            mode=mode,
            inverted=inverted,
            seed=None if seed is None else seed + index,
        )
    return _rebuild_top_level(model, plans)


def strip_stochastic_depth(model: keras.Model) -> keras.Model:
    """Returns a copy of a functional model with every `StochasticDepth` made a plain add.

    For export and serving: the inference output is unchanged and the graph
    holds only stock Keras layers. Each `stochastic_depth_tf.StochasticDepth`
    (called as `[shortcut, residual]`) becomes a `keras.layers.Add` of the
    same name. With `inverted=False` and a survival probability `p < 1` the
    inference scale is folded in exactly: a `keras.layers.Rescaling(p)` named
    `<name>_survival_scale` multiplies the residual before the add, so the
    output is `shortcut + p * residual`, the layer's inference form, with `p`
    the CURRENT value of `layer.survival_probability_variable` (what a
    schedule left there, not the configured value). With `inverted=True` or
    `p == 1` the inference form is already a plain add.

    Each `StochasticDepthBlock` is unrolled the same way: copies of its
    shortcut (if any) and branch called on the block's input, then the
    `Rescaling` and `Add`, named after the block.

    Each `stochastic_depth_tf.ShakeDrop` becomes the same `Rescaling` and
    `Add`, with its inference scale `E[b + alpha - b * alpha] = p + (1 - p)
    * (low + high) / 2` (`alpha_range=(low, high)`; `p` for the default
    `(-1, 1)`), from the current `p`; no `Rescaling` when that scale is 1.

    Like `apply_stochastic_depth`, the new model is a copy: new layers with
    copies of the original's weights. `StochasticDepth` layers inside nested
    functional models are stripped too.

    Args:
        model: a functional `keras.Model` with at least one `StochasticDepth`,
            `StochasticDepthBlock` or `ShakeDrop` layer.

    Returns:
        A new functional `keras.Model`, with the name of `model`.

    Raises:
        TypeError: `model` is not a `keras.Model`.
        ValueError: `model` is Sequential, subclassed, or has neither a
            `StochasticDepth`, `StochasticDepthBlock` nor `ShakeDrop` layer.

    Example:

    ```python
    import keras
    import stochastic_depth_tf as sdt

    base = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=10)
    model = sdt.apply_stochastic_depth(base, final_survival_probability=0.5)
    # ... model.fit(...) ...
    export = sdt.strip_stochastic_depth(model)  # Add + Rescaling, same inference
    ```
    """
    _check_functional(model)
    plans = {}
    for graph_model in _functional_models(model):
        for node in _Graph(graph_model).nodes:
            if isinstance(node.operation, StochasticDepth):
                plans[id(node)] = _strip_plan(node)
            elif isinstance(node.operation, StochasticDepthBlock):
                plans[id(node)] = _strip_block_plan(node)
            elif isinstance(node.operation, ShakeDrop):
                plans[id(node)] = _strip_shake_drop_plan(node)
    if not plans:
        raise ValueError(
            "Invalid value received for argument `model`. Expected a "
            "functional keras.Model with at least one "
            "stochastic_depth_tf.StochasticDepth, StochasticDepthBlock or ShakeDrop "
            f"layer. Received: model '{model.name}' has none"
        )
    return _rebuild_top_level(model, plans)


# Argument checks.


def _check_functional(model: Any) -> None:
    """Refuses anything but a functional model, saying why."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Invalid type received for argument `model`. Expected a functional "
            f"keras.Model. Received: model={model!r} of type {type(model).__name__}"
        )
    if isinstance(model, keras.Sequential):
        raise ValueError(
            "Invalid value received for argument `model`. Expected a "
            "functional keras.Model (built with keras.Model(inputs, outputs)); "
            "a Sequential model is a single chain of layers and cannot hold a "
            "residual add (to change a functional model nested in it, such as "
            "a keras.applications base, apply surgery to that model and "
            "rebuild the Sequential). Received: a Sequential model named "
            f"'{model.name}'"
        )
    if not _is_functional(model):
        raise ValueError(
            "Invalid value received for argument `model`. Expected a "
            "functional keras.Model (built with keras.Model(inputs, outputs)); "
            "the graph of a subclassed model is Python code that surgery "
            "cannot rewrite (use stochastic_depth_tf.StochasticDepth in its "
            "call() instead). Received: a subclassed model of class "
            f"{type(model).__name__}"
        )


def _is_functional(model: Any) -> bool:
    # Functional models (and only they, among keras.Model that are not
    # Sequential) carry their graph's endpoints and operations.
    return (
        isinstance(model, keras.Model)
        and not isinstance(model, keras.Sequential)
        and all(hasattr(model, name) for name in ("inputs", "outputs", "operations"))
    )


# Reading the graph.


def _producer_node(tensor: keras.KerasTensor) -> Any:
    """The node (one call of an operation) that produced `tensor`."""
    operation, node_index, _ = tensor._keras_history
    return operation._inbound_nodes[node_index]


def _call_arguments(node: Any) -> Tuple[tuple, dict]:
    """The positional and keyword arguments the node's operation was called with."""
    return node.arguments.args, node.arguments.kwargs


@functools.lru_cache(maxsize=None)
def _add_op_class() -> type:
    """The class of the op node that `x + y` on symbolic tensors leaves in a graph."""
    probe = keras.ops.add(keras.KerasTensor((1,)), keras.KerasTensor((1,)))
    return type(probe._keras_history[0])


class _Graph:
    """The nodes of a functional model in topological order, with ancestry queries."""

    def __init__(self, model: keras.Model) -> None:
        self.model = model
        self.input_ids = {id(tensor) for tensor in model.inputs}
        self.nodes = _topological_order(
            keras.tree.flatten(model.output), self.input_ids, lambda node: node.input_tensors
        )

    def distances(self, tensor: keras.KerasTensor) -> Dict[int, int]:
        """Shortest number of calls from `tensor` back to each of its ancestors (by id)."""
        distances = {id(tensor): 0}
        queue = collections.deque([tensor])
        while queue:
            current = queue.popleft()
            if id(current) in self.input_ids:
                continue
            for parent in _producer_node(current).input_tensors:
                if id(parent) not in distances:
                    distances[id(parent)] = distances[id(current)] + 1
                    queue.append(parent)
        return distances

    def shortcut_position(self, first: Any, second: Any) -> Optional[int]:
        """0 or 1: which input of a two-input add is the shortcut; None if not residual."""
        if first is second:
            return None
        first_distances, second_distances = self.distances(first), self.distances(second)
        common = first_distances.keys() & second_distances.keys()
        if not common:
            return None
        # The nearest common ancestor is the block input; the shortcut is the
        # shorter way back to it (zero calls in an identity block).
        block_input = min(
            common,
            key=lambda key: (
                first_distances[key] + second_distances[key],
                max(first_distances[key], second_distances[key]),
            ),
        )
        first_length, second_length = first_distances[block_input], second_distances[block_input]
        if first_length == second_length:
            return None
        return 0 if first_length < second_length else 1


def _topological_order(
    output_tensors: Sequence[Any],
    input_ids: set,
    inputs_of: Callable[[Any], Sequence[Any]],
) -> List[Any]:
    """Post-order of the nodes the outputs depend on, inputs first.

    Iterative, since ResNet152 is deeper than Python's recursion limit.
    Arguments are visited in call order, so in a residual network the blocks
    come out in the order they are applied.
    """
    order: List[Any] = []
    visited: set = set()
    stack: List[Tuple[Any, bool]] = []
    for tensor in reversed(list(output_tensors)):
        if id(tensor) not in input_ids:
            stack.append((_producer_node(tensor), False))
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        for tensor in reversed(list(inputs_of(node))):
            if id(tensor) in input_ids:
                continue
            parent = _producer_node(tensor)
            if id(parent) not in visited:
                stack.append((parent, False))
    return order


def _functional_models(model: keras.Model) -> List[keras.Model]:
    """`model` and every functional model nested in it, each once, in call order."""
    found: List[keras.Model] = []
    seen: set = set()
    pending = [model]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        found.append(current)
        nested = [node.operation for node in _Graph(current).nodes if _is_functional(node.operation)]
        pending.extend(reversed(nested))
    return found


class _ResidualAdd:
    """A residual add found in the graph: its node, and what feeds the new layer."""

    def __init__(self, node: Any, shortcut: Any, residual: Any, name: str, dtype: Any) -> None:
        self.node = node
        self.shortcut = shortcut
        self.residual = residual
        self.name = name
        self.dtype = dtype


def _two_add_inputs(node: Any) -> Optional[Tuple[Any, Any]]:
    """The two tensors summed by an `Add` layer or `x + y` node; None for any other node."""
    operation = node.operation
    args, kwargs = _call_arguments(node)
    if type(operation) is keras.layers.Add:
        if kwargs or len(args) != 1 or not isinstance(args[0], (list, tuple)):
            return None
        inputs = tuple(args[0])
    elif type(operation) is _add_op_class():
        if kwargs:
            return None
        inputs = tuple(args)
    else:
        return None
    if len(inputs) != 2 or not all(isinstance(x, keras.KerasTensor) for x in inputs):
        return None
    return inputs


def _can_gate(shortcut: Any, residual: Any) -> bool:
    """Whether `StochasticDepth` accepts the pair (floating, same shape, no broadcasting)."""
    try:
        check_pair([shortcut, residual])
    except (TypeError, ValueError):
        return False
    return True


def _drop_connect_input(residual: Any, graph: _Graph) -> Optional[Any]:
    """The input of an EfficientNet-style drop-connect `Dropout` producing `residual`."""
    if id(residual) in graph.input_ids:
        return None
    node = _producer_node(residual)
    layer = node.operation
    if type(layer) is not keras.layers.Dropout or layer.noise_shape is None:
        return None
    noise_shape = tuple(layer.noise_shape)
    if len(noise_shape) != len(residual.shape) or any(size != 1 for size in noise_shape[1:]):
        return None
    return node.input_tensors[0]


def _find_residual_adds(model: keras.Model, replace_drop_connect: bool) -> List[_ResidualAdd]:
    """Every residual add of `model` and its nested functional models, in block order."""
    found: List[_ResidualAdd] = []
    seen_models: set = set()

    def visit(current: keras.Model) -> None:
        seen_models.add(id(current))
        graph = _Graph(current)
        # Nested models and residual adds, in the order they are called.
        steps: List[Tuple[Any, Any, Any]] = []
        for node in graph.nodes:
            if _is_functional(node.operation):
                steps.append((node, None, None))
                continue
            inputs = _two_add_inputs(node)
            if inputs is None:
                continue
            position = graph.shortcut_position(*inputs)
            if position is None:
                continue
            shortcut, residual = inputs[position], inputs[1 - position]
            if not _can_gate(shortcut, residual):
                continue
            if replace_drop_connect:
                dropout_input = _drop_connect_input(residual, graph)
                if dropout_input is not None:
                    residual = dropout_input
            steps.append((node, shortcut, residual))
        replaced_operations = {id(node.operation) for node, shortcut, _ in steps if shortcut is not None}
        names = _NameScope(
            layer.name for layer in current.layers if id(layer) not in replaced_operations
        )
        for node, shortcut, residual in steps:
            operation = node.operation
            if shortcut is None:
                if id(operation) not in seen_models:
                    visit(operation)
                continue
            # Keep the Add's dtype policy (mixed precision); an op node has
            # none, so compute in the dtype it added in.
            dtype = (
                operation.dtype_policy
                if isinstance(operation, keras.layers.Layer)
                else keras.backend.standardize_dtype(residual.dtype)
            )
            found.append(_ResidualAdd(node, shortcut, residual, names.unique(operation.name), dtype))

    visit(model)
    return found


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


# Rewriting the graph.


class _Plan:
    """How to rebuild one node: the original tensors it reads, and a builder."""

    def __init__(self, inputs: Sequence[Any], build: Callable[[List[Any]], Any]) -> None:
        self.inputs = list(inputs)
        self.build = build


def _stochastic_depth_plan(
    block: _ResidualAdd,
    *,
    survival_probability: float,
    mode: str,
    inverted: bool,
    seed: Optional[int],
) -> _Plan:
    def build(inputs: List[Any]) -> Any:
        layer = StochasticDepth(
            survival_probability=survival_probability,
            mode=mode,
            inverted=inverted,
            seed=seed,
            name=block.name,
            dtype=block.dtype,
        )
        return layer(inputs)

    return _Plan([block.shortcut, block.residual], build)


def _inference_add(layer: Any, shortcut: Any, residual: Any) -> Any:
    """`shortcut + p * residual` (or `+ residual` when inverted) from stock layers.

    `p` is the current value of the layer's survival probability variable.
    """
    survival_probability = float(keras.ops.convert_to_numpy(layer.survival_probability_variable))
    if not layer.inverted and survival_probability != 1.0:
        residual = keras.layers.Rescaling(
            survival_probability,
            name=f"{layer.name}_survival_scale",
            dtype=layer.dtype_policy,
        )(residual)
    return keras.layers.Add(name=layer.name, dtype=layer.dtype_policy)([shortcut, residual])


def _strip_plan(node: Any) -> _Plan:
    layer = node.operation
    return _Plan(list(node.input_tensors), lambda inputs: _inference_add(layer, *inputs))


def _strip_shake_drop_plan(node: Any) -> _Plan:
    """`ShakeDrop` as `shortcut + E[b + alpha - b * alpha] * residual` from stock layers."""
    layer = node.operation

    def build(inputs: List[Any]) -> Any:
        shortcut, residual = inputs
        survival_probability = float(keras.ops.convert_to_numpy(layer.survival_probability_variable))
        scale = ops.shake_drop_expected_scale(survival_probability, layer.alpha_range)
        if scale != 1.0:
            residual = keras.layers.Rescaling(
                scale, name=f"{layer.name}_expected_scale", dtype=layer.dtype_policy
            )(residual)
        return keras.layers.Add(name=layer.name, dtype=layer.dtype_policy)([shortcut, residual])

    return _Plan(list(node.input_tensors), build)


def _strip_block_plan(node: Any) -> _Plan:
    """A `StochasticDepthBlock` unrolled: copies of its shortcut and branch, then the add."""
    block = node.operation

    def called_copy(layer: Any, tensor: Any) -> Any:
        copy = keras.models.clone_model(layer) if isinstance(layer, keras.Model) else _copy_from_config(layer)
        output = copy(tensor)
        if copy is not layer:  # variables exist only once the copy has been called
            _copy_weights(layer, copy)
        return output

    def build(inputs: List[Any]) -> Any:
        (tensor,) = inputs
        shortcut = tensor if block.shortcut is None else called_copy(block.shortcut, tensor)
        residual = called_copy(block.branch, tensor)
        return _inference_add(block, shortcut, residual)

    return _Plan(list(node.input_tensors), build)


def _copy_weights(original: Any, copy: Any) -> None:
    """`copy.set_weights(original.get_weights())`, then lets every layer derive its state.

    `set_weights` only assigns variables: a `Normalization` layer keeps
    normalizing with the mean and variance it had until `finalize_state()`
    recomputes them from its variables (keras.applications EfficientNet's
    input normalization).
    """
    copy.set_weights(original.get_weights())
    for layer in copy._flatten_layers(include_self=True, recursive=True):
        if hasattr(layer, "finalize_state"):
            layer.finalize_state()


def _rebuild_top_level(model: keras.Model, plans: Dict[int, _Plan]) -> keras.Model:
    """Rebuilds `model` with `plans` applied, then copies every weight across."""
    weight_pairs: List[Tuple[Any, Any]] = []
    new_model = _rebuild(model, plans, copies={}, weight_pairs=weight_pairs)
    # Weights are set once everything is built: a layer's variables exist
    # only after its first call.
    for original, copy in weight_pairs:
        _copy_weights(original, copy)
        # Our layers keep their survival probability out of the weights; a
        # schedule may have moved it from the configured value.
        if isinstance(original, (StochasticDepth, ShakeDrop)):
            copy.survival_probability_variable.assign(original.survival_probability_variable)
    # The setter is recursive, and each copied layer already has its own
    # flag from its config: only a frozen model needs it.
    if not model.trainable:
        new_model.trainable = False
    if model.compiled:
        new_model.compile_from_config(model.get_compile_config())
    return new_model


def _rebuild(
    model: keras.Model,
    plans: Dict[int, _Plan],
    copies: Dict[int, Any],
    weight_pairs: List[Tuple[Any, Any]],
) -> keras.Model:
    """Calls copies of `model`'s operations on new inputs, or the plan of a planned node."""
    input_tensors = keras.tree.flatten(model.input)
    input_ids = {id(tensor) for tensor in input_tensors}

    def inputs_of(node: Any) -> Sequence[Any]:
        plan = plans.get(id(node))
        return plan.inputs if plan is not None else node.input_tensors

    # Ordered over the rewired graph, so a removed drop-connect Dropout
    # that nothing else reads is never called.
    nodes = _topological_order(keras.tree.flatten(model.output), input_ids, inputs_of)
    new_inputs = [
        keras.Input(
            batch_shape=tensor.shape,
            dtype=tensor.dtype,
            sparse=tensor.sparse,
            ragged=tensor.ragged,
            name=_producer_node(tensor).operation.name,
        )
        for tensor in input_tensors
    ]
    tensors = {id(old): new for old, new in zip(input_tensors, new_inputs)}

    def new_tensor(value: Any) -> Any:
        return tensors[id(value)] if isinstance(value, keras.KerasTensor) else value

    for node in nodes:
        plan = plans.get(id(node))
        if plan is not None:
            outputs = plan.build([tensors[id(tensor)] for tensor in plan.inputs])
        else:
            operation = _copy_operation(node.operation, plans, copies, weight_pairs)
            args, kwargs = _call_arguments(node)
            outputs = operation(
                *keras.tree.map_structure(new_tensor, args),
                **keras.tree.map_structure(new_tensor, kwargs),
            )
        for old, new in zip(node.outputs, keras.tree.flatten(outputs)):
            tensors[id(old)] = new

    return keras.Model(
        keras.tree.pack_sequence_as(model.input, new_inputs),
        keras.tree.map_structure(lambda tensor: tensors[id(tensor)], model.output),
        name=model.name,
    )


def _copy_operation(
    operation: Any,
    plans: Dict[int, _Plan],
    copies: Dict[int, Any],
    weight_pairs: List[Tuple[Any, Any]],
) -> Any:
    """One copy per original operation, so layers shared in the original stay shared."""
    if id(operation) in copies:
        return copies[id(operation)]
    if _is_functional(operation):
        copy = _rebuild(operation, plans, copies, weight_pairs)
        if not operation.trainable:
            copy.trainable = False
    else:
        if isinstance(operation, keras.Sequential):
            copy = keras.models.clone_model(operation)
        else:
            copy = _copy_from_config(operation)
        if copy is not operation and isinstance(operation, keras.layers.Layer):
            weight_pairs.append((operation, copy))
    copies[id(operation)] = copy
    return copy


def _copy_from_config(operation: Any) -> Any:
    """A new instance of the operation's class from its config; stateless ones may be shared."""
    try:
        return type(operation).from_config(operation.get_config())
    except Exception as error:  # from_config raises whatever the class raises
        if getattr(operation, "variables", None):
            raise TypeError(
                "Invalid layer received in argument `model`. Expected layers "
                "that can be re-created with `from_config(get_config())` (the "
                "new model holds copies of the original's weights). Received: "
                f"layer '{operation.name}' of class {type(operation).__name__}, "
                f"which raised {type(error).__name__}: {error}"
            ) from error
        # Nothing to copy: sharing a stateless operation (a Lambda of a Python
        # lambda, which safe mode will not deserialize) changes no weight.
        return operation
