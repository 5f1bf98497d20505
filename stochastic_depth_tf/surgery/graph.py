"""Reading a functional model's graph: its calls in order, and its residual merges.

Keras 3 has no public API to read the call graph of a functional model node
by node (which tensor came from which call, with which arguments), so this
module reads the attributes Keras itself uses for that
(`KerasTensor._keras_history`, `Operation._inbound_nodes`, `Node.arguments`,
`Functional._nodes_by_depth`, the order `keras.models.clone_model` runs the
graph in); nothing is imported from `keras.src`. Rebuilding is
`stochastic_depth_tf.surgery.rebuild`'s business: this module only reads.
"""

from __future__ import annotations

import collections
import functools
from typing import Any, Dict, List, NamedTuple, Optional, Set, Tuple

import keras

from stochastic_depth_tf._validation import check_pair
from stochastic_depth_tf.layers.shake_drop import ShakeDrop
from stochastic_depth_tf.layers.stochastic_depth import StochasticDepth
from stochastic_depth_tf.layers.stochastic_depth_block import StochasticDepthBlock


def is_functional(model: Any) -> bool:
    """Whether `model` is a functional `keras.Model` (built from inputs and outputs)."""
    # Functional models (and only they, among keras.Model that are not
    # Sequential) carry their graph's endpoints and operations.
    return (
        isinstance(model, keras.Model)
        and not isinstance(model, keras.Sequential)
        and all(hasattr(model, name) for name in ("inputs", "outputs", "operations"))
    )


def check_functional(model: Any) -> None:
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
    if not is_functional(model):
        raise ValueError(
            "Invalid value received for argument `model`. Expected a "
            "functional keras.Model (built with keras.Model(inputs, outputs)); "
            "the graph of a subclassed model is Python code that surgery "
            "cannot rewrite (use stochastic_depth_tf.StochasticDepth in its "
            "call() instead). Received: a subclassed model of class "
            f"{type(model).__name__}"
        )


def producer_node(tensor: keras.KerasTensor) -> Any:
    """The node (one call of an operation) that produced `tensor`."""
    operation, node_index, _ = tensor._keras_history
    return operation._inbound_nodes[node_index]


def nodes(model: keras.Model) -> List[Any]:
    """The calls of a functional model's graph, inputs first, in the order Keras runs them.

    The order `keras.models.clone_model` calls them in (deepest first, as
    `Functional._run_through_graph` does), so in a residual network the blocks
    come in the order they are applied.
    """
    by_depth = model._nodes_by_depth
    return [node for depth in sorted(by_depth, reverse=True) for node in by_depth[depth] if not node.is_input]


@functools.cache
def _add_op_class() -> type:
    """The class of the op node that `x + y` on symbolic tensors leaves in a graph."""
    probe = keras.ops.add(keras.KerasTensor((1,)), keras.KerasTensor((1,)))
    return type(probe._keras_history[0])


def _two_add_inputs(node: Any) -> Optional[Tuple[Any, Any]]:
    """The two tensors summed by an `Add` layer or `x + y` node; None for any other node."""
    operation = node.operation
    args, kwargs = node.arguments.args, node.arguments.kwargs
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


class _Ancestry:
    """Shortest paths back through one functional model's graph."""

    def __init__(self, model: keras.Model) -> None:
        self.input_ids = {id(tensor) for tensor in model.inputs}

    def distances(self, tensor: keras.KerasTensor) -> Dict[int, int]:
        """Shortest number of calls from `tensor` back to each of its ancestors (by id)."""
        distances = {id(tensor): 0}
        queue = collections.deque([tensor])
        while queue:
            current = queue.popleft()
            if id(current) in self.input_ids:
                continue
            for parent in producer_node(current).input_tensors:
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


class ResidualMerge(NamedTuple):
    """One residual merge of a functional graph: where a branch is added to its shortcut.

    Attributes:
        model: the functional model whose graph holds the call (the model
            passed in, or a functional model nested in it).
        node: the call: of a `keras.layers.Add`, of the op `x + y` leaves, of
            a `StochasticDepth` or `ShakeDrop`, or of a `StochasticDepthBlock`.
        shortcut: the tensor carried past the branch (the block input in an
            identity block, its projection in a projection block); None for a
            `StochasticDepthBlock`, whose shortcut layer (None for identity)
            and branch are inside it, applied to `node.input_tensors[0]`.
        residual: the tensor the branch computes; None for a block.
    """

    model: keras.Model
    node: Any
    shortcut: Optional[keras.KerasTensor]
    residual: Optional[keras.KerasTensor]

    @property
    def is_add(self) -> bool:
        """Whether the merge is a plain add (not yet one of this package's layers)."""
        return not isinstance(self.node.operation, (StochasticDepth, ShakeDrop, StochasticDepthBlock))


def residual_merges(model: keras.Model) -> List[ResidualMerge]:
    """Every residual merge of a functional model, nested functional models included, in block order.

    A merge is a call of one of this package's layers (`StochasticDepth` and
    `ShakeDrop` take `[shortcut, residual]`), or a residual add: a
    `keras.layers.Add` of exactly two inputs or an `x + y` op node, whose
    inputs have the same floating shape and a common ancestor, the block
    input. The shortcut is the input with the shorter path back to it, read
    from the graph, not the argument order (ResNet adds `[shortcut, x]`,
    EfficientNet `[x, inputs]`); two paths of equal length are parallel
    branches, not a residual. Merges come in the order the graph runs them;
    a nested model's where it is first called.

    Args:
        model: a functional `keras.Model`.

    Returns:
        A list of `ResidualMerge`, possibly empty.

    Example:

    ```python
    import keras
    from stochastic_depth_tf.surgery.graph import residual_merges

    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(4)(inputs) + inputs
    (merge,) = residual_merges(keras.Model(inputs, outputs))
    assert merge.shortcut is inputs and merge.is_add
    ```
    """
    found: List[ResidualMerge] = []
    seen_models: Set[int] = set()

    def visit(current: keras.Model) -> None:
        seen_models.add(id(current))
        ancestry = _Ancestry(current)
        for node in nodes(current):
            operation = node.operation
            if is_functional(operation):
                if id(operation) not in seen_models:
                    visit(operation)
            elif isinstance(operation, StochasticDepthBlock):
                found.append(ResidualMerge(current, node, None, None))
            elif isinstance(operation, (StochasticDepth, ShakeDrop)):
                shortcut, residual = node.input_tensors
                found.append(ResidualMerge(current, node, shortcut, residual))
            else:
                inputs = _two_add_inputs(node)
                if inputs is None:
                    continue
                position = ancestry.shortcut_position(*inputs)
                if position is None:
                    continue
                shortcut, residual = inputs[position], inputs[1 - position]
                if _can_gate(shortcut, residual):
                    found.append(ResidualMerge(current, node, shortcut, residual))

    visit(model)
    return found
